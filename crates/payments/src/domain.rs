//! The rules of a payment, decided without a database.
//!
//! ```text
//!            ┌── provider declined ──▶ declined            (final; the next attempt is a new payment)
//! pending ───┼── charged ────────────▶ succeeded ── order cancelled ──┐
//!            └── charged, but the order was cancelled meanwhile ──────┴─▶ refund_pending ── refunded ──▶ refunded
//! ```
//!
//! A payment is one charge attempt for an order. It is written `pending` *before* the
//! provider is called, so no charge exists without a stored payment. Events: the charge is
//! announced as `payment.succeeded` at version 1 — even when the order was cancelled
//! meanwhile, because the money moved — and the refund as `payment.refunded` at version 2.
//!
//! Commands take the current state and return the new one (with the event to publish, if
//! any) or a [`Refusal`]; the use cases hand the result to the store, which writes it only
//! if the payment is still in the state the decision was made from (two recorders of one
//! attempt — a slow request and the recovery task — cannot both record it).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sneakerstop_events::payments::{PaymentDeclined, PaymentEvent, PaymentLapsed, PaymentRefunded, PaymentSucceeded};
use utoipa::ToSchema;
use uuid::Uuid;

/// Where a payment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Written before the provider is called; its outcome is not recorded yet.
    Pending,
    /// The provider declined the card (see `failureReason`).
    Declined,
    /// Charged; the order completes.
    Succeeded,
    /// Charged, but its order was cancelled: the refund task refunds it.
    RefundPending,
    /// Refunded.
    Refunded,
}

/// An order's status as payments knows it (its replica of `orders.orders`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum OrderState {
    /// Payable.
    Created,
    /// Ended unpaid: no new charge is accepted.
    Cancelled,
    /// Paid.
    Complete,
}

/// What payments knows of an order.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OrderReplica {
    /// The order's id.
    pub id: Uuid,
    /// Who placed it.
    pub buyer_id: Uuid,
    /// What it costs, in cents.
    pub amount_cents: i64,
    /// Its status as of the last event applied.
    pub status: OrderState,
    /// The order's version as of the last event applied.
    pub version: i64,
    /// When its reservation lapses unless paid (unknown for orders replicated before
    /// payments kept it: those never lapse here, orders' grace expires them).
    pub expires_at: Option<DateTime<Utc>>,
    /// When payments declared it lapsed unpaid (`payment.lapsed`); no charge starts after.
    pub lapsed_at: Option<DateTime<Utc>>,
}

impl OrderReplica {
    /// Only its buyer may pay an order, or hear what became of a payment for it.
    pub fn check_buyer(&self, buyer: Uuid) -> Result<(), Refusal> {
        if self.buyer_id == buyer { Ok(()) } else { Err(Refusal::NotYourOrder) }
    }

    /// Its deadline has passed at `now`, or payments has closed it already.
    pub fn lapsed(&self, now: DateTime<Utc>) -> bool {
        self.lapsed_at.is_some() || self.expires_at.is_some_and(|at| at <= now)
    }

    /// Closes the payment window of an order whose deadline passed with no charge accepted
    /// or under way (the caller checked that, holding the order's row): no charge starts
    /// from now on, and `payment.lapsed` tells orders to expire it. A charge that started
    /// before the deadline is left to finish: it completes the order, or is declined and the
    /// order lapses then.
    pub fn lapse(&self, now: DateTime<Utc>) -> Result<(OrderReplica, PaymentEvent), Refusal> {
        let expires_at = match (self.status, self.expires_at, self.lapsed_at) {
            (OrderState::Created, Some(at), None) if at <= now => at,
            (OrderState::Created, Some(at), None) => return Err(Refusal::NotDue(at)),
            (OrderState::Created, None, None) => return Err(Refusal::NoDeadline),
            (OrderState::Created, _, Some(_)) => return Err(Refusal::Lapsed),
            (OrderState::Cancelled, ..) => return Err(Refusal::OrderCancelled),
            (OrderState::Complete, ..) => return Err(Refusal::AlreadyPaid),
        };
        let lapsed = OrderReplica { lapsed_at: Some(now), ..self.clone() };
        Ok((lapsed, PaymentEvent::Lapsed(PaymentLapsed { order_id: self.id, expires_at, lapsed_at: now })))
    }
}

