//! The identity HTTP API against a fresh, migrated PostgreSQL database per test.

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use serde_json::{Value, json};
use sneakerstop_auth::{Claims, SessionKeys};
use sneakerstop_identity::{AppState, SCHEMA, password::Passwords};
use sneakerstop_settings::Secret;
use sneakerstop_test_support::{Answer, Call, TestDb};

const SECRET: &str = "identity-http-test-secret-0123456789";

struct Ctx {
    app: Router,
    pool: sqlx::PgPool,
    _db: TestDb,
}

async fn ctx() -> Ctx {
    ctx_with_queue(16).await
}

async fn ctx_with_queue(queue: usize) -> Ctx {
    let db = TestDb::new().await;
    let pool =
        sneakerstop_db::connect_and_migrate(&db.config(), SCHEMA, &sneakerstop_identity::migrations()).await.unwrap();
    let keys = SessionKeys::new(&Secret::new(SECRET), Duration::from_secs(3600), false);
    let state = AppState {
        pool: pool.clone(),
        keys,
        passwords: Passwords::new(queue, 4).unwrap(),
        throttle: sneakerstop_identity::throttle::Throttle::default(),
        proxies: sneakerstop_auth::client::TrustedProxies::default(),
    };
    Ctx { app: sneakerstop_identity::app(state), pool, _db: db }
}

async fn signup(app: &Router, email: &str, password: &str) -> Answer {
    Call::post("/api/users/signup", json!({"email": email, "password": password})).send(app).await
}

async fn signin(app: &Router, email: &str, password: &str) -> Answer {
    Call::post("/api/users/signin", json!({"email": email, "password": password})).send(app).await
}

/// The `session` cookie's value from a `Set-Cookie` header.
fn session_token(answer: &Answer) -> String {
    let header = answer.set_cookie().expect("a Set-Cookie header");
    let first = header.split(';').next().unwrap();
    first.strip_prefix("session=").expect("the session cookie").to_owned()
}

async fn current_user(app: &Router, header: Option<(&str, String)>) -> Value {
    let mut call = Call::get("/api/users/currentuser");
    if let Some((name, value)) = header {
        call = call.header(name, &value);
    }
    let answer = call.send(app).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.json["currentUser"].clone()
}

#[tokio::test]
async fn signup_creates_the_account_and_starts_a_session() {
    let Ctx { app, pool, _db } = ctx().await;
    let answer = signup(&app, "  Ann@Example.COM ", "correct horse battery").await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    assert_eq!(answer.json["email"], "ann@example.com");
    let id = answer.json["id"].as_str().unwrap().to_owned();
    assert_eq!(answer.json["role"], "member", "{}", answer.text);
    assert_eq!(answer.json.as_object().unwrap().len(), 3, "only id, email and role: {}", answer.text);

    let cookie = answer.set_cookie().unwrap();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=3600"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(!cookie.contains("Secure"), "Secure only when configured: {cookie}");

    let token = session_token(&answer);
    let user = current_user(&app, Some(("cookie", format!("session={token}")))).await;
    assert_eq!(user, json!({"id": id, "email": "ann@example.com", "role": "member"}));

    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE email = 'ann@example.com'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "stored as an argon2id hash: {hash}");
    assert!(!hash.contains("correct horse"));

    // The account and its event committed together.
    let (event_type, key, payload): (String, String, Value) =
        sqlx::query_as("SELECT event_type, message_key, payload::jsonb FROM outbox").fetch_one(&pool).await.unwrap();
    assert_eq!((event_type.as_str(), key.as_str()), ("user.registered", id.as_str()));
    assert_eq!(payload["userId"], id.as_str());
    assert_eq!(payload["email"], "ann@example.com");
}

#[tokio::test]
async fn a_taken_email_is_a_conflict_whatever_its_case() {
    let Ctx { app, _db, .. } = ctx().await;
    assert_eq!(signup(&app, "bob@example.com", "password-one").await.status, StatusCode::CREATED);
    let answer = signup(&app, "BOB@example.com ", "password-two").await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.text);
    assert_eq!(answer.content_type(), Some("application/problem+json"));
    assert_eq!(answer.json["type"], "https://sneakerstop.dev/problems/email-taken");
    assert!(answer.set_cookie().is_none());
}

