//! Apache Kafka brokers for tests.
//!
//! Most tests share the broker `make test` started (`KAFKA_BROKERS`) and keep to their own
//! topics and groups. A test that must kill and restart a broker starts a private one with
//! [`Broker::start`]: a real single-node Apache Kafka (KRaft), started by the same
//! `scripts/kafka.sh` that `make run` and `make test` use, so there is one broker
//! configuration in the project, on free ports and in a directory of its own.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The shared test broker's bootstrap address.
pub fn shared_brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// A unique name for a test's topic or consumer group.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A private Apache Kafka broker, killed when dropped. Its log lives in a directory of its
/// own, so [`Broker::stop`] (`kill -9`) and [`Broker::resume`] keep every record and
/// committed offset that reached the log, as a real broker's crash and restart would.
#[derive(Debug)]
pub struct Broker {
    port: u16,
    dir: PathBuf,
    pid: Option<u32>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("test broker's data and log kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The project's broker script, found from this crate's place in the workspace.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kafka.sh")
}

impl Broker {
    /// Starts a broker on a free port and waits until it answers a metadata request.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let dir = std::env::temp_dir().join(unique("sneakerstop-test-broker"));
        std::fs::create_dir_all(&dir).expect("create broker directory");
        let mut broker = Self { port, dir, pid: None };
        broker.resume().await;
        broker
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (`kill -9`, no clean shutdown; the port stays ours to reuse).
    pub async fn stop(&mut self) {
        self.kill();
        // The port is free again once the process is gone.
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
            assert!(Instant::now() < deadline, "killed broker still listens on {}", self.port);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts the broker again on the same port with the same data.
    pub async fn resume(&mut self) {
        assert!(self.pid.is_none(), "broker already running");
        let output = tokio::process::Command::new("bash")
            .arg(script())
            .args(["start", &self.port.to_string()])
            .arg(&self.dir)
            .arg("test")
            .output()
            .await
            .expect("run scripts/kafka.sh");
        assert!(
            output.status.success(),
            "scripts/kafka.sh start failed: {}\nbroker log in {}",
            String::from_utf8_lossy(&output.stderr),
            self.dir.display()
        );
        let pid = String::from_utf8_lossy(&output.stdout).trim().parse().expect("broker pid on stdout");
        self.pid = Some(pid);
    }

    fn kill(&mut self) {
        if let Some(pid) = self.pid.take() {
            // The broker runs in a session of its own (setsid), so it is not our child to
            // reap; `kill` is the portable way to deliver SIGKILL to it.
            let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }
}
