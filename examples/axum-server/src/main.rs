//! `referral-server`: the referral HTTP API of API.md on axum.
//!
//! A thin binary over the published crates: the routes come from
//! `referral-axum` (over `referral-http`); the settings, the store and SMS
//! sender choice and the pages from `referral-server-common`. This crate
//! adds the accept loop (header timeout, connection limit, one runtime per
//! core) and shutdown.
//! See this crate's README for the settings.

mod serve;
mod timer;

use std::process::ExitCode;

use referral_server_common::{
    Settings, Started, announce_listening, init_tracing, shutdown_signal,
};

/// mimalloc instead of the system allocator: faster malloc/free for the
/// many small allocations of each request (see README and PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    let settings = Settings::parse_as("referral-server", env!("CARGO_PKG_VERSION"));
    tracing::debug!(?settings, "settings");
    let Started {
        api,
        store,
        approver,
        ..
    } = match referral_server_common::start(&settings).await {
        Ok(started) => started,
        Err(error) => {
            let error = referral_axum::referral_http::error::chain(&error);
            tracing::error!(%error, "could not start");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(settings.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, listen = %settings.listen, "could not bind");
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(error) => {
            tracing::error!(%error, "could not read the bound address");
            return ExitCode::FAILURE;
        }
    };
    let app = referral_server::app(api, &settings);
    tracing::info!(%addr, store, "ready");
    announce_listening(addr);
    let limits = serve::Limits {
        header_timeout: settings.header_timeout(),
        max_connections: usize::try_from(settings.max_connections).unwrap_or(usize::MAX),
        shutdown_grace: settings.request_timeout() + settings.header_timeout(),
        // One per core, as referral-server-actix's workers.
        workers: std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
    };
    let approver = approver.spawn();
    serve::serve(listener, app, limits, shutdown_signal()).await;
    approver.stop().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}
