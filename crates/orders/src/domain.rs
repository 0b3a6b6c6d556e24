//! The order state machine.
//!
//! ```text
//! created ──buyer cancels / reservation lapses──▶ cancelled
//!    │
//!    └──────────────payment succeeded───────────▶ complete
//! ```
//!
//! `cancelled` and `complete` are final. A live order (`created` or `complete`) holds its
//! pair; the database allows at most one per pair.

use serde::{Deserialize, Serialize};
use sneakerstop_events::orders::CancelReason;
use utoipa::ToSchema;

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Reserving its pair, awaiting payment until `expiresAt`.
    Created,
    /// Ended unpaid (see `cancelReason`).
    Cancelled,
    /// Paid; the pair is sold.
    Complete,
}

/// A transition the current status does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from} order cannot be {to}")]
pub struct InvalidTransition {
    /// The current status, as a word.
    pub from: &'static str,
    /// The attempted outcome, as a word.
    pub to: &'static str,
}

impl OrderStatus {
    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Cancelled => "cancelled",
            Self::Complete => "complete",
        }
    }

    /// Parses a stored status.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "created" => Some(Self::Created),
            "cancelled" => Some(Self::Cancelled),
            "complete" => Some(Self::Complete),
            _ => None,
        }
    }

    /// The status after cancelling for `reason`, if allowed.
    pub fn cancel(self, _reason: CancelReason) -> Result<Self, InvalidTransition> {
        match self {
            Self::Created => Ok(Self::Cancelled),
            other => Err(InvalidTransition { from: other.as_str(), to: "cancelled" }),
        }
    }

    /// The status after a successful payment, if allowed.
    pub fn complete(self) -> Result<Self, InvalidTransition> {
        match self {
            Self::Created => Ok(Self::Complete),
            other => Err(InvalidTransition { from: other.as_str(), to: "completed" }),
        }
    }
}

/// The reason as stored and shown.
pub fn reason_str(reason: CancelReason) -> &'static str {
    match reason {
        CancelReason::Buyer => "buyer",
        CancelReason::Expired => "expired",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_created_order_can_end() {
        assert_eq!(OrderStatus::Created.cancel(CancelReason::Buyer), Ok(OrderStatus::Cancelled));
        assert_eq!(OrderStatus::Created.complete(), Ok(OrderStatus::Complete));
        assert!(OrderStatus::Complete.cancel(CancelReason::Expired).is_err());
        assert!(OrderStatus::Cancelled.complete().is_err());
        assert_eq!(
            OrderStatus::Cancelled.cancel(CancelReason::Buyer).unwrap_err().to_string(),
            "a cancelled order cannot be cancelled"
        );
    }

    #[test]
    fn statuses_round_trip_through_text() {
        for status in [OrderStatus::Created, OrderStatus::Cancelled, OrderStatus::Complete] {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(OrderStatus::parse("shipped"), None);
    }
}
