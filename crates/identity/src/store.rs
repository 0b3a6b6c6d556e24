//! SQL for the `users` and `sessions` tables.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sneakerstop_events::identity::{RevokeReason, SessionRevoked, UserEvent, UserRegistered};
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::domain::Email;
use crate::{IdentityError, SOURCE};

/// An account as stored.
#[derive(Debug)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    /// Whether the user is an admin (`role = 'admin'`).
    pub admin: bool,
    #[allow(dead_code, reason = "selected so the row is the whole account")]
    pub created_at: DateTime<Utc>,
}

/// A session to start: its id (the token's `sid`), its user and when its token expires.
#[derive(Debug, Clone, Copy)]
pub struct NewSession {
    pub id: Uuid,
    pub user: Uuid,
    pub expires_at: DateTime<Utc>,
}

/// Inserts an account, its first session and its `user.registered` event in one
/// transaction; a taken email is [`IdentityError::EmailTaken`], decided by the
/// `users_email_key` constraint rather than by a read first.
pub async fn register(
    pool: &PgPool,
    email: &Email,
    password_hash: &str,
    session: NewSession,
) -> Result<(), IdentityError> {
    let id = session.user;
    let _transaction = sneakerstop_db::transaction_span("registering");
    let mut tx = pool.begin().await.context("begin")?;
    let registered_at = insert_user(&mut *tx, id, email, password_hash).await?;
    start_session(&mut *tx, session).await?;
    let event = UserEvent::Registered(UserRegistered { user_id: id, email: email.as_str().to_owned(), registered_at });
    sneakerstop_messaging::enqueue(&mut tx, SOURCE, id, 1, &event).await?;
    tx.commit().await.context("commit signup")?;
    Ok(())
}

/// Records a session that has just begun.
pub async fn start_session(db: impl PgExecutor<'_>, session: NewSession) -> anyhow::Result<()> {
    sqlx::query!(
        "INSERT INTO sessions (id, user_id, expires_at) VALUES ($1, $2, $3)",
        session.id,
        session.user,
        session.expires_at,
    )
    .execute(db)
    .await
    .context("start a session")?;
    Ok(())
}

/// Which of a user's live sessions to end.
#[derive(Debug, Clone, Copy)]
pub enum Ending {
    /// This one (signing out).
    Only(Uuid),
    /// All but this one (a password change keeps the session that made it).
    AllBut(Uuid),
    /// Every one (signing out everywhere).
    All,
}

/// Ends `user`'s live sessions that `ending` names, on the caller's transaction: each is
/// marked revoked, recorded in `revoked_sessions` and announced as `session.revoked`.
/// Returns the ended sessions with their tokens' expiry.
#[tracing::instrument(skip(tx), err)]
pub async fn end_sessions(
    tx: &mut PgConnection,
    user: Uuid,
    ending: Ending,
    reason: RevokeReason,
) -> anyhow::Result<Vec<(Uuid, DateTime<Utc>)>> {
    let (only, except) = match ending {
        Ending::Only(session) => (Some(session), None),
        Ending::AllBut(session) => (None, Some(session)),
        Ending::All => (None, None),
    };
    let ended = sqlx::query!(
        r#"UPDATE sessions SET revoked_at = now()
          WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
            AND ($2::uuid IS NULL OR id = $2) AND ($3::uuid IS NULL OR id <> $3)
          RETURNING id, expires_at, revoked_at AS "revoked_at!""#,
        user,
        only,
        except,
    )
    .fetch_all(&mut *tx)
    .await
    .context("end sessions")?;
    for row in &ended {
        let (session, expires_at, revoked_at) = (row.id, row.expires_at, row.revoked_at);
        sneakerstop_auth::revocation::record(tx, session, user, expires_at).await?;
        let event = UserEvent::SessionRevoked(SessionRevoked {
            session_id: session,
            user_id: user,
            expires_at,
            revoked_at,
            reason,
        });
        // The session is the subject (version 2: ended); the contract keys it by user.
        sneakerstop_messaging::enqueue(tx, SOURCE, session, 2, &event).await?;
    }
    Ok(ended.into_iter().map(|row| (row.id, row.expires_at)).collect())
}

