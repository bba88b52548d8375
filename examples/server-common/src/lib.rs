//! # referral-server-common
//!
//! What the example servers (`referral-server` on axum, `referral-server-actix`
//! on actix-web) share, written once so each server keeps only its
//! framework's glue:
//!
//! - [`Settings`]: every setting of API.md as a flag and an environment
//!   variable (clap), checked into a [`referral_core::Config`];
//! - [`Api`]: the service wired to its store (memory, or PostgreSQL when
//!   `DATABASE_URL` is set), the [`SimulatedSms`] sender and the [`Tokens`],
//!   with one method per route taking raw inputs and returning a DTO or an
//!   [`ApiError`];
//! - [`ApiError`]: the one mapping from the core's errors to HTTP answers;
//! - [`dto`]: the JSON bodies; [`openapi`]: the OpenAPI 3.1 document;
//! - [`assets`]: the web page at `/` and the API reference at `/docs`;
//! - [`init_tracing`] and [`shutdown_signal`].
//!
//! Not published; not semver-stable.

pub mod api;
pub mod assets;
pub mod dto;
pub mod error;
pub mod openapi;
pub mod query;
pub mod settings;
pub mod sms;
pub mod token;

pub use api::{Api, StartError};
pub use error::ApiError;
pub use settings::{Settings, SmsDelay};
pub use sms::SimulatedSms;
pub use token::Tokens;

/// The largest request body accepted: 16 KiB (larger: 413).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Logs to stderr (stdout carries only the `listening on` line), filtered by
/// `RUST_LOG` (default `info`).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Resolves on SIGINT or SIGTERM: the moment to stop accepting connections
/// and finish the requests in flight.
pub async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT: shutting down"),
        () = terminate => tracing::info!("SIGTERM: shutting down"),
    }
}
