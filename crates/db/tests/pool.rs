//! The pool hands out a connection used a moment ago without pinging it first, and pings
//! (and replaces, if the server ended it) one that sat idle longer.

use sneakerstop_db::{ALIVE_WITHOUT_PING, DbConfig};
use sneakerstop_test_support::TestDb;
use sqlx::PgPool;

/// A pool of one connection, so every statement gets the same one while it lives.
async fn pool_of_one(db: &TestDb) -> PgPool {
    let config = DbConfig { pool_size: 1, ..db.config() };
    sneakerstop_db::pool(&config, "public").await.unwrap()
}

async fn backend(pool: &PgPool) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(pool).await
}

/// Ends `pid`'s backend from `other` (a connection of its own, opened beforehand so that this
/// takes one statement) and waits (up to 5 s) until it has exited.
async fn terminate(other: &PgPool, pid: i32) {
    let ended: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1, 5000)").bind(pid).fetch_one(other).await.unwrap();
    assert!(ended, "backend {pid} ended");
}

/// A pool of one connection that has been used, whose backend the server then ended; and
/// that backend's pid.
async fn pool_whose_backend_ended(db: &TestDb) -> (PgPool, i32) {
    let (pool, other) = (pool_of_one(db).await, PgPool::connect(&db.url()).await.unwrap());
    let first = backend(&pool).await.unwrap();
    terminate(&other, first).await;
    (pool, first)
}

#[tokio::test]
async fn a_connection_idle_past_the_window_is_pinged_and_replaced_if_the_server_ended_it() {
    let db = TestDb::new().await;
    let (pool, first) = pool_whose_backend_ended(&db).await;

    // The precondition under test is the idle time itself, not an event to wait for.
    tokio::time::sleep(ALIVE_WITHOUT_PING * 2).await;
    let second = backend(&pool).await.expect("the ping found the connection dead and a new one was made");
    assert_ne!(first, second);
}

#[tokio::test]
async fn a_connection_used_within_the_window_is_handed_out_without_a_ping() {
    let db = TestDb::new().await;
    let (pool, first) = pool_whose_backend_ended(&db).await;

    // No ping: the statement itself finds the connection gone (had the pool pinged, it would
    // have replaced the connection and this would succeed). The pool then replaces it.
    let failed = backend(&pool).await;
    assert!(failed.is_err(), "the dead connection was handed out unpinged: {failed:?}");
    let second = backend(&pool).await.expect("a new connection after the failed one");
    assert_ne!(first, second);
}
