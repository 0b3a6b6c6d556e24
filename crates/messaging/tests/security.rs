//! Reaching Apache Kafka over TLS with SASL, as a managed Kafka requires: a real broker with a
//! SASL_SSL listener (scripts/kafka.sh: a throwaway certificate, a SCRAM-SHA-512 and PLAIN
//! user), our clients configured only through `Security`.

use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureRecord;
use sneakerstop_messaging::{Kafka, Security};
use sneakerstop_settings::{KafkaSecurityProtocol, Secret};
use sneakerstop_test_support::{Broker, SecureListener, unique};

fn secure(listener: &SecureListener, mechanism: &str, password: &str) -> Kafka {
    Kafka::new(&listener.brokers).with_security(Security {
        protocol: Some(KafkaSecurityProtocol::SaslSsl),
        ca_location: Some(listener.ca.clone()),
        certificate: None,
        sasl: Some((mechanism.to_owned(), listener.username.clone(), Secret::new(password))),
    })
}

#[tokio::test]
async fn events_flow_over_sasl_ssl_with_scram_and_plain_and_a_wrong_password_names_the_setting() {
    let broker = Broker::start_secure().await;
    let listener = broker.secure_listener();
    for mechanism in ["SCRAM-SHA-512", "PLAIN"] {
        let kafka = secure(&listener, mechanism, &listener.password);
        let topic = unique("secure");
        kafka.ensure_topics(&[&topic]).await.expect("create topics over SASL_SSL");
        let producer = kafka.producer().unwrap();
        let payload = format!("over {mechanism}");
        producer
            .send(FutureRecord::to(&topic).key("k").payload(&payload), Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .expect("produce over SASL_SSL");
        let consumer: StreamConsumer = kafka.consumer_config(&unique("secure-group")).create().unwrap();
        consumer.subscribe(&[&topic]).unwrap();
        let message = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .expect("a record within a minute")
            .expect("consume over SASL_SSL");
        assert_eq!(message.payload(), Some(payload.as_bytes()), "{mechanism}");
    }

    let wrong = secure(&listener, "SCRAM-SHA-512", "not-the-password");
    let error = wrong.ensure_topics(&["never.created"]).await.expect_err("a wrong password is refused");
    let error = format!("{error:#}");
    assert!(error.contains("KAFKA_SASL_PASSWORD"), "the error names the setting: {error}");
    assert!(!error.contains(&listener.password) && !error.contains("not-the-password"), "never the password: {error}");
}