/// One charge attempt.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Payment {
    /// Its id.
    pub id: Uuid,
    /// The order it pays.
    pub order_id: Uuid,
    /// Who pays.
    pub buyer_id: Uuid,
    /// How much, in cents.
    pub amount_cents: i64,
    /// 1 for the order's first attempt, +1 per attempt; with the order, the provider's
    /// idempotency key.
    pub attempt: i32,
    /// Where it is.
    pub status: PaymentStatus,
    /// The provider's reason for a decline.
    pub failure_reason: Option<String>,
    /// The provider's id of the charge.
    pub provider_ref: Option<String>,
    /// The provider's id of the refund.
    pub refund_ref: Option<String>,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// A command's outcome: the payment's new state, the state it was decided from, and what to
/// publish (with the payment's version for it), if anything.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The payment after the command.
    pub payment: Payment,
    /// The status the decision was made from: the store writes only if it still holds.
    pub from: PaymentStatus,
    /// The event and its aggregate version.
    pub event: Option<(PaymentEvent, i64)>,
}

/// Why a command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The order belongs to another buyer.
    #[error("this order belongs to another buyer")]
    NotYourOrder,
    /// The order was cancelled.
    #[error("the order was cancelled")]
    OrderCancelled,
    /// The order is paid.
    #[error("the order is already paid")]
    AlreadyPaid,
    /// The order's reservation lapsed before a payment started.
    #[error("the order's reservation lapsed unpaid")]
    Lapsed,
    /// The order's deadline has not come yet.
    #[error("the order's reservation lapses only at {0}")]
    NotDue(DateTime<Utc>),
    /// The order was replicated without its deadline.
    #[error("the order's deadline is unknown to payments")]
    NoDeadline,
    /// The payment's status does not allow the command.
    #[error("a {from:?} payment cannot be {to}")]
    Transition {
        /// The status it is in.
        from: PaymentStatus,
        /// What was attempted.
        to: &'static str,
    },
}

impl Payment {
    /// `buyer` starts attempt number `attempt` to pay `order`, at `now`.
    pub fn begin(
        id: Uuid,
        buyer: Uuid,
        order: &OrderReplica,
        attempt: i32,
        now: DateTime<Utc>,
    ) -> Result<Payment, Refusal> {
        order.check_buyer(buyer)?;
        match order.status {
            OrderState::Cancelled => return Err(Refusal::OrderCancelled),
            OrderState::Complete => return Err(Refusal::AlreadyPaid),
            // Only a charge that starts before the deadline may complete the order.
            OrderState::Created if order.lapsed(now) => return Err(Refusal::Lapsed),
            OrderState::Created => {}
        }
        Ok(Payment {
            id,
            order_id: order.id,
            buyer_id: buyer,
            amount_cents: order.amount_cents,
            attempt,
            status: PaymentStatus::Pending,
            failure_reason: None,
            provider_ref: None,
            refund_ref: None,
            created_at: now,
            updated_at: now,
        })
    }

    /// The provider charged it (`provider_ref`); `order` is what payments knows of the
    /// order now. Announced either way; refunded if the order was cancelled meanwhile.
    pub fn record_charge(
        &self,
        provider_ref: &str,
        order: Option<&OrderReplica>,
        now: DateTime<Utc>,
    ) -> Result<Decision, Refusal> {
        self.require(PaymentStatus::Pending, "charged")?;
        let cancelled = order.is_some_and(|o| o.status == OrderState::Cancelled);
        let status = if cancelled { PaymentStatus::RefundPending } else { PaymentStatus::Succeeded };
        let payment = Payment { status, provider_ref: Some(provider_ref.to_owned()), ..self.changed(now) };
        let event = PaymentEvent::Succeeded(PaymentSucceeded {
            payment_id: payment.id,
            order_id: payment.order_id,
            amount_cents: payment.amount_cents,
            provider_ref: provider_ref.to_owned(),
        });
        Ok(Decision { payment, from: self.status, event: Some((event, 1)) })
    }

    /// The provider declined the card for `reason`. A buyer paying is told and may try
    /// another card; a charge made without the buyer (`announce`) is announced as
    /// `payment.declined`, so that its order is cancelled.
    pub fn record_decline(&self, reason: &str, announce: bool, now: DateTime<Utc>) -> Result<Decision, Refusal> {
        self.require(PaymentStatus::Pending, "declined")?;
        let payment =
            Payment { status: PaymentStatus::Declined, failure_reason: Some(reason.to_owned()), ..self.changed(now) };
        let event = announce.then(|| {
            let declined =
                PaymentDeclined { payment_id: payment.id, order_id: payment.order_id, reason: reason.to_owned() };
            (PaymentEvent::Declined(declined), 1)
        });
        Ok(Decision { payment, from: self.status, event })
    }

