//! `identity.users`: what happens to accounts. Key: the user id.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::topics;

crate::contract! {
    /// Events on `identity.users`.
    pub enum UserEvent on topics::USERS {
        /// A new account was created.
        Registered("user.registered", v 1) => UserRegistered,
    }
}

/// `user.registered` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRegistered {
    /// The new user's id (also the message key).
    pub user_id: Uuid,
    /// The normalized email address.
    pub email: String,
    /// When the account was created.
    pub registered_at: DateTime<Utc>,
}
