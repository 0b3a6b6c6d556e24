//! Kafka client configuration, topic creation and broker health.

use std::time::Duration;

use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use sneakerstop_settings::{KafkaGroupProtocol, KafkaSecurityProtocol, KafkaSettings, Secret};

/// How clients reach the brokers securely. Its `Debug` never shows the password.
#[derive(Clone, Default)]
pub struct Security {
    /// `security.protocol`; `None` is plaintext.
    pub protocol: Option<KafkaSecurityProtocol>,
    /// `ssl.ca.location`.
    pub ca_location: Option<String>,
    /// `ssl.certificate.location` and `ssl.key.location`, for client certificates.
    pub certificate: Option<(String, String)>,
    /// `sasl.mechanism`, `sasl.username`, `sasl.password`.
    pub sasl: Option<(String, String, Secret)>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("protocol", &self.protocol)
            .field("ca_location", &self.ca_location)
            .field("certificate", &self.certificate)
            .field("sasl", &self.sasl.as_ref().map(|(mechanism, user, _)| (mechanism, user, "**redacted**")))
            .finish()
    }
}

impl Security {
    /// From the settings; an incomplete combination is an error naming the settings.
    pub fn from_settings(settings: &KafkaSettings) -> anyhow::Result<Self> {
        let protocol = settings.security_protocol;
        let mut security =
            Self { protocol: (protocol != KafkaSecurityProtocol::Plaintext).then_some(protocol), ..Self::default() };
        if protocol.uses_tls() {
            security.ca_location.clone_from(&settings.ssl_ca_location);
            security.certificate = match (&settings.ssl_certificate_location, &settings.ssl_key_location) {
                (Some(certificate), Some(key)) => Some((certificate.clone(), key.clone())),
                (None, None) => None,
                _ => anyhow::bail!("KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION go together"),
            };
        }
        if protocol.uses_sasl() {
            let (Some(user), Some(password)) = (&settings.sasl_username, &settings.sasl_password) else {
                anyhow::bail!(
                    "KAFKA_SECURITY_PROTOCOL={} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
                    protocol.as_str()
                );
            };
            security.sasl = Some((settings.sasl_mechanism.clone(), user.clone(), password.clone()));
        }
        Ok(security)
    }

    fn apply(&self, config: &mut ClientConfig) {
        let Some(protocol) = self.protocol else { return };
        config.set("security.protocol", protocol.as_str());
        if let Some(ca) = &self.ca_location {
            config.set("ssl.ca.location", ca);
        }
        if let Some((certificate, key)) = &self.certificate {
            config.set("ssl.certificate.location", certificate).set("ssl.key.location", key);
        }
        if let Some((mechanism, user, password)) = &self.sasl {
            config.set("sasl.mechanism", mechanism).set("sasl.username", user).set("sasl.password", password.expose());
        }
    }

    /// What to tell an operator when the brokers refuse us, naming the settings involved.
    fn hint(&self) -> &'static str {
        match (self.protocol, &self.sasl) {
            (_, Some(_)) => {
                "the brokers refused the connection: check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM"
            }
            (Some(_), None) => {
                "the brokers refused the connection: check KAFKA_SECURITY_PROTOCOL and KAFKA_SSL_CA_LOCATION"
            }
            (None, None) => "the brokers did not accept the request: check KAFKA_BROKERS and KAFKA_SECURITY_PROTOCOL",
        }
    }
}

/// Everything needed to make Kafka clients. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Kafka {
    /// Bootstrap servers.
    pub brokers: String,
    /// Partitions for created topics.
    pub partitions: i32,
    /// Replication factor for created topics.
    pub replication_factor: i32,
    /// Producer delivery timeout.
    pub delivery_timeout: Duration,
    /// The consumer group protocol (`KAFKA_GROUP_PROTOCOL`).
    pub group_protocol: KafkaGroupProtocol,
    /// With the classic protocol: how long the group coordinator waits for a silent member
    /// before it reassigns its partitions. With Kafka 4's protocol the brokers decide.
    pub session_timeout: Duration,
    /// TLS and SASL, when the brokers require them.
    pub security: Security,
    /// Put before every topic's name on the brokers (`KAFKA_TOPIC_PREFIX`), so that
    /// deployments sharing a cluster do not read each other's events. The code, the outbox
    /// and the inbox use the contract's names ([`sneakerstop_events::topics`]); only the
    /// brokers see prefixed ones ([`Self::topic`], [`Self::unprefixed`]).
    pub topic_prefix: String,
    /// librdkafka's debug contexts (`KAFKA_DEBUG`), empty for none.
    pub debug: String,
}

