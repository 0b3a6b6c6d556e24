//! SQL for the `users` table.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sneakerstop_events::identity::{UserEvent, UserRegistered};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::domain::Email;
use crate::{IdentityError, SOURCE};

/// An account as stored.
#[derive(Debug, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    #[allow(dead_code, reason = "selected so the row is the whole account")]
    pub created_at: DateTime<Utc>,
}

/// Inserts an account and its `user.registered` event in one transaction; a taken email
/// is [`IdentityError::EmailTaken`], decided by the `users_email_key` constraint rather
/// than by a read first.
pub async fn register(pool: &PgPool, id: Uuid, email: &Email, password_hash: &str) -> Result<(), IdentityError> {
    let mut tx = pool.begin().await.context("begin")?;
    let registered_at = insert_user(&mut *tx, id, email, password_hash).await?;
    let event = UserEvent::Registered(UserRegistered { user_id: id, email: email.as_str().to_owned(), registered_at });
    sneakerstop_messaging::enqueue(&mut tx, SOURCE, id, 1, &event).await?;
    tx.commit().await.context("commit signup")?;
    Ok(())
}

async fn insert_user(
    db: impl PgExecutor<'_>,
    id: Uuid,
    email: &Email,
    password_hash: &str,
) -> Result<DateTime<Utc>, IdentityError> {
    sqlx::query_scalar("INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3) RETURNING created_at")
        .bind(id)
        .bind(email.as_str())
        .bind(password_hash)
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

/// The account with this (normalized) email, if any.
pub async fn find_by_email(db: impl PgExecutor<'_>, email: &str) -> anyhow::Result<Option<UserRow>> {
    sqlx::query_as("SELECT id, email, password_hash, created_at FROM users WHERE email = $1")
        .bind(email)
        .fetch_optional(db)
        .await
        .context("find user by email")
}