#[tokio::test]
async fn concurrent_signups_for_one_email_create_exactly_one_account() {
    let Ctx { app, pool, _db } = ctx().await;
    let attempts = (0..8).map(|i| {
        let app = app.clone();
        async move { signup(&app, "race@example.com", &format!("password-{i}")).await.status }
    });
    let statuses = futures::future::join_all(attempts).await;
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count(), 7, "{statuses:?}");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&pool).await.unwrap();
    assert_eq!(count, 1);
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(&pool).await.unwrap();
    assert_eq!(events, 1, "the refused signups left no event behind");
}

#[tokio::test]
async fn invalid_signups_name_every_bad_field() {
    let Ctx { app, _db, .. } = ctx().await;
    let answer = signup(&app, "not-an-email", "short").await;
    assert!(answer.assert_invalid_field("email").contains("not a valid email"));
    assert!(answer.assert_invalid_field("password").contains("between 8 and 128"));

    let long_password = "x".repeat(129);
    assert!(signup(&app, "ok@example.com", &long_password).await.assert_invalid_field("password").contains("128"));
    let long_email = format!("{}@example.com", "a".repeat(250));
    assert!(signup(&app, &long_email, "long enough").await.assert_invalid_field("email").contains("254"));
}

#[tokio::test]
async fn malformed_bodies_are_400_problems_naming_the_field() {
    let Ctx { app, _db, .. } = ctx().await;
    let missing = Call::post("/api/users/signup", json!({"email": "a@example.com"})).send(&app).await;
    assert_eq!(missing.assert_invalid_field("password"), "is required");

    let wrong_type = Call::post("/api/users/signup", json!({"email": 42, "password": "long enough"})).send(&app).await;
    assert!(wrong_type.assert_invalid_field("email").contains("expected a string"));

    let broken = Call::new(axum::http::Method::POST, "/api/users/signup")
        .raw("application/json", r#"{"email": "a@example.com","#)
        .send(&app)
        .await;
    assert!(broken.assert_invalid_field("body").starts_with("malformed JSON"));

    let form = Call::new(axum::http::Method::POST, "/api/users/signin")
        .raw("application/x-www-form-urlencoded", "email=a&password=b")
        .send(&app)
        .await;
    assert!(form.assert_invalid_field("content-type").contains("application/json"));

    let empty = Call::new(axum::http::Method::POST, "/api/users/signup").send(&app).await;
    empty.assert_invalid_field("content-type");

    let not_object = Call::post("/api/users/signin", json!(["a@example.com", "pw"])).send(&app).await;
    not_object.assert_invalid_field("body");
}

#[tokio::test]
async fn signin_checks_the_password_and_hides_which_part_was_wrong() {
    let Ctx { app, _db, .. } = ctx().await;
    let created = signup(&app, "cat@example.com", "meow meow meow").await;
    let id = created.json["id"].clone();

    let ok = signin(&app, " CAT@example.com", "meow meow meow").await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.json, json!({"id": id, "email": "cat@example.com", "role": "member"}));
    let token = session_token(&ok);
    assert_eq!(current_user(&app, Some(("authorization", format!("Bearer {token}")))).await["id"], id);

    let wrong_password = signin(&app, "cat@example.com", "woof woof woof").await;
    let unknown_email = signin(&app, "dog@example.com", "meow meow meow").await;
    for answer in [&wrong_password, &unknown_email] {
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text);
        assert_eq!(answer.content_type(), Some("application/problem+json"));
        assert!(answer.set_cookie().is_none());
    }
    assert_eq!(wrong_password.json, unknown_email.json, "the two failures must look the same");
}

