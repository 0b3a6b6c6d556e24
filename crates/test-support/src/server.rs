//! The real `sneakerstop` binary as a child process, for end-to-end tests.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running `sneakerstop serve`, killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// What its topics' names start with on the brokers (`KAFKA_TOPIC_PREFIX`).
    topic_prefix: String,
}

/// The database a `postgres://…/<name>?…` URL names.
fn database_name(url: &str) -> &str {
    let path = url.split('?').next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or(path)
}

impl Server {
    /// Starts `binary` with `args` and `env`, on a free port, and waits until it listens.
    ///
    /// The binary logs JSON; the line with `"message":"listening"` carries the address.
    pub async fn start(binary: impl AsRef<Path>, args: &[&str], env: &[(&str, String)]) -> Self {
        let mut command = Command::new(binary.as_ref());
        command
            .args(args)
            .env("PORT", "0")
            .env("HOST", "127.0.0.1")
            .env("LOG_FORMAT", "json")
            // The test's own filter, if it was given one (`RUST_LOG=info,librdkafka=debug`
            // with `KAFKA_DEBUG`, which the server inherits).
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()))
            // Tests share one broker: each server gets consumer groups of its own, and the
            // shared broker unless the test names another.
            .env("KAFKA_GROUP_PREFIX", crate::unique("test"))
            .env("KAFKA_BROKERS", crate::shared_brokers())
            .env("OUTBOX_POLL_INTERVAL", "200ms")
            // Tests write as fast as they can from a few accounts; the test of the write
            // limit sets its own.
            .env("WRITE_LIMIT_PER_SECOND", "100000")
            .env("WRITE_LIMIT_BURST", "100000")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        // Every server on one database is one deployment: it has topics of its own on the
        // shared broker, named after the database, so that it reads its own events and not
        // the history of every test before it (a new consumer group reads from the start).
        // A test that names a prefix keeps it.
        let named = env.iter().find(|(key, _)| *key == "KAFKA_TOPIC_PREFIX").map(|(_, prefix)| prefix.clone());
        let database = env.iter().find(|(key, _)| *key == "DATABASE_URL").map(|(_, url)| database_name(url));
        let topic_prefix = named.or_else(|| database.map(|name| format!("{name}."))).unwrap_or_default();
        command.env("KAFKA_TOPIC_PREFIX", &topic_prefix);
        let mut child = command.spawn().expect("start the sneakerstop binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.expect("read server output") {
                eprintln!("[server] {line}");
                let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
                if json["message"] == "listening" {
                    return json["addr"].as_str().map(str::to_owned);
                }
            }
            None
        })
        .await
        .expect("server did not start listening within 60s")
        .expect("server exited before listening");
        // Keep echoing its log so a failing test shows what the server did.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[server] {line}");
            }
        });
        Self { child, base_url: format!("http://{addr}"), topic_prefix }
    }

    /// The name the contract's topic `name` has on the brokers for this server.
    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.topic_prefix)
    }

    /// `base_url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The sum of every series of the metric `name` on the server's `/metrics`, or `None`
    /// while it has none.
    pub async fn metric_sum(&self, name: &str) -> Option<f64> {
        let metrics = reqwest::get(self.url("/metrics")).await.ok()?.text().await.ok()?;
        sneakerstop_load::prometheus::sum(&metrics, name)
    }

    /// Waits until the server's consumer groups have caught up with their topics (the
    /// `consumer_lag` its watchers report is 0). A new group reads the shared broker's
    /// topics from the start — the backlog every earlier test left — so a test whose clock
    /// matters (a reservation that lapses in seconds) starts it only after this.
    pub async fn caught_up(&self) {
        crate::wait_until("the server's consumers to catch up", Duration::from_secs(120), || async {
            (self.metric_sum("consumer_lag").await == Some(0.0)).then_some(())
        })
        .await;
    }

    /// Signs a new user up (a unique email) and returns the `session=<jwt>` cookie pair.
    pub async fn signup(&self) -> String {
        let body =
            serde_json::json!({"email": format!("{}@example.com", crate::unique("user")), "password": "password!"});
        let response = reqwest::Client::new()
            .post(self.url("/api/users/signup"))
            .json(&body)
            .send()
            .await
            .expect("signup request");
        assert_eq!(response.status(), reqwest::StatusCode::CREATED, "signup");
        let cookie = response.headers().get("set-cookie").and_then(|v| v.to_str().ok()).expect("session cookie");
        cookie.split(';').next().unwrap_or_default().to_owned()
    }

    /// Kills the process with SIGKILL (`kill -9`: no drain, no offset commit, no goodbye to
    /// its consumer groups) and waits until it is gone.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited cleanly.
    pub async fn terminate(mut self) -> bool {
        let Some(pid) = self.child.id() else { return false };
        let sent = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        if !sent.is_ok_and(|s| s.success()) {
            return false;
        }
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(Ok(status)) => status.success(),
            _ => false,
        }
    }
}