    /// The attempt to charge `order` of the market with its buyer's saved method, made by
    /// payments itself when the order arrives (attempt 1: one per order, so the provider's
    /// idempotency key is one per match).
    pub fn begin_off_session(id: Uuid, order: &OrderReplica, now: DateTime<Utc>) -> Result<Payment, Refusal> {
        Self::begin(id, order.buyer_id, order, 1, now)
    }

    /// Its order was cancelled after it was charged: it is to be refunded.
    pub fn order_cancelled(&self, now: DateTime<Utc>) -> Result<Decision, Refusal> {
        self.require(PaymentStatus::Succeeded, "refunded")?;
        let payment = Payment { status: PaymentStatus::RefundPending, ..self.changed(now) };
        Ok(Decision { payment, from: self.status, event: None })
    }

    /// The provider refunded it (`refund_ref`).
    pub fn record_refund(&self, refund_ref: &str, now: DateTime<Utc>) -> Result<Decision, Refusal> {
        self.require(PaymentStatus::RefundPending, "refunded")?;
        let payment =
            Payment { status: PaymentStatus::Refunded, refund_ref: Some(refund_ref.to_owned()), ..self.changed(now) };
        let event = PaymentEvent::Refunded(PaymentRefunded {
            payment_id: payment.id,
            order_id: payment.order_id,
            amount_cents: payment.amount_cents,
            refund_ref: refund_ref.to_owned(),
        });
        Ok(Decision { payment, from: self.status, event: Some((event, 2)) })
    }

    fn require(&self, status: PaymentStatus, to: &'static str) -> Result<(), Refusal> {
        if self.status == status { Ok(()) } else { Err(Refusal::Transition { from: self.status, to }) }
    }

    fn changed(&self, now: DateTime<Utc>) -> Payment {
        Payment { updated_at: now, ..self.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_000_000 + seconds, 0).unwrap()
    }

