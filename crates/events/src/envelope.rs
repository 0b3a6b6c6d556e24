//! The CloudEvents 1.0 envelope in Kafka binary mode.
//!
//! Attributes travel as message headers, the payload as the value, the contract's key
//! ([`crate::Contract::key`]) as the message key (CloudEvents' Kafka protocol binding,
//! "binary content mode"):
//!
//! | header | meaning |
//! |---|---|
//! | `ce_specversion` | `1.0` |
//! | `ce_id` | unique event id, a UUIDv7 (time-ordered); consumers deduplicate on it |
//! | `ce_type` | stable type name, e.g. `sneaker.listed` |
//! | `ce_source` | the producing service, e.g. `/sneakerstop/catalog` |
//! | `ce_subject` | the aggregate id (usually also the message key; see `Contract::key`) |
//! | `ce_time` | when the change was committed, RFC 3339 |
//! | `ce_schemaversion` | the payload's schema version (extension attribute) |
//! | `ce_aggregateversion` | the aggregate's version after this change (extension attribute) |
//! | `content-type` | `application/json` |
//! | `traceparent` | W3C trace context of the request that caused the event, when there was one |

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::Contract;

/// Header names.
pub mod headers {
    /// CloudEvents spec version.
    pub const SPECVERSION: &str = "ce_specversion";
    /// Event id.
    pub const ID: &str = "ce_id";
    /// Event type.
    pub const TYPE: &str = "ce_type";
    /// Producing service.
    pub const SOURCE: &str = "ce_source";
    /// Aggregate id.
    pub const SUBJECT: &str = "ce_subject";
    /// Event time.
    pub const TIME: &str = "ce_time";
    /// Payload schema version.
    pub const SCHEMA_VERSION: &str = "ce_schemaversion";
    /// Aggregate version.
    pub const AGGREGATE_VERSION: &str = "ce_aggregateversion";
    /// Payload media type.
    pub const CONTENT_TYPE: &str = "content-type";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";
}

/// The CloudEvents spec version we write.
pub const SPEC_VERSION: &str = "1.0";

/// An event's attributes (everything but the payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Unique id; a redelivered event has the same id.
    pub id: Uuid,
    /// Stable type name.
    pub event_type: String,
    /// The producing service.
    pub source: String,
    /// The aggregate id (the message key is the contract's, see `Contract::key`).
    pub subject: String,
    /// When the change happened.
    pub time: DateTime<Utc>,
    /// Payload schema version.
    pub schema_version: u32,
    /// The aggregate's version after the change.
    pub aggregate_version: i64,
    /// W3C `traceparent` of the causing request, if any.
    pub traceparent: Option<String>,
}

/// Why message headers are not a valid envelope.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// A required header is absent.
    #[error("missing header `{0}`")]
    Missing(&'static str),
    /// A header has a value we cannot read.
    #[error("header `{header}` is invalid: {reason}")]
    Invalid {
        /// The header.
        header: &'static str,
        /// Why.
        reason: String,
    },
}