#[tokio::test]
async fn signing_in_makes_the_browser_a_known_device_of_that_account_only() {
    let Ctx { app, _db, .. } = ctx().await;
    let keys = SessionKeys::new(&Secret::new(SECRET), Duration::from_secs(3600), false);
    let device_of = |answer: &Answer| -> String {
        let cookies: Vec<&str> = answer.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
        let device = cookies.iter().find(|c| c.starts_with("device=")).unwrap_or_else(|| panic!("{cookies:?}"));
        for part in ["HttpOnly", "SameSite=Strict", "Path=/api/users/signin"] {
            assert!(device.contains(part), "{device} lacks {part}");
        }
        device.split(';').next().unwrap().to_owned()
    };
    let created = signup(&app, "cat@example.com", "meow meow meow").await;
    let cat: uuid::Uuid = created.json["id"].as_str().unwrap().parse().unwrap();
    let signed_in = signin(&app, "cat@example.com", "meow meow meow").await;
    for answer in [&created, &signed_in] {
        let cookie = device_of(answer);
        let request = axum::http::Request::get("/").header("cookie", &cookie).body(()).unwrap().into_parts().0;
        assert_eq!(keys.known_devices(&request), [cat], "the device cookie names the account signed in to");
    }
    // Sent back with a sign-in, it changes nothing of the answer: the right password signs
    // in, a wrong one is refused alike.
    let cookie = device_of(&signed_in);
    let again = Call::post("/api/users/signin", json!({"email": "cat@example.com", "password": "meow meow meow"}))
        .header("cookie", &cookie)
        .send(&app)
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    let wrong = Call::post("/api/users/signin", json!({"email": "cat@example.com", "password": "woof woof woof"}))
        .header("cookie", &cookie)
        .send(&app)
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.text);
}

#[tokio::test]
async fn signout_clears_the_cookie_by_post_and_by_get() {
    let Ctx { app, _db, .. } = ctx().await;
    for method in [axum::http::Method::POST, axum::http::Method::GET] {
        let answer = Call::new(method.clone(), "/api/users/signout").send(&app).await;
        assert_eq!(answer.status, StatusCode::OK, "{method}");
        assert_eq!(answer.json, json!({}));
        let cookie = answer.set_cookie().unwrap();
        assert!(cookie.starts_with("session=;"), "{cookie}");
        assert!(cookie.contains("Max-Age=0") && cookie.contains("Path=/"), "{cookie}");
    }
}

#[tokio::test]
async fn a_nul_character_in_the_email_is_a_400_naming_it_at_signup_and_signin() {
    let Ctx { app, _db, .. } = ctx().await;
    for path in ["/api/users/signup", "/api/users/signin"] {
        let answer =
            Call::post(path, json!({"email": "ann\u{0}@example.com", "password": "long enough"})).send(&app).await;
        assert!(answer.assert_invalid_field("email").contains("NUL"), "{path}: {}", answer.text);
    }
}

/// Two instances of identity on one database, as two pods would be.
async fn two_instances(throttle: sneakerstop_identity::throttle::Throttle) -> (Router, Router, TestDb, sqlx::PgPool) {
    let db = TestDb::new().await;
    let pool =
        sneakerstop_db::connect_and_migrate(&db.config(), SCHEMA, &sneakerstop_identity::migrations()).await.unwrap();
    let app = || {
        sneakerstop_identity::app(AppState {
            pool: pool.clone(),
            keys: SessionKeys::new(&Secret::new(SECRET), Duration::from_secs(3600), false),
            passwords: Passwords::new(16, 4).unwrap(),
            throttle,
            proxies: sneakerstop_auth::client::TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap(),
        })
    };
    (app(), app(), db, pool.clone())
}

fn attempt(email: &str, password: &str, from: &str) -> Call {
    let peer: std::net::SocketAddr = format!("{from}:40000").parse().unwrap();
    Call::post("/api/users/signin", json!({"email": email, "password": password})).from_peer(peer)
}