impl Kafka {
    /// From the shared settings.
    pub fn from_settings(settings: &KafkaSettings) -> anyhow::Result<Self> {
        Ok(Self {
            brokers: settings.brokers.clone(),
            partitions: settings.partitions,
            replication_factor: settings.replication_factor,
            delivery_timeout: settings.delivery_timeout,
            group_protocol: settings.group_protocol,
            session_timeout: settings.session_timeout,
            security: Security::from_settings(settings)?,
            topic_prefix: settings.topic_prefix.clone(),
            debug: settings.debug.clone(),
        })
    }

    /// For tests and tools: defaults with the given brokers.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            partitions: 3,
            replication_factor: 1,
            delivery_timeout: Duration::from_secs(120),
            group_protocol: KafkaGroupProtocol::Consumer,
            session_timeout: Duration::from_secs(10),
            security: Security::default(),
            topic_prefix: String::new(),
            debug: String::new(),
        }
    }

    /// The same, with topics named `<prefix><topic>` on the brokers.
    #[must_use]
    pub fn with_topic_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.topic_prefix = prefix.into();
        self
    }

    /// The name `topic` (a contract's) has on the brokers.
    pub fn topic(&self, topic: &str) -> String {
        format!("{}{topic}", self.topic_prefix)
    }

    /// The contract's name of `topic`, a name on the brokers.
    pub fn unprefixed<'a>(&self, topic: &'a str) -> &'a str {
        topic.strip_prefix(self.topic_prefix.as_str()).unwrap_or(topic)
    }

    /// The same, reaching the brokers with `security`.
    #[must_use]
    pub fn with_security(mut self, security: Security) -> Self {
        self.security = security;
        self
    }

    fn base(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", "sneakerstop")
            // A broker that went away is asked again within a second of answering, not up to
            // librdkafka's default of 10 s later: a restarted broker resumes the flow at once.
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "1000")
            // Never re-bootstrap. librdkafka 2.12 starts its re-bootstrap sequence whenever every
            // broker it knows is down at once (a one-broker cluster restarting), and a consumer
            // that re-bootstrapped while the broker was away never finds its group coordinator
            // again: it reported "no broker available for coordinator query" for minutes after
            // the broker answered (measured, see docs/reliability.md). Our bootstrap list names
            // the brokers themselves (or a Service in front of them), so re-bootstrapping could
            // only ever rediscover the same brokers.
            .set("metadata.recovery.strategy", "none");
        if !self.debug.is_empty() {
            config.set("debug", &self.debug);
        }
        self.security.apply(&mut config);
        config
    }

    /// An idempotent producer: `acks=all`, no duplicates or reordering from its retries.
    pub fn producer(&self) -> anyhow::Result<FutureProducer> {
        self.base()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("message.timeout.ms", self.delivery_timeout.as_millis().to_string())
            .set("linger.ms", "2")
            // The relay never has more than a batch in flight; cap the buffer well below
            // librdkafka's 1 GiB default so memory stays bounded.
            .set("queue.buffering.max.kbytes", "16384")
            .set("compression.type", "none")
            .create()
            .context("create Kafka producer")
    }

    /// Configuration for a consumer in `group` that stores offsets only when told to.
    pub fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut config = self.base();
        config
            .set("group.id", group)
            // A new group reads every event ever published: replicas are built from history.
            .set("auto.offset.reset", "earliest")
            // Offsets are committed in the background, but only offsets we stored after the
            // handler's transaction committed (at-least-once delivery, exactly-once effect).
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "200")
            .set("group.protocol", self.group_protocol.as_str())
            // A fetch waits at most this long for data; Kafka answers as soon as any
            // arrives, so this bounds idle polling, not an event's hop.
            .set("fetch.wait.max.ms", "100")
            // Prefetch a little, not librdkafka's default 64 MiB per consumer: a consumer
            // that falls behind should not hold the backlog in memory.
            .set("queued.max.messages.kbytes", "4096")
            .set("queued.min.messages", "1000")
            // A request to the group coordinator left without an answer across a broker
            // restart blocks the heartbeats queued behind it until it times out: seen as
            // "ConsumerGroupHeartbeatRequest ... held back by preceding OffsetCommitRequest
            // with timeout in 59 s", a group that consumed nothing for a minute after the
            // broker was back (the chaos test, under load). 5 s instead of 60 s bounds that
            // stall within the 10 s recovery docs/reliability.md promises; with the consumer
            // group protocol no request we make waits on the broker's side (no JoinGroup),
            // and a live broker answers each in milliseconds.
            .set("socket.timeout.ms", "5000");
        // How long a crashed member holds its partitions: with Kafka 4's protocol a setting
        // of the brokers (librdkafka refuses it here), with the classic one of the client.
        match self.group_protocol {
            KafkaGroupProtocol::Classic => {
                config.set("session.timeout.ms", self.session_timeout.as_millis().to_string());
            }
            // Each topic's partitions spread over the members, as the classic range assignor
            // did: the brokers' default ("uniform") balances the count of partitions and
            // hands a whole topic — all of its traffic — to one member.
            KafkaGroupProtocol::Consumer => {
                config.set("group.remote.assignor", "range");
            }
        }
        config
    }

    /// Creates `topics` (and their `.dlq` topics) on the brokers, under the prefix, if they
    /// do not exist.
    pub async fn ensure_topics(&self, topics: &[&str]) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = self.base().create().context("create Kafka admin client")?;
        let mut names: Vec<String> = Vec::new();
        for topic in topics {
            let topic = self.topic(topic);
            names.push(sneakerstop_events::topics::dlq(&topic));
            names.push(topic);
        }
        let new_topics: Vec<NewTopic<'_>> = names
            .iter()
            .map(|name| NewTopic::new(name, self.partitions, TopicReplication::Fixed(self.replication_factor)))
            .collect();
        // The request as a whole is bounded too: librdkafka otherwise keeps retrying brokers
        // that refuse our credentials for its socket timeout (a minute) before saying so.
        let options = AdminOptions::new()
            .operation_timeout(Some(Duration::from_secs(10)))
            .request_timeout(Some(Duration::from_secs(15)));
        let results = admin.create_topics(&new_topics, &options).await.context(self.security.hint())?;
        for result in results {
            match result {
                Ok(name) => tracing::info!(topic = %name, partitions = self.partitions, "created topic"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => anyhow::bail!("create topic {name}: {code}"),
            }
        }
        self.until_led(names).await
    }

    /// Waits until every one of `topics` has a leader for each partition. A topic just
    /// created is not yet known to every broker: a consumer that subscribed to it then would
    /// be told it does not exist, and (subscribing by name) not look again for minutes.
    async fn until_led(&self, topics: Vec<String>) -> anyhow::Result<()> {
        let config = self.base();
        tokio::task::spawn_blocking(move || {
            use rdkafka::consumer::Consumer;
            let client: rdkafka::consumer::BaseConsumer = config.create().context("create Kafka metadata client")?;
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let metadata = client.fetch_metadata(None, Duration::from_secs(5)).context("read topic metadata")?;
                let led = |name: &String| {
                    metadata.topics().iter().any(|topic| {
                        topic.name() == name
                            && topic.error().is_none()
                            && !topic.partitions().is_empty()
                            && topic.partitions().iter().all(|p| p.leader() >= 0 && p.error().is_none())
                    })
                };
                match topics.iter().find(|name| !led(name)) {
                    None => return Ok(()),
                    Some(name) if std::time::Instant::now() > deadline => {
                        anyhow::bail!("topic {name} has no leader 30 s after it was created")
                    }
                    Some(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        })
        .await
        .context("topic metadata task failed")?
    }

    /// Whether a broker answers a metadata request through `producer` (a long-lived client,
    /// so a readiness probe does not build one each time); used by `/readyz`.
    pub async fn ping(producer: &FutureProducer) -> anyhow::Result<()> {
        use rdkafka::producer::Producer;
        let producer = producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(2))
                .map(|_| ())
                .context("Kafka broker did not answer a metadata request")
        })
        .await
        .context("Kafka ping task failed")?
    }
}
