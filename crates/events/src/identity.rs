//! `identity.users`: what happens to accounts and their sessions. Key: the user id.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::topics;

crate::contract! {
    /// Events on `identity.users`.
    pub enum UserEvent on topics::USERS, key user_id {
        /// A new account was created.
        Registered("user.registered", v 1) => UserRegistered,
        /// A session was ended before its token expired.
        SessionRevoked("session.revoked", v 1) => SessionRevoked,
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

/// `session.revoked` v1: every service refuses the session's token from now on. Its subject
/// is the session (version 2: a session is version 1 when it starts, which is not
/// published); its key is the user, as for every event on the topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRevoked {
    /// The ended session (the token's `sid`).
    pub session_id: Uuid,
    /// Whose session it was (also the message key).
    pub user_id: Uuid,
    /// When the session's token expires: after that it is refused anyway, and the
    /// revocation can be forgotten.
    pub expires_at: DateTime<Utc>,
    /// When it was ended.
    pub revoked_at: DateTime<Utc>,
    /// Why it was ended.
    pub reason: RevokeReason,
}

/// Why a session was ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevokeReason {
    /// Its holder signed out.
    SignedOut,
    /// Its user signed out of every session.
    SignedOutEverywhere,
    /// Its user changed their password from another session.
    PasswordChanged,
    /// An operator granted or took away the user's admin role: the token states the old one.
    RoleChanged,
}
