//! `sneakerstop admin`: grant or take away the admin role (who may create products).
//!
//! Roles are an operator's decision, so there is no API for them: the command writes to
//! identity's database directly. The user's sessions end with the change (`session.revoked`
//! reaches every service through the outbox), and the next sign-in states the new role.

use clap::{Args, Subcommand};
use sneakerstop_db::DbConfig;
use sneakerstop_settings::DatabaseSettings;

/// Arguments of `sneakerstop admin`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
    #[command(flatten)]
    database: DatabaseSettings,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Make the account with this email an admin.
    Grant {
        /// The account's email.
        email: String,
    },
    /// Make the account with this email a member again.
    Revoke {
        /// The account's email.
        email: String,
    },
}

/// Runs an `admin` subcommand.
pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let (email, admin) = match args.command {
        AdminCommand::Grant { email } => (email, true),
        AdminCommand::Revoke { email } => (email, false),
    };
    let db = DbConfig::from_settings(&args.database)?;
    let pool =
        sneakerstop_db::connect_and_migrate(&db, sneakerstop_identity::SCHEMA, &sneakerstop_identity::migrations())
            .await?;
    let ended = sneakerstop_identity::set_admin(&pool, &email, admin).await;
    pool.close().await;
    match ended? {
        Some(sessions) => {
            let role = if admin { "admin" } else { "member" };
            tracing::info!(role, sessions_ended = sessions, "role changed; the user signs in again to use it");
            println!("{email} is now {role}; {sessions} session(s) ended");
            Ok(())
        }
        None => anyhow::bail!("no account has the email {email}"),
    }
}
