//! Who owns which books: each book belongs to a shard (its product's), and each shard to
//! one instance at a time, the only one that holds its books in memory and writes them
//! ([`crate::engine`]). docs/market.md, "Who owns a book", explains the scheme.
//!
//! Every instance is a **member** (`book_members`, seen within the last [`LEASE`]) and
//! takes its fair share of the [`SHARDS`] shards: the members sorted by id, each gets
//! `SHARDS / n`, the first `SHARDS % n` one more. Every [`HEARTBEAT`] it renews its leases
//! (`book_shards`), gives up shards beyond its share and claims free or lapsed ones up to
//! it; a claim increments the shard's **epoch**. A member that dies stops renewing, and
//! [`LEASE`] later the others take its shards — the timings the consumers use (3 s
//! session, 250 ms heartbeats; docs/reliability.md). A member that stops cleanly gives its
//! shards up at once.
//!
//! The epoch fences a writer that lost a shard without knowing (paused, cut off): every
//! batch reads its shards' rows `FOR KEY SHARE`, requiring its member id, the epoch it
//! claimed and an unexpired lease ([`fence`]); otherwise the batch rolls back. A claim and a
//! give-up lock the rows `FOR UPDATE`, which that lock holds off: a claim skips a shard with
//! a batch in flight (and takes it at a later heartbeat), a give-up waits for the batch,
//! and a batch after either sees the new owner or epoch. The owner's own renewal changes
//! only the lease and locks `FOR NO KEY UPDATE`, which does not conflict with the batches'
//! lock: four times a second it would otherwise wait for the batch in flight, and the next
//! batch for it. Everything that locks several of these rows locks them in shard order, so
//! nothing waits for another in a cycle.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How many shards the books are spread over. Fixed: a book's shard must be the same in
/// every instance (changing it means stopping every instance first, and a migration).
pub const SHARDS: u8 = 16;

/// How often a member renews its leases and rebalances.
pub const HEARTBEAT: Duration = Duration::from_millis(250);

/// How long a lease (and a membership) lasts unless renewed.
pub const LEASE: Duration = Duration::from_secs(3);

/// The shard of `product`'s books.
pub fn shard(product: Uuid) -> i16 {
    i16::from(product.as_bytes()[15] % SHARDS)
}

/// What this instance owns, and where the other shards' owners are.
#[derive(Debug, Clone)]
pub struct Ownership {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    member: Uuid,
    address: String,
    state: RwLock<State>,
    /// Told when this instance gains or loses shards.
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Shard → the epoch this instance claimed it at.
    owned: HashMap<i16, i64>,
    /// Shard → the address of its owner, as last read.
    owners: HashMap<i16, String>,
}

/// Where a book's requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// This instance, since the epoch.
    Here(i64),
    /// Another instance, at this address.
    There(String),
    /// Nobody yet (a shard between owners).
    Nobody,
}

