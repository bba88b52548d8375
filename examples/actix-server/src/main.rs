//! `referral-server-actix`: the referral HTTP API of API.md on actix-web.
//!
//! A thin binary over the published crates: the routes and the guard (request timeout,
//! header limit, JSON envelope) come from `referral-actix` (over `referral-http`); the
//! settings, the store and SMS sender choice and the pages from `referral-server-common`.
//! This crate adds the pages' routes, serving and shutdown.

use std::process::ExitCode;

use actix_web::HttpServer;
use referral_server_common::{
    Settings, Started, announce_listening, init_tracing, shutdown_signal,
};

/// mimalloc instead of the system allocator: faster malloc/free for the
/// many small allocations of each request (see README and PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> ExitCode {
    init_tracing();
    let settings = Settings::from_env_and_args();
    let Started {
        api,
        store,
        approver,
        ..
    } = match referral_server_common::start(&settings).await {
        Ok(started) => started,
        Err(e) => {
            let error = referral_actix::referral_http::error::chain(&e);
            tracing::error!(%error, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let max_connections = usize::try_from(settings.max_connections).unwrap_or(usize::MAX);
    let app_settings = settings.clone();
    let server = HttpServer::new(move || referral_server_actix::app(api.clone(), &app_settings))
        // Stalled and idle clients: headers within the header timeout (else 408
        // and close), idle keep-alive no longer than that either.
        .client_request_timeout(settings.header_timeout())
        .keep_alive(settings.header_timeout())
        // The connection limit is per worker: share it out (past it, accepting
        // waits and the kernel's backlog holds the rest).
        .workers(workers)
        .max_connections(max_connections.div_ceil(workers).max(1))
        // SIGINT and SIGTERM alike: stop accepting, finish what is in flight, exit 0.
        // (actix's own handlers would stop at once on SIGINT.)
        .shutdown_signal(shutdown_signal())
        .shutdown_timeout((settings.request_timeout() + settings.header_timeout()).as_secs())
        .bind(settings.listen);
    let server = match server {
        Ok(server) => server,
        Err(e) => {
            tracing::error!(error = %e, listen = %settings.listen, "cannot bind");
            return ExitCode::FAILURE;
        }
    };
    let Some(addr) = server.addrs().first().copied() else {
        tracing::error!("bound to no address");
        return ExitCode::FAILURE;
    };
    tracing::info!(%addr, store, "serving");
    announce_listening(addr);
    let approver = approver.spawn();
    let result = server.run().await;
    approver.stop().await;
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "the server failed");
            ExitCode::FAILURE
        }
    }
}
