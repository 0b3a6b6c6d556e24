//! A per-test database is created on the configured server and reached with the server
//! URL's options (`make test` turns TLS off over loopback, as `make run` does).

use sneakerstop_test_support::{TestDb, admin_url};
use sqlx::Connection;

#[tokio::test]
async fn a_test_database_keeps_the_server_urls_options() {
    let db = TestDb::new().await;
    let url = db.url();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let admin = admin_url();
    assert_eq!(query, admin.split_once('?').map_or("", |(_, q)| q), "options carried over: {url}");

    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let (database, tls): (String, bool) = sqlx::query_as(
        "SELECT current_database()::text,
                coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(Some(database.as_str()), path.rsplit('/').next(), "connected to the test's own database");
    if query.contains("sslmode=disable") {
        assert!(!tls, "sslmode=disable must reach the server without TLS");
    }
    conn.close().await.unwrap();
}