impl Ownership {
    /// A member with a new id, reachable by the others at `address` (`http://host:port`).
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                member: Uuid::now_v7(),
                address: address.into(),
                state: RwLock::default(),
                changed: Notify::new(),
            }),
        }
    }

    /// This member's id.
    pub fn member(&self) -> Uuid {
        self.inner.member
    }

    /// Who owns `shard` now, as far as this instance knows.
    pub fn owner(&self, shard: i16) -> Owner {
        let state = self.inner.state.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(&epoch) = state.owned.get(&shard) {
            return Owner::Here(epoch);
        }
        match state.owners.get(&shard) {
            Some(address) if *address != self.inner.address => Owner::There(address.clone()),
            _ => Owner::Nobody,
        }
    }

    /// The shards this instance owns, with their epochs.
    pub fn owned(&self) -> HashMap<i16, i64> {
        self.inner.state.read().unwrap_or_else(PoisonError::into_inner).owned.clone()
    }

    /// Waits until this instance gains or loses a shard.
    pub async fn changed(&self) {
        self.inner.changed.notified().await;
    }

    /// Renews, rebalances and claims every [`HEARTBEAT`] until `cancel`, then gives every
    /// shard up. A round that fails (the database away) is tried again; leases lapse meanwhile
    /// and the fence stops this instance's writes.
    pub async fn run(self, pool: PgPool, cancel: CancellationToken) {
        let mut interval = tokio::time::interval(HEARTBEAT);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = interval.tick() => {}
            }
            if let Err(error) = self.round(&pool).await {
                metrics::counter!("market_ownership_failures_total").increment(1);
                tracing::warn!(error = format!("{error:#}"), "renewing the book leases failed; trying again");
            }
        }
        if let Err(error) = self.give_up_all(&pool).await {
            tracing::warn!(error = format!("{error:#}"), "giving the shards up failed; they lapse in 3 s");
        }
    }

    /// One heartbeat: membership, renewal, giving up beyond the fair share, claiming up to it.
    pub async fn round(&self, pool: &PgPool) -> anyhow::Result<()> {
        let mut conn = pool.acquire().await.context("acquire")?;
        let member = self.inner.member;
        let lease = LEASE.as_secs_f64();
        let members: Vec<Uuid> = sqlx::query_scalar!(
            "WITH seen AS (
                 INSERT INTO book_members (member, seen_until) VALUES ($1, now() + make_interval(secs => $2))
                 ON CONFLICT (member) DO UPDATE SET seen_until = EXCLUDED.seen_until
             ), gone AS (
                 DELETE FROM book_members WHERE seen_until < now() - interval '1 minute'
             )
             SELECT member FROM book_members WHERE seen_until > now() AND member <> $1",
            member,
            lease
        )
        .fetch_all(&mut *conn)
        .await
        .context("renew membership")?;
        let share = fair_share(member, members);
        let mut owned: HashMap<i16, i64> = sqlx::query!(
            "UPDATE book_shards SET lease_until = now() + make_interval(secs => $2)
              WHERE shard IN (SELECT shard FROM book_shards WHERE owner = $1 AND lease_until > now()
                               ORDER BY shard FOR NO KEY UPDATE)
          RETURNING shard, epoch",
            member,
            lease
        )
        .fetch_all(&mut *conn)
        .await
        .context("renew leases")?
        .into_iter()
        .map(|row| (row.shard, row.epoch))
        .collect();
        if owned.len() > share {
            let mut extra: Vec<i16> = owned.keys().copied().collect();
            extra.sort_unstable();
            let extra = extra.split_off(share);
            // Off the map first, so no new batch starts on them; the release waits for a
            // batch in flight (it holds the rows FOR KEY SHARE).
            for shard in &extra {
                owned.remove(shard);
            }
            self.publish(owned.clone(), None);
            give_up(&mut conn, member, &extra).await?;
        } else if owned.len() < share {
            let want = i64::try_from(share - owned.len()).unwrap_or(0);
            let claimed = sqlx::query!(
                "UPDATE book_shards s SET owner = $1, address = $2, epoch = s.epoch + 1,
                        lease_until = now() + make_interval(secs => $3)
                  WHERE s.shard IN (SELECT shard FROM book_shards
                                     WHERE owner IS NULL OR lease_until <= now()
                                     ORDER BY shard LIMIT $4 FOR UPDATE SKIP LOCKED)
                 RETURNING s.shard, s.epoch",
                member,
                &self.inner.address,
                lease,
                want
            )
            .fetch_all(&mut *conn)
            .await
            .context("claim shards")?;
            for row in claimed {
                tracing::info!(shard = row.shard, epoch = row.epoch, "took a shard of the books");
                owned.insert(row.shard, row.epoch);
            }
        }
        let owners = sqlx::query!(
            r#"SELECT shard, address AS "address!" FROM book_shards
                WHERE owner IS NOT NULL AND address IS NOT NULL AND lease_until > now()"#
        )
        .fetch_all(&mut *conn)
        .await
        .context("read the owners")?
        .into_iter()
        .map(|row| (row.shard, row.address))
        .collect();
        self.publish(owned, Some(owners));
        Ok(())
    }

    fn publish(&self, owned: HashMap<i16, i64>, owners: Option<HashMap<i16, String>>) {
        let mut state = self.inner.state.write().unwrap_or_else(PoisonError::into_inner);
        let changed = state.owned != owned;
        #[allow(clippy::cast_precision_loss, reason = "at most SHARDS")]
        metrics::gauge!("market_shards_owned").set(owned.len() as f64);
        state.owned = owned;
        if let Some(owners) = owners {
            state.owners = owners;
        }
        drop(state);
        if changed {
            self.inner.changed.notify_waiters();
        }
    }

    async fn give_up_all(&self, pool: &PgPool) -> anyhow::Result<()> {
        let shards: Vec<i16> = self.owned().into_keys().collect();
        self.publish(HashMap::new(), None);
        let mut conn = pool.acquire().await.context("acquire")?;
        give_up(&mut conn, self.inner.member, &shards).await?;
        sqlx::query!("DELETE FROM book_members WHERE member = $1", self.inner.member)
            .execute(&mut *conn)
            .await
            .context("leave the members")?;
        Ok(())
    }
}

