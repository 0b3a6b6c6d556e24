//! Typed settings shared by every service.
//!
//! Settings are clap arguments with an environment variable behind each one, so the same
//! struct gives defaults, reads the documented environment variables (`DATABASE_URL`,
//! `JWT_SECRET`, ...) and shows them all in `sneakerstop serve --help`. Secrets are wrapped in
//! [`Secret`], whose `Debug` never shows the value, and are marked `hide_env_values` so
//! `--help` does not print them either.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// A value that must never appear in logs, errors or `--help` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where the value is used, never to print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(**redacted**)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// A topic prefix: at most 100 of the characters Kafka allows in topic names (ASCII
/// letters and digits, `.`, `_`, `-`).
pub fn parse_topic_prefix(value: &str) -> Result<String, String> {
    if value.len() > 100 {
        return Err("must be at most 100 characters".into());
    }
    if let Some(bad) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("may hold only ASCII letters, digits, `.`, `_` and `-`, not {bad:?}"));
    }
    Ok(value.to_owned())
}

/// Parses durations such as `15m`, `2s` or `24h`.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value).map_err(|e| format!("`{value}` is not a duration like 15m or 2s: {e}"))
}

/// Where the HTTP server listens.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpSettings {
    /// Address to bind the HTTP server to.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to bind; 0 picks a free one (the chosen address is logged as `listening`).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Web origins whose pages may call the API from a browser, with the session cookie
    /// (`https://shop.example.com,https://m.example.com`). None by default: only same-origin
    /// pages and non-browser clients.
    #[arg(long = "cors-allowed-origins", env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_allowed_origins: Vec<String>,
    /// Proxies (addresses or CIDR blocks, comma-separated) whose `X-Forwarded-For` names the
    /// client: the ingress. Nobody's by default, so a client cannot choose its own address.
    #[arg(long = "trusted-proxies", env = "TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,
}

/// A web origin: `scheme://host[:port]`, nothing else (no path, no trailing slash, no `*`).
fn parse_origin(value: &str) -> Result<String, String> {
    let origin = value.trim();
    let (scheme, rest) =
        origin.split_once("://").ok_or_else(|| format!("`{origin}` is not an origin like https://shop.example.com"))?;
    let host_ok = !rest.is_empty() && !rest.contains(['/', '*', '?', '#', ' ']);
    if !matches!(scheme, "http" | "https") || !host_ok {
        return Err(format!("`{origin}` is not an origin like https://shop.example.com (scheme and host, no path)"));
    }
    Ok(origin.to_owned())
}

/// PostgreSQL connection settings.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseSettings {
    /// PostgreSQL URL. The database is created if it does not exist; every service keeps
    /// its tables in a schema of its own name inside it. The local default turns TLS off:
    /// over loopback it protects nothing, and with libpq's default `sslmode=prefer` it took
    /// about a tenth of the machine under load (see docs/performance.md). A database across
    /// a network should be reached with `sslmode=require` or `verify-full`.
    #[arg(
        long = "database-url",
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/sneakerstop?sslmode=disable",
        hide_env_values = true
    )]
    pub url: Secret,
    /// Largest number of connections each service's pool opens.
    #[arg(long = "database-pool-size", env = "DATABASE_POOL_SIZE", default_value_t = 10)]
    pub pool_size: u32,
    /// Apply each service's migrations when it starts (`true`, simplest for one process).
    /// With `false` the server never changes the schema: it waits until `sneakerstop migrate`
    /// (a Job run before a rollout) has applied every migration it knows, then serves.
    #[arg(long = "migrate-on-start", env = "MIGRATE_ON_START", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,
}

