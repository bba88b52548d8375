//! Serves the existing app on `EXISTING_APP_LISTEN` (default 127.0.0.1:3000).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let addr = std::env::var("EXISTING_APP_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let Ok(listener) = tokio::net::TcpListener::bind(&addr).await else {
        eprintln!("cannot bind {addr}");
        return ExitCode::FAILURE;
    };
    let app = referral_existing_app::app(referral_existing_app::state());
    // The peer's address reaches the code route (its per-client send limit).
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    match axum::serve(listener, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("the server failed: {e}");
            ExitCode::FAILURE
        }
    }
}