/// This member's share of the shards among `others` (the other live members).
fn fair_share(member: Uuid, mut others: Vec<Uuid>) -> usize {
    others.push(member);
    others.sort_unstable();
    others.dedup();
    let n = others.len();
    let rank = others.iter().position(|other| *other == member).unwrap_or(0);
    let shards = usize::from(SHARDS);
    shards / n + usize::from(rank < shards % n)
}

async fn give_up(conn: &mut PgConnection, member: Uuid, shards: &[i16]) -> anyhow::Result<()> {
    if shards.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "UPDATE book_shards SET owner = NULL, address = NULL, lease_until = '-infinity'
          WHERE shard IN (SELECT shard FROM book_shards WHERE owner = $1 AND shard = ANY($2)
                           ORDER BY shard FOR UPDATE)",
        member,
        shards
    )
    .execute(conn)
    .await
    .context("give shards up")?;
    tracing::info!(?shards, "gave shards of the books up");
    Ok(())
}

/// Holds the rows of `shards` (shard → epoch) for the caller's transaction, if `member`
/// still owns every one of them at that epoch with an unexpired lease; fails otherwise, and
/// the transaction must roll back.
pub async fn fence(tx: &mut PgConnection, member: Uuid, shards: &HashMap<i16, i64>) -> anyhow::Result<()> {
    let (ids, epochs): (Vec<i16>, Vec<i64>) = shards.iter().map(|(shard, epoch)| (*shard, *epoch)).unzip();
    let held = sqlx::query_scalar!(
        "SELECT s.shard FROM book_shards s JOIN unnest($2::int2[], $3::int8[]) AS t(shard, epoch)
            ON s.shard = t.shard AND s.epoch = t.epoch
         WHERE s.owner = $1 AND s.lease_until > now()
         ORDER BY s.shard
         FOR KEY SHARE OF s",
        member,
        &ids,
        &epochs
    )
    .fetch_all(tx)
    .await
    .context("fence the batch's shards")?;
    if held.len() == ids.len() { Ok(()) } else { Err(Fenced.into()) }
}

/// A batch's shards are no longer all this instance's at the epochs it claimed them: the
/// batch must not be written, and its requests belong to the new owner.
#[derive(Debug, thiserror::Error)]
#[error("this instance no longer owns every shard of the batch")]
pub struct Fenced;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_shared_out_evenly_and_every_shard_has_a_share() {
        let members: Vec<Uuid> = (1..=3).map(Uuid::from_u128).collect();
        let shares: Vec<usize> = members.iter().map(|m| fair_share(*m, members.clone())).collect();
        assert_eq!(shares, [6, 5, 5]);
        assert_eq!(fair_share(members[0], vec![]), usize::from(SHARDS), "alone, all of them");
        assert_eq!(shard(Uuid::from_u128(0x1f)), 15);
        assert_eq!(shard(Uuid::from_u128(0x20)), 0);
    }
}