/// Session (JWT) settings.
#[derive(Debug, Clone, clap::Args)]
pub struct SessionSettings {
    /// HS256 key that signs session tokens. Required unless `--dev` is given.
    #[arg(long = "jwt-secret", env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
    /// How long a session token stays valid.
    #[arg(long = "session-ttl", env = "SESSION_TTL", default_value = "24h", value_parser = parse_duration)]
    pub ttl: Duration,
    /// Mark the session cookie `Secure` (send only over HTTPS). Turn on behind TLS.
    #[arg(long = "cookie-secure", env = "COOKIE_SECURE", default_value_t = false)]
    pub cookie_secure: bool,
    /// Longest a process goes without reading its service's revoked sessions when no
    /// notification woke it: the bound on how late an instance refuses an ended session
    /// once the revocation has reached its service.
    #[arg(long = "session-revocation-poll", env = "SESSION_REVOCATION_POLL", default_value = "2s", value_parser = parse_duration)]
    pub revocation_poll: Duration,
    /// Writes (POST, PUT, PATCH, DELETE outside `/api/users`) one signed-in user may make
    /// per second, sustained, on each instance; beyond it 429 with `Retry-After`.
    #[arg(long = "write-limit-per-second", env = "WRITE_LIMIT_PER_SECOND", default_value = "5")]
    pub write_limit_per_second: std::num::NonZeroU32,
    /// Writes one user may make at once before the per-second rate applies.
    #[arg(long = "write-limit-burst", env = "WRITE_LIMIT_BURST", default_value = "30")]
    pub write_limit_burst: std::num::NonZeroU32,
}

/// Kafka settings: where the broker is, how topics are made, how hard to retry.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaSettings {
    /// Bootstrap brokers, comma-separated (`host:port,host:port`).
    #[arg(long = "kafka-brokers", env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Partitions for topics the services create at start-up.
    #[arg(long = "kafka-topic-partitions", env = "KAFKA_TOPIC_PARTITIONS", default_value_t = 3)]
    pub partitions: i32,
    /// Replication factor for topics the services create (3 on a production cluster).
    #[arg(long = "kafka-replication-factor", env = "KAFKA_REPLICATION_FACTOR", default_value_t = 1)]
    pub replication_factor: i32,
    /// How long the producer keeps retrying one event through a broker outage before the
    /// relay backs off and tries the batch again.
    #[arg(long = "kafka-delivery-timeout", env = "KAFKA_DELIVERY_TIMEOUT", default_value = "2m", value_parser = parse_duration)]
    pub delivery_timeout: Duration,
    /// librdkafka's debug contexts for every Kafka client (`cgrp,broker`, `all`; empty: none),
    /// logged at DEBUG under the `librdkafka` target — so `RUST_LOG` must let it through
    /// (`info,librdkafka=debug`). For looking into how the clients behave, never left on.
    #[arg(long = "kafka-debug", env = "KAFKA_DEBUG", default_value = "")]
    pub debug: String,
    /// Attempts a consumer makes at one event before sending it to `<topic>.dlq`.
    #[arg(long = "event-max-attempts", env = "EVENT_MAX_ATTEMPTS", default_value_t = 5)]
    pub max_attempts: u32,
    /// Consumer groups are named `<prefix>-<service>`: one group per service, shared by its
    /// replicas. Separate deployments on one cluster need different group prefixes and
    /// different topic prefixes (`KAFKA_TOPIC_PREFIX`).
    #[arg(long = "kafka-group-prefix", env = "KAFKA_GROUP_PREFIX", default_value = "sneakerstop")]
    pub group_prefix: String,
    /// Put before every topic's name on the brokers (`stage.` makes `stage.orders.orders`),
    /// so that deployments sharing a cluster neither read nor act on each other's events.
    /// Empty by default: the topics are named as in docs/events.md.
    #[arg(long = "kafka-topic-prefix", env = "KAFKA_TOPIC_PREFIX", default_value = "", value_parser = parse_topic_prefix)]
    pub topic_prefix: String,
    /// How consumer groups share partitions: `consumer`, Apache Kafka 4's protocol (KIP-848:
    /// the brokers assign partitions, move only those that must move, and decide how long a
    /// silent member keeps its own — the project's brokers say 3 s), or `classic`, for brokers
    /// older than 4.0, where the client's KAFKA_SESSION_TIMEOUT decides.
    #[arg(long = "kafka-group-protocol", env = "KAFKA_GROUP_PROTOCOL", default_value = "consumer")]
    pub group_protocol: KafkaGroupProtocol,
    /// With `KAFKA_GROUP_PROTOCOL=classic` only: how long the group coordinator waits for a
    /// silent consumer (a crashed process) before giving its partitions to the others.
    #[arg(long = "kafka-session-timeout", env = "KAFKA_SESSION_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub session_timeout: Duration,
    /// A consumer group with lag and no committed progress for this long is reported as
    /// stalled in `/healthz` and `consumer_stalled_seconds`.
    #[arg(long = "consumer-stall-after", env = "CONSUMER_STALL_AFTER", default_value = "60s", value_parser = parse_duration)]
    pub stall_after: Duration,
    /// How long a request naming an id that a service's replica has not heard of yet (a
    /// listing or an order made a moment ago) waits for it before answering 404.
    #[arg(long = "replica-wait", env = "REPLICA_WAIT", default_value = "2s", value_parser = parse_duration)]
    pub replica_wait: Duration,
    /// How often the outbox relay checks for events when no notification woke it.
    #[arg(long = "outbox-poll-interval", env = "OUTBOX_POLL_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// How to talk to the brokers: `plaintext` (a local broker), `ssl`, `sasl_plaintext`
    /// or `sasl_ssl` (a managed Kafka, or one with authentication).
    #[arg(long = "kafka-security-protocol", env = "KAFKA_SECURITY_PROTOCOL", default_value = "plaintext")]
    pub security_protocol: KafkaSecurityProtocol,
    /// PEM file of the CA that signed the brokers' certificates (the system's CAs when unset).
    #[arg(long = "kafka-ssl-ca-location", env = "KAFKA_SSL_CA_LOCATION")]
    pub ssl_ca_location: Option<String>,
    /// PEM file of this client's certificate, for brokers that authenticate clients by TLS.
    #[arg(long = "kafka-ssl-certificate-location", env = "KAFKA_SSL_CERTIFICATE_LOCATION")]
    pub ssl_certificate_location: Option<String>,
    /// PEM file of that certificate's private key.
    #[arg(long = "kafka-ssl-key-location", env = "KAFKA_SSL_KEY_LOCATION")]
    pub ssl_key_location: Option<String>,
    /// SASL mechanism: `SCRAM-SHA-512`, `SCRAM-SHA-256` or `PLAIN`.
    #[arg(long = "kafka-sasl-mechanism", env = "KAFKA_SASL_MECHANISM", default_value = "SCRAM-SHA-512", value_parser = ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"])]
    pub sasl_mechanism: String,
    /// SASL user name.
    #[arg(long = "kafka-sasl-username", env = "KAFKA_SASL_USERNAME")]
    pub sasl_username: Option<String>,
    /// SASL password.
    #[arg(long = "kafka-sasl-password", env = "KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub sasl_password: Option<Secret>,
}

