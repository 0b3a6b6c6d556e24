//! Kafka-protocol brokers for tests.
//!
//! Most tests share the broker `make test` started (`KAFKA_BROKERS`) and keep to their own
//! topics and groups. A test that must stop and restart a broker starts a private one with
//! [`Broker::start`]: the real Tansu binary (`TANSU_BIN`, or `tansu` on the `PATH`) with its
//! SQLite engine, on a free port.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// The shared test broker's bootstrap address.
pub fn shared_brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// A unique name for a test's topic or consumer group.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A private Tansu broker, killed when dropped. It stores its log in SQLite in a
/// directory of its own, so a stop and [`Broker::resume`] keep every record and committed
/// offset, as a real broker's restart would.
#[derive(Debug)]
pub struct Broker {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test broker's data and log kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Broker {
    /// Starts a broker on a free port and waits until it accepts connections.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let dir = std::env::temp_dir().join(unique("sneakerstop-test-broker"));
        std::fs::create_dir_all(&dir).expect("create broker directory");
        let mut broker = Self { port, dir, child: None };
        broker.resume().await;
        broker
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (`kill -9`; the port stays ours to reuse).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts the broker again on the same port.
    pub async fn resume(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let binary = std::env::var("TANSU_BIN").unwrap_or_else(|_| "tansu".to_owned());
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(&binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "sqlite://tansu.db",
            ])
            .current_dir(&self.dir)
            .env_remove("STORAGE_ENGINE")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .stdin(Stdio::null())
            .stdout(log_file(&self.dir))
            .stderr(log_file(&self.dir))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary} (set TANSU_BIN or run scripts/broker.sh install): {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(Instant::now() < deadline, "broker did not listen on {} within 30s", self.port);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The broker's log, appended to across restarts.
fn log_file(dir: &std::path::Path) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("broker.log"))
        .map_or_else(|_| Stdio::null(), Stdio::from)
}
