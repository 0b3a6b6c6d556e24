//! The SneakerStop binary's library: the command line, and wiring services into a server.
//!
//! - `cli` — the `serve` and `migrate` subcommands and their settings.
//! - `admin` — `sneakerstop admin grant|revoke <email>`.
//! - `dlq` — `sneakerstop dlq list|replay`.
//! - `services` — which services exist and how each one is started.
//! - `sessions` — how ended sessions reach every service and process.
//! - `server` — the shared HTTP surface: health, metrics, OpenAPI, Swagger UI, fallbacks.

pub mod admin;
pub mod cli;
pub mod dlq;
pub mod server;
pub mod services;
pub mod sessions;