/// Replaces `user`'s password hash and ends every other session of theirs, in one
/// transaction. Returns the ended sessions.
pub async fn change_password(
    pool: &PgPool,
    user: Uuid,
    password_hash: &str,
    keep: Uuid,
) -> anyhow::Result<Vec<(Uuid, DateTime<Utc>)>> {
    let _transaction = sneakerstop_db::transaction_span("changing a password");
    let mut tx = pool.begin().await.context("begin")?;
    sqlx::query!("UPDATE users SET password_hash = $2 WHERE id = $1", user, password_hash)
        .execute(&mut *tx)
        .await
        .context("store the new password hash")?;
    let ended = end_sessions(&mut tx, user, Ending::AllBut(keep), RevokeReason::PasswordChanged).await?;
    tx.commit().await.context("commit password change")?;
    Ok(ended)
}

/// Makes the account with this (normalized) email an admin or a member again, and ends
/// every session of theirs, in one transaction: the next sign-in issues a token with the
/// new role. `None` when there is no such account; otherwise the sessions ended.
pub async fn set_role(pool: &PgPool, email: &str, admin: bool) -> anyhow::Result<Option<Vec<(Uuid, DateTime<Utc>)>>> {
    let _transaction = sneakerstop_db::transaction_span("changing a role");
    let mut tx = pool.begin().await.context("begin")?;
    let role = if admin { "admin" } else { "member" };
    let Some(user) = sqlx::query_scalar!("UPDATE users SET role = $2 WHERE email = $1 RETURNING id", email, role)
        .fetch_optional(&mut *tx)
        .await
        .context("set role")?
    else {
        return Ok(None);
    };
    let ended = end_sessions(&mut tx, user, Ending::All, RevokeReason::RoleChanged).await?;
    tx.commit().await.context("commit role change")?;
    Ok(Some(ended))
}

/// Deletes sessions whose tokens have expired (revoked or not: their tokens are refused
/// anyway). Returns how many.
pub async fn forget_expired_sessions(pool: &PgPool) -> anyhow::Result<u64> {
    let deleted = sqlx::query!("DELETE FROM sessions WHERE expires_at < now()")
        .execute(pool)
        .await
        .context("delete expired sessions")?;
    Ok(deleted.rows_affected())
}

async fn insert_user(
    db: impl PgExecutor<'_>,
    id: Uuid,
    email: &Email,
    password_hash: &str,
) -> Result<DateTime<Utc>, IdentityError> {
    sqlx::query_scalar!(
        "INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3) RETURNING created_at",
        id,
        email.as_str(),
        password_hash,
    )
    .fetch_one(db)
    .await
    .map_err(|e| {
        if sneakerstop_db::is_unique_violation(&e, "users_email_key") {
            IdentityError::EmailTaken
        } else {
            IdentityError::Internal(anyhow::Error::new(e).context("insert user"))
        }
    })
}

/// The account with this id, if any.
pub async fn find_by_id(db: impl PgExecutor<'_>, id: Uuid) -> anyhow::Result<Option<UserRow>> {
    sqlx::query_as!(
        UserRow,
        r#"SELECT id, email, password_hash, role = 'admin' AS "admin!", created_at FROM users WHERE id = $1"#,
        id
    )
    .fetch_optional(db)
    .await
    .context("find user by id")
}

/// The account with this (normalized) email, if any.
pub async fn find_by_email(db: impl PgExecutor<'_>, email: &str) -> anyhow::Result<Option<UserRow>> {
    sqlx::query_as!(
        UserRow,
        r#"SELECT id, email, password_hash, role = 'admin' AS "admin!", created_at FROM users WHERE email = $1"#,
        email
    )
    .fetch_optional(db)
    .await
    .context("find user by email")
}
