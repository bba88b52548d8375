//! # referral-server-common
//!
//! What the example servers (`referral-server` on axum, `referral-server-actix`
//! on actix-web) share besides the published crates (`referral-http`,
//! `referral-axum`, `referral-actix`), which they use as any user would:
//!
//! - [`Settings`]: every setting of API.md as a flag and an environment
//!   variable (clap), checked into a [`referral_core::Config`];
//! - [`start()`]: the store the settings choose (memory, or PostgreSQL when
//!   `DATABASE_URL` is set), the SMS sender they choose ([`provider`]: the
//!   [`SimulatedSms`] sender or a real provider), the JWT authenticator,
//!   built into a [`referral_http::Api`];
//! - [`Approver`]: the periodic approval of rewards whose hold has ended;
//! - [`assets`]: the web pages at `/` and `/admin`, their scripts, and the API
//!   reference at `/docs`;
//! - [`init_tracing`], [`announce_listening`] and [`shutdown_signal`].
//!
//! Not published; not semver-stable.

pub mod approver;
pub mod assets;
pub mod provider;
pub mod settings;
pub mod sms;
pub mod start;

pub use approver::{Approver, ApproverHandle};
pub use settings::{Settings, SmsDelay};
pub use sms::SimulatedSms;
pub use start::{StartError, Started, start};

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

/// Writes the one line stdout carries, `listening on http://{addr}`, once
/// the server is bound: tools and tests wait for it.
pub fn announce_listening(addr: std::net::SocketAddr) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if writeln!(out, "listening on http://{addr}")
        .and_then(|()| out.flush())
        .is_err()
    {
        tracing::warn!("could not write the `listening on` line to stdout");
    }
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