#[tokio::test]
async fn guessing_one_accounts_password_is_slowed_down_across_instances_and_a_success_resets_it() {
    let throttle = sneakerstop_identity::throttle::Throttle {
        per_account: 5,
        per_address: 1000,
        window: Duration::from_secs(900),
    };
    let (first, second, _db, pool) = two_instances(throttle).await;
    assert_eq!(signup(&first, "ann@example.com", "correct horse").await.status, StatusCode::CREATED);
    // Five wrong guesses, alternating instances: answered 401 as usual.
    for i in 0..5 {
        let app = if i % 2 == 0 { &first } else { &second };
        let answer = attempt("ann@example.com", "wrong guess", "203.0.113.1").send(app).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "guess {i}");
    }
    // The sixth is past the allowance: it blocks the account, for both instances, even for
    // the right password, and says for how long.
    attempt("ann@example.com", "wrong guess", "203.0.113.1").send(&second).await;
    let blocked = attempt("ann@example.com", "correct horse", "198.51.100.7").send(&first).await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS, "{}", blocked.text);
    assert_eq!(blocked.json["type"], "https://sneakerstop.dev/problems/too-many-attempts");
    assert_eq!(blocked.content_type(), Some("application/problem+json"));
    let wait: u64 = blocked.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "the first block is about a second: {wait}");
    // Once the block it announced has passed, the right password signs in and clears the
    // account's count: the next wrong guess is an ordinary 401.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let signed_in = attempt("ann@example.com", "correct horse", "198.51.100.7").send(&second).await;
    assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.text);
    assert_eq!(
        attempt("ann@example.com", "wrong guess", "198.51.100.7").send(&first).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Counts whose window has passed are forgotten; those still in force are kept.
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM signin_failures").fetch_one(&pool).await.unwrap();
    assert!(kept >= 2, "the addresses' counts and the account's new one");
    sqlx::query(
        "UPDATE signin_failures SET window_start = now() - interval '1 hour', blocked_until = NULL
         WHERE key LIKE 'address:%'",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(throttle.forget_expired(&pool).await.unwrap(), 2, "both addresses' old counts");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM signin_failures").fetch_one(&pool).await.unwrap();
    assert_eq!(left, kept - 2);
}

#[tokio::test]
async fn guessing_many_accounts_from_one_address_blocks_that_address_only() {
    let throttle = sneakerstop_identity::throttle::Throttle {
        per_account: 1000,
        per_address: 4,
        window: Duration::from_secs(900),
    };
    let (app, _, _db, _) = two_instances(throttle).await;
    for i in 0..5 {
        // Credential stuffing: one guess each at many accounts, through the ingress
        // (a trusted proxy) that names the client in X-Forwarded-For.
        let answer = attempt(&format!("victim{i}@example.com"), "password1", "10.0.0.5")
            .header("x-forwarded-for", "192.0.2.44")
            .send(&app)
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let blocked = attempt("victim9@example.com", "password1", "10.0.0.5")
        .header("x-forwarded-for", "192.0.2.44")
        .send(&app)
        .await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS, "{}", blocked.text);
    // Another client behind the same ingress is not blocked, and neither is a direct client
    // that claims the blocked address (it is not a trusted proxy, so its header is ignored).
    let other = attempt("victim9@example.com", "password1", "10.0.0.5")
        .header("x-forwarded-for", "192.0.2.45")
        .send(&app)
        .await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
    let spoofed = attempt("victim9@example.com", "password1", "203.0.113.50")
        .header("x-forwarded-for", "192.0.2.44")
        .send(&app)
        .await;
    assert_eq!(spoofed.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_flood_beyond_the_hashing_queue_is_refused_at_once_with_retry_after() {
    // Room for one hash: of eight sign-ins at once, those that find it taken are refused
    // immediately rather than queued behind it.
    let Ctx { app, _db, .. } = ctx_with_queue(1).await;
    let attempts = (0..8).map(|i| {
        let app = app.clone();
        async move { signin(&app, &format!("flood{i}@example.com"), "not the password").await }
    });
    let answers = futures::future::join_all(attempts).await;
    let busy: Vec<&Answer> = answers.iter().filter(|a| a.status == StatusCode::SERVICE_UNAVAILABLE).collect();
    assert!(!busy.is_empty(), "{:?}", answers.iter().map(|a| a.status).collect::<Vec<_>>());
    for answer in &busy {
        assert_eq!(answer.headers["retry-after"], "1");
        assert_eq!(answer.content_type(), Some("application/problem+json"));
    }
    assert!(
        answers.iter().all(|a| matches!(a.status, StatusCode::SERVICE_UNAVAILABLE | StatusCode::UNAUTHORIZED)),
        "the others were checked as usual"
    );
}

#[tokio::test]
async fn a_cross_site_get_signout_is_refused_and_clears_nothing() {
    let Ctx { app, _db, .. } = ctx().await;
    let answer = Call::get("/api/users/signout").header("sec-fetch-site", "cross-site").send(&app).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text);
    assert_eq!(answer.content_type(), Some("application/problem+json"));
    assert!(answer.set_cookie().is_none(), "the session cookie is left alone");
    // The site's own pages may still use it.
    let answer = Call::get("/api/users/signout").header("sec-fetch-site", "same-origin").send(&app).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.set_cookie().unwrap().starts_with("session=;"));
}

#[tokio::test]
async fn current_user_is_null_without_a_valid_session() {
    let Ctx { app, _db, .. } = ctx().await;
    let created = signup(&app, "dee@example.com", "dee's password").await;
    let token = session_token(&created);

    assert_eq!(current_user(&app, None).await, Value::Null);
    assert_eq!(current_user(&app, Some(("cookie", "session=garbage".into()))).await, Value::Null);
    assert_eq!(current_user(&app, Some(("authorization", "Bearer garbage".into()))).await, Value::Null);

    let foreign = SessionKeys::new(&Secret::new("some-other-secret-0123456789-abcdef"), Duration::from_secs(60), false);
    let user = sneakerstop_auth::CurrentUser::member(uuid::Uuid::now_v7(), "dee@example.com");
    assert_eq!(
        current_user(&app, Some(("authorization", format!("Bearer {}", foreign.issue(&user))))).await,
        Value::Null
    );

    // A token signed with the right key but already expired.
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub: user.id,
        email: user.email.clone(),
        sid: user.session,
        iat: now - 7200,
        exp: now - 3600,
        admin: false,
    };
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(current_user(&app, Some(("cookie", format!("session={expired}")))).await, Value::Null);

    // And the valid one still works, by cookie and by bearer.
    assert_eq!(current_user(&app, Some(("cookie", format!("session={token}")))).await["email"], "dee@example.com");
    assert_eq!(
        current_user(&app, Some(("authorization", format!("Bearer {token}")))).await["email"],
        "dee@example.com"
    );
}

