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
    /// The SASL_SSL listener's port, for a broker started with [`Broker::start_secure`].
    secure_port: Option<u16>,
}

/// How to reach a [`Broker::start_secure`] broker's SASL_SSL listener.
#[derive(Debug, Clone)]
pub struct SecureListener {
    /// `127.0.0.1:<port>`.
    pub brokers: String,
    /// The PEM certificate clients trust.
    pub ca: String,
    /// A user known to SCRAM-SHA-512 and PLAIN.
    pub username: String,
    /// Its password.
    pub password: String,
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

/// The project's broker script, found from this crate's place in the workspace.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kafka.sh")
}

impl Broker {
    /// Starts a broker on a free port and waits until it answers a metadata request.
    pub async fn start() -> Self {
        Self::launch(None).await
    }

    /// Starts a broker that also has a SASL_SSL listener (see `scripts/kafka.sh`): a
    /// throwaway certificate and a SCRAM-SHA-512 and PLAIN user.
    pub async fn start_secure() -> Self {
        Self::launch(Some(free_port())).await
    }

    async fn launch(secure_port: Option<u16>) -> Self {
        let dir = std::env::temp_dir().join(unique("sneakerstop-test-broker"));
        std::fs::create_dir_all(&dir).expect("create broker directory");
        let mut broker = Self { port: free_port(), dir, pid: None, secure_port };
        broker.resume().await;
        broker
    }

    /// The SASL_SSL listener of a broker started with [`Broker::start_secure`].
    pub fn secure_listener(&self) -> SecureListener {
        assert!(self.secure_port.is_some(), "started without a SASL_SSL listener");
        let env = std::fs::read_to_string(self.dir.join("tls/client.env")).expect("tls/client.env");
        let get = |name: &str| {
            env.lines()
                .find_map(|line| line.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("{name} in client.env"))
                .to_owned()
        };
        SecureListener {
            brokers: get("KAFKA_SASL_SSL_BROKERS"),
            ca: get("KAFKA_SASL_SSL_CA"),
            username: get("KAFKA_SASL_SSL_USERNAME"),
            password: get("KAFKA_SASL_SSL_PASSWORD"),
        }
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
        let mut command = tokio::process::Command::new("bash");
        if let Some(port) = self.secure_port {
            command.env("KAFKA_SASL_SSL_PORT", port.to_string());
        }
        let output = command
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
