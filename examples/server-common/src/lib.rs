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

/// The most header bytes (names, values and 4 bytes of framing each) a
/// request may carry: 32 KiB; larger: 431 `request_header_fields_too_large`.
/// (hyper and actix-web alone would take a 64 KiB header.)
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Whether a `Content-Type` value declares JSON: `application/json` or
/// `application/*+json`, parameters (`; charset=utf-8`) allowed.
#[must_use]
pub fn is_json_content_type(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a request body, which must be a JSON object: 400 `invalid_json`
/// when it is not JSON, 400 `invalid_body` when it is not an object or a
/// field is missing or mistyped. (serde would otherwise read a struct from a
/// JSON array too: `["+79991234567"]` as a code request.)
///
/// # Errors
/// Those two answers.
pub fn parse_json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value = serde_json::from_slice::<T>(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::invalid_body(e),
        _ => ApiError::invalid_json(e),
    })?;
    // serde_json skips only these four bytes as whitespace.
    let first = bytes
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first == Some(&b'{') {
        Ok(value)
    } else {
        Err(ApiError::invalid_body("the body must be a JSON object"))
    }
}

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
