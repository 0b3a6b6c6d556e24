//! Event contracts shared by every service. No I/O here: only what goes on the wire.
//!
//! - [`topics`] — one topic per aggregate type. Each topic's contract names the payload
//!   field that is the message key ([`Contract::key`]): the aggregate id, except on
//!   `orders.orders`, keyed by sneaker so that one pair's orders stay in order (see
//!   docs/events.md). No call site chooses a key.
//! - [`Envelope`] — CloudEvents 1.0 in Kafka *binary mode*: the attributes are `ce_*`
//!   headers, the JSON payload is the message value, the key is the contract's.
//! - [`identity::UserEvent`], [`catalog::SneakerEvent`], [`orders::OrderEvent`],
//!   [`payments::PaymentEvent`] — one enum per topic, with stable type
//!   names and a schema version per type. The payloads are pinned by snapshot tests
//!   (`tests/contracts.rs`), so changing a contract shows up as a diff in review.
//!
//! Compatibility rule: within a schema version, fields may be added (consumers ignore
//! unknown fields) but never removed, renamed or retyped; such a change is a new version.

pub mod catalog;
mod envelope;
pub mod identity;
pub mod market;
pub mod orders;
pub mod payments;

pub use envelope::{Envelope, EnvelopeError, headers};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Topic names: `<service>.<aggregate>s`.
pub mod topics {
    /// Accounts (identity).
    pub const USERS: &str = "identity.users";
    /// Sneaker listings (catalog).
    pub const SNEAKERS: &str = "catalog.sneakers";
    /// Products, the models listings and bids refer to (catalog).
    pub const PRODUCTS: &str = "catalog.products";
    /// Orders (orders).
    pub const ORDERS: &str = "orders.orders";
    /// Payments (payments).
    pub const PAYMENTS: &str = "payments.payments";
    /// Saved payment methods (payments).
    pub const PAYMENT_METHODS: &str = "payments.methods";
    /// Bids (market).
    pub const BIDS: &str = "market.bids";
    /// Matches: a bid met an ask (market).
    pub const MATCHES: &str = "market.matches";
    /// Every topic a service may publish to.
    pub const ALL: &[&str] = &[USERS, SNEAKERS, PRODUCTS, ORDERS, PAYMENTS, PAYMENT_METHODS, BIDS, MATCHES];

    /// The dead-letter topic of `topic`.
    pub fn dlq(topic: &str) -> String {
        format!("{topic}.dlq")
    }
}

/// Why an event could not be decoded into its contract type.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The `ce_type` is not one this topic's contract knows.
    #[error("unknown event type `{0}` for this topic")]
    UnknownType(String),
    /// The payload's schema version is newer than this code understands.
    #[error("event type `{event_type}` has schema version {found}, this code reads up to {supported}")]
    UnsupportedVersion {
        /// The event type.
        event_type: String,
        /// The version found in the envelope.
        found: u32,
        /// The newest version this code reads.
        supported: u32,
    },
    /// The payload does not match the contract.
    #[error("payload of `{event_type}` does not match its contract: {source}")]
    Payload {
        /// The event type.
        event_type: String,
        /// The JSON error.
        source: serde_json::Error,
    },
}

/// A topic's event enum: how each variant maps to a type name, version, payload and key.
pub trait Contract: Sized {
    /// The topic these events are published on.
    const TOPIC: &'static str;
    /// The message key: decides the partition, so events that must stay in order share it.
    fn key(&self) -> uuid::Uuid;
    /// The stable type name (`sneaker.listed`), the `ce_type` header.
    fn event_type(&self) -> &'static str;
    /// The payload's schema version.
    fn schema_version(&self) -> u32;
    /// The payload as JSON.
    fn payload(&self) -> serde_json::Value;
    /// Decodes the payload of an event of `event_type` at `schema_version`.
    fn decode(event_type: &str, schema_version: u32, payload: &[u8]) -> Result<Self, DecodeError>;
}

/// Decodes one variant's payload, checking its version; used by [`contract!`].
#[doc(hidden)]
pub fn decode_payload<T: DeserializeOwned>(
    event_type: &str,
    found: u32,
    supported: u32,
    payload: &[u8],
) -> Result<T, DecodeError> {
    if found > supported {
        return Err(DecodeError::UnsupportedVersion { event_type: event_type.to_owned(), found, supported });
    }
    serde_json::from_slice(payload).map_err(|source| DecodeError::Payload { event_type: event_type.to_owned(), source })
}

/// Serializes a payload struct; payload types are plain data, so this cannot fail.
#[doc(hidden)]
pub fn to_value<T: Serialize>(payload: &T) -> serde_json::Value {
    serde_json::to_value(payload).unwrap_or_else(|e| unreachable!("event payloads are plain data: {e}"))
}

/// Declares a topic's event enum, keyed by a field every payload has:
/// `pub enum E on topics::T, key field { Variant("type.name", v version) => Payload, ... }`.
#[macro_export]
macro_rules! contract {
    (
        $(#[$meta:meta])*
        pub enum $name:ident on $topic:path, key $key:ident {
            $( $(#[$vmeta:meta])* $variant:ident($type_name:literal, v $version:literal) => $payload:ty ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $( $(#[$vmeta])* $variant($payload) ),+
        }

        impl $name {
            /// Every type name of this topic, with its current schema version.
            pub const TYPES: &'static [(&'static str, u32)] = &[$( ($type_name, $version) ),+];
        }

        impl $crate::Contract for $name {
            const TOPIC: &'static str = $topic;

            fn key(&self) -> uuid::Uuid {
                match self { $( Self::$variant(p) => p.$key ),+ }
            }

            fn event_type(&self) -> &'static str {
                match self { $( Self::$variant(_) => $type_name ),+ }
            }

            fn schema_version(&self) -> u32 {
                match self { $( Self::$variant(_) => $version ),+ }
            }

            fn payload(&self) -> serde_json::Value {
                match self { $( Self::$variant(p) => $crate::to_value(p) ),+ }
            }

            fn decode(event_type: &str, schema_version: u32, payload: &[u8]) -> Result<Self, $crate::DecodeError> {
                match event_type {
                    $( $type_name => $crate::decode_payload(event_type, schema_version, $version, payload).map(Self::$variant), )+
                    other => Err($crate::DecodeError::UnknownType(other.to_owned())),
                }
            }
        }
    };
}