/// `Authorization: Bearer <token>`.
fn bearer(token: &str) -> Option<(&'static str, String)> {
    Some(("authorization", format!("Bearer {token}")))
}

/// Events identity has written to its outbox, as (type, key, subject).
async fn outbox(pool: &sqlx::PgPool) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT event_type, message_key,
                (SELECT h->>1 FROM jsonb_array_elements(headers) h WHERE h->>0 = 'ce_subject')
           FROM outbox ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn signing_out_ends_the_session_for_good_and_announces_it() {
    let Ctx { app, pool, _db } = ctx().await;
    let created = signup(&app, "eve@example.com", "eve's password").await;
    let (user, first) = (created.json["id"].as_str().unwrap().to_owned(), session_token(&created));
    let second = session_token(&signin(&app, "eve@example.com", "eve's password").await);
    assert_eq!(current_user(&app, bearer(&first)).await["id"], user.as_str());

    let answer = Call::post("/api/users/signout", json!({})).header("authorization", &format!("Bearer {first}"));
    let answer = answer.send(&app).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert!(answer.set_cookie().unwrap().starts_with("session=;"));

    assert_eq!(current_user(&app, bearer(&first)).await, Value::Null, "a signed-out token is no session");
    assert_eq!(current_user(&app, Some(("cookie", format!("session={first}")))).await, Value::Null);
    assert_eq!(current_user(&app, bearer(&second)).await["id"], user.as_str(), "the other session goes on");

    let revoked: Vec<(uuid::Uuid,)> =
        sqlx::query_as("SELECT user_id FROM revoked_sessions").fetch_all(&pool).await.unwrap();
    assert_eq!(revoked.len(), 1, "one row for every service's cache");
    assert_eq!(revoked[0].0.to_string(), user);
    let events = outbox(&pool).await;
    let ended: Vec<_> = events.iter().filter(|(kind, ..)| kind == "session.revoked").collect();
    assert_eq!(ended.len(), 1, "{events:?}");
    assert_eq!(ended[0].1, user, "keyed by the user, as everything on identity.users");
    assert_ne!(ended[0].2, user, "its subject is the session");

    // Signing out again with the ended token changes nothing and still succeeds.
    let again = Call::post("/api/users/signout", json!({})).header("authorization", &format!("Bearer {first}"));
    assert_eq!(again.send(&app).await.status, StatusCode::OK);
    assert_eq!(outbox(&pool).await.len(), events.len());
}