/// The consumer group protocol (librdkafka's `group.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum KafkaGroupProtocol {
    /// KIP-848, Apache Kafka 4.0 and later: assignment and session timeout on the brokers.
    Consumer,
    /// The protocol before it: join/sync rebalances, the session timeout set by the client.
    Classic,
}

impl KafkaGroupProtocol {
    /// librdkafka's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Consumer => "consumer",
            Self::Classic => "classic",
        }
    }
}

/// How clients talk to the brokers (librdkafka's `security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum KafkaSecurityProtocol {
    /// No TLS, no authentication.
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL authentication without TLS.
    SaslPlaintext,
    /// SASL authentication over TLS.
    SaslSsl,
}

impl KafkaSecurityProtocol {
    /// librdkafka's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    /// Whether it authenticates with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    /// Whether it encrypts with TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
}

/// Logging settings.
#[derive(Debug, Clone, clap::Args)]
pub struct LogSettings {
    /// Log filter in `tracing` syntax, e.g. `info,sneakerstop_identity=debug`.
    #[arg(long = "log", env = "RUST_LOG", default_value = "info")]
    pub filter: String,
    /// Log format: `json` (one object per line) or `pretty`.
    #[arg(long = "log-format", env = "LOG_FORMAT", default_value = "json")]
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for machines.
    Json,
    /// Human-readable lines, for a terminal.
    Pretty,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_never_shows_the_value() {
        let secret = Secret::new("hunter2-very-secret");
        let shown = format!("{secret:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(secret.expose(), "hunter2-very-secret");
    }

    #[test]
    fn durations_parse_in_human_form() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        let err = parse_duration("soon").unwrap_err();
        assert!(err.contains("`soon`"), "{err}");
    }

    #[test]
    fn topic_prefixes_hold_only_what_kafka_allows_in_topic_names() {
        for good in ["", "stage.", "pr-1234_", "A.b-C_9."] {
            assert_eq!(parse_topic_prefix(good).as_deref(), Ok(good));
        }
        assert!(parse_topic_prefix("stage/").unwrap_err().contains("'/'"));
        assert!(parse_topic_prefix("my stage").unwrap_err().contains("' '"));
        assert!(parse_topic_prefix(&"a".repeat(101)).unwrap_err().contains("at most 100"));
    }
}