impl Envelope {
    /// A new envelope for `event` about aggregate `subject` at `aggregate_version`.
    pub fn new<C: Contract>(
        event: &C,
        source: &str,
        subject: impl ToString,
        aggregate_version: i64,
        traceparent: Option<String>,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            event_type: event.event_type().to_owned(),
            source: source.to_owned(),
            subject: subject.to_string(),
            time: Utc::now(),
            schema_version: event.schema_version(),
            aggregate_version,
            traceparent,
        }
    }

    /// The headers that carry this envelope, in a stable order.
    pub fn to_headers(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            (headers::SPECVERSION, SPEC_VERSION.to_owned()),
            (headers::ID, self.id.to_string()),
            (headers::TYPE, self.event_type.clone()),
            (headers::SOURCE, self.source.clone()),
            (headers::SUBJECT, self.subject.clone()),
            (headers::TIME, self.time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
            (headers::SCHEMA_VERSION, self.schema_version.to_string()),
            (headers::AGGREGATE_VERSION, self.aggregate_version.to_string()),
            (headers::CONTENT_TYPE, "application/json".to_owned()),
        ];
        if let Some(traceparent) = &self.traceparent {
            out.push((headers::TRACEPARENT, traceparent.clone()));
        }
        out
    }

    /// Reads an envelope from message headers (unknown headers are ignored).
    pub fn from_headers<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Result<Self, EnvelopeError> {
        let pairs: Vec<(&str, &[u8])> = pairs.into_iter().collect();
        let get = |name: &'static str| -> Result<&str, EnvelopeError> {
            let (_, value) = pairs.iter().find(|(k, _)| *k == name).ok_or(EnvelopeError::Missing(name))?;
            std::str::from_utf8(value).map_err(|_| EnvelopeError::Invalid { header: name, reason: "not UTF-8".into() })
        };
        let invalid = |header: &'static str, reason: String| EnvelopeError::Invalid { header, reason };

        let spec = get(headers::SPECVERSION)?;
        if spec != SPEC_VERSION {
            return Err(invalid(headers::SPECVERSION, format!("expected {SPEC_VERSION}, got {spec}")));
        }
        Ok(Self {
            id: get(headers::ID)?.parse().map_err(|e| invalid(headers::ID, format!("{e}")))?,
            event_type: get(headers::TYPE)?.to_owned(),
            source: get(headers::SOURCE)?.to_owned(),
            subject: get(headers::SUBJECT)?.to_owned(),
            time: DateTime::parse_from_rfc3339(get(headers::TIME)?)
                .map_err(|e| invalid(headers::TIME, format!("{e}")))?
                .with_timezone(&Utc),
            schema_version: get(headers::SCHEMA_VERSION)?
                .parse()
                .map_err(|e| invalid(headers::SCHEMA_VERSION, format!("{e}")))?,
            aggregate_version: get(headers::AGGREGATE_VERSION)?
                .parse()
                .map_err(|e| invalid(headers::AGGREGATE_VERSION, format!("{e}")))?,
            traceparent: get(headers::TRACEPARENT).ok().map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{UserEvent, UserRegistered};

    fn event() -> UserEvent {
        UserEvent::Registered(UserRegistered {
            user_id: Uuid::nil(),
            email: "ann@example.com".into(),
            registered_at: Utc::now(),
        })
    }

    #[test]
    fn headers_round_trip() {
        let envelope = Envelope::new(&event(), "/sneakerstop/identity", Uuid::nil(), 1, Some("00-abc-def-01".into()));
        assert_eq!(envelope.id.get_version_num(), 7, "ids are UUIDv7");
        let headers = envelope.to_headers();
        let decoded = Envelope::from_headers(headers.iter().map(|(k, v)| (*k, v.as_bytes()))).unwrap();
        // RFC 3339 with microseconds: compare at that precision.
        assert_eq!(decoded.time.timestamp_micros(), envelope.time.timestamp_micros());
        assert_eq!(Envelope { time: envelope.time, ..decoded }, envelope);
        assert!(headers.contains(&("ce_specversion", "1.0".to_owned())));
        assert!(headers.contains(&("ce_type", "user.registered".to_owned())));
        assert!(headers.contains(&("content-type", "application/json".to_owned())));
    }

    #[test]
    fn missing_or_invalid_headers_are_named() {
        let envelope = Envelope::new(&event(), "/sneakerstop/identity", Uuid::nil(), 1, None);
        let headers = envelope.to_headers();
        let without_id = headers.iter().filter(|(k, _)| *k != "ce_id").map(|(k, v)| (*k, v.as_bytes()));
        assert_eq!(Envelope::from_headers(without_id), Err(EnvelopeError::Missing("ce_id")));
        let bad_version =
            headers.iter().map(|(k, v)| (*k, if *k == "ce_aggregateversion" { "x".as_bytes() } else { v.as_bytes() }));
        assert!(matches!(
            Envelope::from_headers(bad_version),
            Err(EnvelopeError::Invalid { header: "ce_aggregateversion", .. })
        ));
    }
}