    const BUYER: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_00b1);
    const ORDER: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001);
    const PAYMENT: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0002);

    fn order(status: OrderState) -> OrderReplica {
        OrderReplica {
            id: ORDER,
            buyer_id: BUYER,
            amount_cents: 25_000,
            status,
            version: 1,
            expires_at: Some(at(900)),
            lapsed_at: None,
        }
    }

    /// Given a pending attempt for a created order.
    fn pending() -> Payment {
        Payment::begin(PAYMENT, BUYER, &order(OrderState::Created), 1, at(0)).unwrap()
    }

    #[test]
    fn given_a_created_order_when_its_buyer_pays_then_a_pending_attempt_is_written() {
        let payment = pending();
        assert_eq!((payment.status, payment.amount_cents, payment.attempt), (PaymentStatus::Pending, 25_000, 1));
    }

    #[test]
    fn given_someone_elses_or_an_ended_order_when_paid_then_refused() {
        let stranger = Uuid::now_v7();
        assert_eq!(
            Payment::begin(PAYMENT, stranger, &order(OrderState::Created), 1, at(0)),
            Err(Refusal::NotYourOrder)
        );
        assert_eq!(
            Payment::begin(PAYMENT, BUYER, &order(OrderState::Cancelled), 1, at(0)),
            Err(Refusal::OrderCancelled)
        );
        assert_eq!(Payment::begin(PAYMENT, BUYER, &order(OrderState::Complete), 1, at(0)), Err(Refusal::AlreadyPaid));
    }

    #[test]
    fn given_an_order_past_its_deadline_when_paid_then_refused_and_only_then_it_lapses() {
        let created = order(OrderState::Created);
        assert_eq!(Payment::begin(PAYMENT, BUYER, &created, 1, at(900)), Err(Refusal::Lapsed), "not at the deadline");
        assert_eq!(created.lapse(at(899)), Err(Refusal::NotDue(at(900))));
        let (lapsed, event) = created.lapse(at(901)).unwrap();
        assert_eq!(lapsed.lapsed_at, Some(at(901)));
        assert_eq!(
            event,
            PaymentEvent::Lapsed(PaymentLapsed { order_id: ORDER, expires_at: at(900), lapsed_at: at(901) })
        );
        assert_eq!(lapsed.lapse(at(902)), Err(Refusal::Lapsed), "an order lapses once");
        let unknown = OrderReplica { expires_at: None, ..created };
        assert_eq!(unknown.lapse(at(10_000)), Err(Refusal::NoDeadline), "orders' grace expires those");
        assert!(Payment::begin(PAYMENT, BUYER, &unknown, 1, at(10_000)).is_ok());
    }

    #[test]
    fn given_a_pending_attempt_when_charged_then_it_succeeded_and_is_announced_at_version_1() {
        let decision = pending().record_charge("pi_1", Some(&order(OrderState::Created)), at(1)).unwrap();
        assert_eq!(decision.payment.status, PaymentStatus::Succeeded);
        assert_eq!(decision.from, PaymentStatus::Pending);
        let expected = PaymentSucceeded {
            payment_id: PAYMENT,
            order_id: ORDER,
            amount_cents: 25_000,
            provider_ref: "pi_1".into(),
        };
        assert_eq!(decision.event, Some((PaymentEvent::Succeeded(expected), 1)));
    }

    #[test]
    fn given_an_order_cancelled_meanwhile_when_charged_then_refund_pending_and_still_announced() {
        let decision = pending().record_charge("pi_1", Some(&order(OrderState::Cancelled)), at(1)).unwrap();
        assert_eq!(decision.payment.status, PaymentStatus::RefundPending);
        assert!(matches!(decision.event, Some((PaymentEvent::Succeeded(_), 1))), "the money moved");
    }

    #[test]
    fn given_a_recorded_attempt_when_recorded_again_then_refused() {
        let charged = pending().record_charge("pi_1", None, at(1)).unwrap().payment;
        assert_eq!(
            charged.record_charge("pi_1", None, at(2)),
            Err(Refusal::Transition { from: PaymentStatus::Succeeded, to: "charged" })
        );
        assert!(charged.record_decline("card_declined", false, at(2)).is_err());
    }

    #[test]
    fn given_a_pending_attempt_when_declined_then_declined_with_the_reason_and_nothing_announced() {
        let decision = pending().record_decline("insufficient_funds", false, at(1)).unwrap();
        assert_eq!(decision.payment.status, PaymentStatus::Declined);
        assert_eq!(decision.payment.failure_reason.as_deref(), Some("insufficient_funds"));
        assert_eq!(decision.event, None);
    }

    #[test]
    fn given_an_order_of_the_market_when_its_saved_method_is_declined_then_the_decline_is_announced() {
        let attempt = Payment::begin_off_session(PAYMENT, &order(OrderState::Created), at(0)).unwrap();
        assert_eq!((attempt.buyer_id, attempt.attempt), (BUYER, 1), "the order's buyer, one attempt per match");
        let decision = attempt.record_decline("Your card was declined.", true, at(1)).unwrap();
        let expected =
            PaymentDeclined { payment_id: PAYMENT, order_id: ORDER, reason: "Your card was declined.".into() };
        assert_eq!(decision.event, Some((PaymentEvent::Declined(expected), 1)));
        assert_eq!(
            Payment::begin_off_session(PAYMENT, &order(OrderState::Cancelled), at(0)),
            Err(Refusal::OrderCancelled),
            "an order cancelled before it was charged is not charged"
        );
    }

    #[test]
    fn given_a_succeeded_payment_when_its_order_is_cancelled_then_it_is_refunded_at_version_2() {
        let charged = pending().record_charge("pi_1", None, at(1)).unwrap().payment;
        let marked = charged.order_cancelled(at(2)).unwrap();
        assert_eq!((marked.payment.status, marked.event.clone()), (PaymentStatus::RefundPending, None));
        let refunded = marked.payment.record_refund("re_1", at(3)).unwrap();
        assert_eq!(refunded.payment.status, PaymentStatus::Refunded);
        let expected =
            PaymentRefunded { payment_id: PAYMENT, order_id: ORDER, amount_cents: 25_000, refund_ref: "re_1".into() };
        assert_eq!(refunded.event, Some((PaymentEvent::Refunded(expected), 2)));
        assert!(refunded.payment.record_refund("re_2", at(4)).is_err(), "refunded once");
    }

    #[test]
    fn given_a_declined_attempt_when_its_order_is_cancelled_then_there_is_nothing_to_refund() {
        let declined = pending().record_decline("card_declined", false, at(1)).unwrap().payment;
        assert!(declined.order_cancelled(at(2)).is_err());
    }
}
