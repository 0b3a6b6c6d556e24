//! Ended sessions and per-user write limits, through the real binary.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sneakerstop_test_support::{Server, TestDb, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_sneakerstop");
const SECRET: &str = "sessions-test-secret-0123456789-abcdefgh";

fn env(db: &TestDb) -> Vec<(&'static str, String)> {
    vec![("DATABASE_URL", db.url()), ("JWT_SECRET", SECRET.into())]
}

/// Signs a new user up at `server`; returns the bearer token.
async fn token(http: &reqwest::Client, server: &Server) -> String {
    let email = format!("{}@example.com", sneakerstop_test_support::unique("s"));
    let response = http
        .post(server.url("/api/users/signup"))
        .json(&json!({"email": email, "password": "a good password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().trim_start_matches("session=").to_owned()
}

fn listing() -> Value {
    json!({"title": "Air Max 1", "price": 150.0, "size": 10})
}

#[tokio::test]
async fn an_ended_session_is_refused_by_a_service_in_another_process() {
    let db = TestDb::new().await;
    let identity = Server::start(BIN, &["serve", "identity"], &env(&db)).await;
    let catalog = Server::start(BIN, &["serve", "catalog"], &env(&db)).await;
    let http = reqwest::Client::new();
    let token = token(&http, &identity).await;
    let listed = http.post(catalog.url("/api/sneakers")).bearer_auth(&token).json(&listing()).send().await.unwrap();
    assert_eq!(listed.status(), StatusCode::CREATED, "the session works in the catalog process");

    let out = http.post(identity.url("/api/users/signout")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(out.status(), StatusCode::OK);
    // The catalog process learns of it through session.revoked on identity.users, its
    // consumer, its own revoked_sessions table and its change feed.
    wait_until("the catalog process refuses the ended session", Duration::from_secs(30), || {
        let (http, url, token) = (http.clone(), catalog.url("/api/sneakers"), token.clone());
        async move {
            let response = http.post(url).bearer_auth(token).json(&listing()).send().await.ok()?;
            match response.status() {
                StatusCode::UNAUTHORIZED => Some(()),
                StatusCode::CREATED => None,
                other => panic!("unexpected {other}"),
            }
        }
    })
    .await;
    let metrics = http.get(catalog.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("sessions_revoked_refusals_total")), "counted in the metrics");
    assert!(identity.terminate().await && catalog.terminate().await);
}

#[tokio::test]
async fn writes_beyond_a_users_limit_are_refused_with_retry_after_and_reads_are_not() {
    let db = TestDb::new().await;
    let mut env = env(&db);
    env.extend([("WRITE_LIMIT_PER_SECOND", "1".to_owned()), ("WRITE_LIMIT_BURST", "3".to_owned())]);
    let server = Server::start(BIN, &["serve", "identity", "catalog"], &env).await;
    let http = reqwest::Client::new();
    let (ann, bo) = (token(&http, &server).await, token(&http, &server).await);
    let post = |token: &str| http.post(server.url("/api/sneakers")).bearer_auth(token).json(&listing()).send();

    for n in 0..3 {
        assert_eq!(post(&ann).await.unwrap().status(), StatusCode::CREATED, "write {n} of the burst");
    }
    let refused = post(&ann).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["content-type"], "application/problem+json");
    let wait: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert_eq!(wait, 1, "one write per second refills the bucket");
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["type"], "https://sneakerstop.dev/problems/rate-limited");

    assert_eq!(post(&bo).await.unwrap().status(), StatusCode::CREATED, "another user has a bucket of their own");
    let browse = http.get(server.url("/api/sneakers")).bearer_auth(&ann).send().await.unwrap();
    assert_eq!(browse.status(), StatusCode::OK, "reads are not limited");
    let signout = http.post(server.url("/api/users/signout")).bearer_auth(&bo).send().await.unwrap();
    assert_eq!(signout.status(), StatusCode::OK, "identity's endpoints are not limited");

    // The bucket refills: soon after the wait it announced (refused attempts take nothing
    // from it), ann may write again.
    wait_until("ann may write again", Duration::from_secs(wait + 5), || async {
        (post(&ann).await.unwrap().status() == StatusCode::CREATED).then_some(())
    })
    .await;
    let metrics = http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("write_limit_refusals_total")), "counted in the metrics");
    assert!(server.terminate().await);
}
