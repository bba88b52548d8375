//! `referral-server-actix`: the referral HTTP API of API.md on actix-web.
//!
//! Only actix glue lives here; settings, the service wiring, the error mapping, tokens,
//! the bodies, the OpenAPI document and the pages come from `referral-server-common`.

use std::io::Write as _;
use std::process::ExitCode;

use actix_web::{App, HttpServer, web};
use referral_server_common::{Api, Settings, init_tracing, shutdown_signal};

mod routes;

#[actix_web::main]
async fn main() -> ExitCode {
    init_tracing();
    let settings = Settings::from_env_and_args();
    let api = match Api::start(&settings).await {
        Ok(api) => api,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    let store = api.store_kind();
    let api = web::Data::new(api);
    let timeout = settings.request_timeout();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(api.clone())
            .configure(routes::configure)
            .default_service(web::to(routes::not_found))
            .wrap_fn(move |req, srv| routes::guard(req, srv, timeout))
    })
    // SIGINT and SIGTERM alike: stop accepting, finish what is in flight, exit 0.
    // (actix's own handlers would stop at once on SIGINT.)
    .shutdown_signal(shutdown_signal())
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
    {
        let mut out = std::io::stdout().lock();
        if writeln!(out, "listening on http://{addr}")
            .and_then(|()| out.flush())
            .is_err()
        {
            tracing::warn!("cannot write the `listening on` line to stdout");
        }
    }
    match server.run().await {
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
