//! `referral-server`'s app, as a library so the contract suite can run it in
//! process: the referral routes of `referral-axum` as they are (the
//! contract's paths), the web pages, and the layers the contract asks for
//! (request timeout, header limit, JSON envelope: `referral-axum`'s
//! `Guard`) with request logs, all taken from `referral-axum` as any host
//! would. The binary (`src/main.rs`) adds the accept loop and shutdown.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use referral_axum::middleware::{Guard, Guarded, Traced, not_found, trace};
use referral_axum::{Api, ApiError, Error};
use referral_server_common::Settings;
use referral_server_common::assets::{self, Asset};
use tower::ServiceBuilder;

/// The app: the router inside the guard, inside the request logs.
pub type App = Traced<Guarded<Router>>;

/// Every route of API.md and the pages, with the request timeout of
/// `settings`, the header limit, the JSON error envelope and request logs.
///
/// The two layers wrap the router once, not each route (as
/// `Router::layer` would): no per-request clone and box of a layered route.
pub fn app(api: Api, settings: &Settings) -> App {
    let guard = Guard::default()
        .timeout(settings.request_timeout())
        .limits(*api.limits());
    let router = Router::new()
        .merge(referral_axum::router())
        .route("/", get(|| async { asset(assets::index_page(), None) }))
        .route(
            "/admin",
            get(|| async { asset(assets::admin_page(), None) }),
        )
        .route("/docs", get(|| async { asset(assets::docs_page(), None) }))
        .route("/docs/{file}", get(docs_asset))
        .route("/assets/{file}", get(page_script))
        .fallback(not_found)
        .with_state(api);
    ServiceBuilder::new()
        .layer(trace())
        .layer(guard)
        .service(router)
}

/// A static asset.
fn asset(asset: Asset, cache_control: Option<&'static str>) -> Response {
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, asset.content_type)],
        asset.body,
    )
        .into_response();
    if let Some(value) = cache_control {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    }
    response
}

async fn page_script(Path(file): Path<String>) -> Response {
    match assets::page_script(&file) {
        Some(found) => asset(found, None),
        None => Error(ApiError::not_found()).into_response(),
    }
}

async fn docs_asset(Path(file): Path<String>) -> Response {
    match assets::docs_asset(&file) {
        Some(found) => asset(found, Some(assets::DOCS_ASSET_CACHE_CONTROL)),
        None => Error(ApiError::not_found()).into_response(),
    }
}
