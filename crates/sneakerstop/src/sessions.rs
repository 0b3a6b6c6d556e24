//! Ended sessions reach every service: through `identity.users` into each service's
//! `revoked_sessions` table, and from that table into the process's memory.
//!
//! - [`WithRevocations`] wraps a service's event handler: `session.revoked` is recorded in
//!   the service's table (in the consumer's transaction, so the inbox makes it once), other
//!   `identity.users` events are of no interest, everything else goes to the service.
//! - [`follow`] copies the table into the process's [`sneakerstop_auth::revocation::Revocations`],
//!   woken by the table's notifications on the change feed and polled regardless.

use std::sync::Arc;

use futures::future::BoxFuture;
use sneakerstop_auth::revocation::{self, Follower};
use sneakerstop_db::sqlx::{PgConnection, PgPool};
use sneakerstop_events::identity::UserEvent;
use sneakerstop_events::topics;
use sneakerstop_messaging::{Handler, IncomingEvent, Signal};
use tokio_util::sync::CancellationToken;

use crate::services::Shared;

/// The topics `service`'s consumer reads and the handler it applies them with: its own,
/// plus `identity.users` for ended sessions — unless it ends sessions itself (identity),
/// in which case it consumes only what it asks for, if anything.
pub fn consumer(service: &dyn sneakerstop_service::Service) -> Option<(Vec<&'static str>, Arc<dyn Handler>)> {
    let mut topics = service.consumes().to_vec();
    if service.ends_sessions() {
        return service.handler().map(|handler| (topics, handler));
    }
    topics.push(topics::USERS);
    Some((topics, Arc::new(WithRevocations(service.handler()))))
}

/// A service's handler (if it has one) that also records ended sessions.
pub struct WithRevocations(pub Option<Arc<dyn Handler>>);

impl std::fmt::Debug for WithRevocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WithRevocations(..)")
    }
}

impl Handler for WithRevocations {
    fn lock_batch<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [IncomingEvent],
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        match &self.0 {
            Some(handler) => handler.lock_batch(tx, events),
            None => Box::pin(std::future::ready(Ok(()))),
        }
    }

    fn concerns(&self, event: &IncomingEvent) -> bool {
        if event.topic != topics::USERS {
            return self.0.as_ref().is_none_or(|handler| handler.concerns(event));
        }
        // Of identity's events only an ended session is recorded here; a new user is not.
        !matches!(event.decode::<UserEvent>(), Ok(UserEvent::Registered(_)))
    }

    fn committed(&self) {
        if let Some(handler) = &self.0 {
            handler.committed();
        }
    }

    fn handle<'a>(&'a self, tx: &'a mut PgConnection, event: &'a IncomingEvent) -> BoxFuture<'a, anyhow::Result<()>> {
        if event.topic != topics::USERS {
            return match &self.0 {
                Some(handler) => handler.handle(tx, event),
                None => Box::pin(async move { anyhow::bail!("this service does not consume {}", event.topic) }),
            };
        }
        Box::pin(async move {
            match event.decode::<UserEvent>()? {
                UserEvent::SessionRevoked(ended) => {
                    revocation::record(tx, ended.session_id, ended.user_id, ended.expires_at).await?;
                    tracing::info!(user_id = %ended.user_id, session_id = %ended.session_id, "session ended");
                }
                UserEvent::Registered(_) => {}
            }
            Ok(())
        })
    }
}

/// Subscribes to `service`'s revocations on the change feed and returns the task that keeps
/// the process's revoked sessions current from its table until `cancel`.
pub fn follow(
    service: &'static str,
    pool: PgPool,
    shared: &Shared,
    cancel: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let follower = Follower::new(pool, shared.keys.revocations().clone(), shared.revocation_poll);
    let wake = follower.waker();
    shared.changes.subscribe(&revocation::channel(service), move |signal| match signal {
        // Connected: rows may have committed while the feed was away.
        Signal::Notified(_) | Signal::Connected => wake.notify_one(),
        Signal::Lost => {}
    });
    follower.run(cancel)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use sneakerstop_events::identity::{RevokeReason, SessionRevoked, UserRegistered};
    use uuid::Uuid;

    use super::*;

    fn users(event: &UserEvent) -> IncomingEvent {
        IncomingEvent::from_contract(event, "/sneakerstop/identity", Uuid::now_v7(), 1)
    }

    #[test]
    fn of_identity_s_events_only_an_ended_session_concerns_a_service() {
        let wrapped = WithRevocations(Some(Arc::new(sneakerstop_market::events::MarketHandler::default())));
        let registered = UserEvent::Registered(UserRegistered {
            user_id: Uuid::now_v7(),
            email: "ann@example.com".into(),
            registered_at: Utc::now(),
        });
        assert!(!wrapped.concerns(&users(&registered)), "a new user changes nothing here");
        let ended = UserEvent::SessionRevoked(SessionRevoked {
            session_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            expires_at: Utc::now(),
            revoked_at: Utc::now(),
            reason: RevokeReason::SignedOut,
        });
        assert!(wrapped.concerns(&users(&ended)), "an ended session is recorded");
    }
}