#[tokio::test]
async fn granting_the_admin_role_ends_the_sessions_and_the_next_sign_in_states_it() {
    let Ctx { app, pool, _db } = ctx().await;
    let created = signup(&app, "fay@example.com", "fay's password").await;
    let user = created.json["id"].as_str().unwrap().to_owned();
    assert_eq!(current_user(&app, bearer(&session_token(&created))).await["role"], "member");

    let ended = sneakerstop_identity::set_admin(&pool, " FAY@example.com", true).await.unwrap();
    assert_eq!(ended, Some(1), "the session stating the old role ended");
    let revoked: Vec<(uuid::Uuid, String)> = sqlx::query_as(
        "SELECT user_id, (SELECT payload->>'reason' FROM outbox WHERE event_type = 'session.revoked')
           FROM revoked_sessions",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!((revoked[0].0.to_string(), revoked[0].1.as_str()), (user.clone(), "role-changed"));

    let admin = signin(&app, "fay@example.com", "fay's password").await;
    assert_eq!(admin.json["role"], "admin", "{}", admin.text);
    assert_eq!(current_user(&app, bearer(&session_token(&admin))).await["role"], "admin");

    assert_eq!(sneakerstop_identity::set_admin(&pool, "fay@example.com", false).await.unwrap(), Some(1));
    let member = signin(&app, "fay@example.com", "fay's password").await;
    assert_eq!(member.json["role"], "member", "{}", member.text);
    assert_eq!(sneakerstop_identity::set_admin(&pool, "nobody@example.com", true).await.unwrap(), None);
}

/// Two instances of identity on one database, each with its own memory of ended sessions
/// and a follower fed by the change feed (its poll so long that only a notification can
/// wake it).
async fn two_instances_following(db: &TestDb) -> (Router, Router, sqlx::PgPool, tokio_util::sync::CancellationToken) {
    let pool =
        sneakerstop_db::connect_and_migrate(&db.config(), SCHEMA, &sneakerstop_identity::migrations()).await.unwrap();
    let feed = sneakerstop_messaging::ChangeFeed::new();
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut apps = Vec::new();
    for _ in 0..2 {
        let keys = SessionKeys::new(&Secret::new(SECRET), Duration::from_secs(3600), false);
        let follower = sneakerstop_auth::revocation::Follower::new(
            pool.clone(),
            keys.revocations().clone(),
            Duration::from_secs(3600),
        );
        let wake = follower.waker();
        feed.subscribe(&sneakerstop_auth::revocation::channel(SCHEMA), move |_| wake.notify_one());
        tokio::spawn(follower.run(cancel.clone()));
        apps.push(sneakerstop_identity::app(AppState {
            pool: pool.clone(),
            keys,
            passwords: Passwords::new(16, 4).unwrap(),
            throttle: sneakerstop_identity::throttle::Throttle::default(),
            proxies: sneakerstop_auth::client::TrustedProxies::default(),
        }));
    }
    tokio::spawn(feed.run(pool.clone(), cancel.clone()));
    let (b, a) = (apps.pop().unwrap(), apps.pop().unwrap());
    (a, b, pool, cancel)
}

#[tokio::test]
async fn signing_out_everywhere_ends_every_session_of_the_user_on_every_instance() {
    let db = TestDb::new().await;
    let (a, b, _pool, cancel) = two_instances_following(&db).await;
    let fay = session_token(&signup(&a, "fay@example.com", "fay's password").await);
    let phone = session_token(&signin(&b, "fay@example.com", "fay's password").await);
    let laptop = session_token(&signin(&a, "fay@example.com", "fay's password").await);
    let gus = session_token(&signup(&b, "gus@example.com", "gus's password").await);
    for token in [&fay, &phone, &laptop] {
        assert_eq!(current_user(&b, bearer(token)).await["email"], "fay@example.com");
    }

    let answer = Call::post("/api/users/signout/everywhere", json!({}))
        .header("authorization", &format!("Bearer {laptop}"))
        .send(&a)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json, json!({"sessionsEnded": 3}));
    for token in [&fay, &phone, &laptop] {
        assert_eq!(current_user(&a, bearer(token)).await, Value::Null, "instance a ended it at once");
    }
    // Instance b hears of it from the change feed, not from a poll.
    sneakerstop_test_support::wait_until("instance b refuses every ended session", Duration::from_secs(10), || {
        let (b, tokens) = (b.clone(), [fay.clone(), phone.clone(), laptop.clone()]);
        async move {
            for token in &tokens {
                if current_user(&b, bearer(token)).await != Value::Null {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    assert_eq!(current_user(&b, bearer(&gus)).await["email"], "gus@example.com", "another user is untouched");

    let unsigned = Call::post("/api/users/signout/everywhere", json!({})).send(&a).await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED, "{}", unsigned.text);
    cancel.cancel();
}

fn change_password(token: &str, current: &str, new: &str) -> Call {
    Call::post("/api/users/password", json!({"currentPassword": current, "newPassword": new}))
        .header("authorization", &format!("Bearer {token}"))
}

#[tokio::test]
async fn changing_the_password_ends_the_other_sessions_and_keeps_this_one() {
    let Ctx { app, pool, _db } = ctx().await;
    let old = session_token(&signup(&app, "hal@example.com", "hal's old password").await);
    let this = session_token(&signin(&app, "hal@example.com", "hal's old password").await);

    let short = change_password(&this, "hal's old password", "short").send(&app).await;
    assert!(short.assert_invalid_field("newPassword").contains("8"), "{}", short.text);
    let wrong = change_password(&this, "not hal's password", "hal's new password").send(&app).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN, "{}", wrong.text);
    assert!(wrong.text.contains("wrong-password"), "{}", wrong.text);
    let anonymous = Call::post(
        "/api/users/password",
        json!({"currentPassword": "hal's old password", "newPassword": "hal's new password"}),
    )
    .send(&app)
    .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(current_user(&app, bearer(&old)).await["email"], "hal@example.com", "nothing changed yet");

    let changed = change_password(&this, "hal's old password", "hal's new password").send(&app).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert_eq!(changed.json, json!({"sessionsEnded": 1}));
    assert_eq!(current_user(&app, bearer(&old)).await, Value::Null, "the other session ended");
    assert_eq!(current_user(&app, bearer(&this)).await["email"], "hal@example.com", "this one goes on");
    assert_eq!(signin(&app, "hal@example.com", "hal's old password").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(signin(&app, "hal@example.com", "hal's new password").await.status, StatusCode::OK);
    let reasons: Vec<(String,)> =
        sqlx::query_as("SELECT payload->>'reason' FROM outbox WHERE event_type = 'session.revoked'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(reasons, [("password-changed".to_owned(),)]);
}

#[tokio::test]
async fn guessing_the_current_password_is_throttled_like_signing_in() {
    let Ctx { app, _db, .. } = ctx().await;
    let token = session_token(&signup(&app, "ida@example.com", "ida's password").await);
    // The allowance, then one more wrong guess past it, which blocks the account.
    let allowance = sneakerstop_identity::throttle::Throttle::default().per_account;
    for n in 0..=allowance {
        let answer = change_password(&token, &format!("guess number {n}"), "ida's new password").send(&app).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "guess {n}: {}", answer.text);
    }
    let blocked = change_password(&token, "guess again!", "ida's new password").send(&app).await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS, "{}", blocked.text);
    assert!(blocked.headers.get("retry-after").is_some());
    let right = change_password(&token, "ida's password", "ida's new password").send(&app).await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS, "blocked means blocked, even for the right one");
}
