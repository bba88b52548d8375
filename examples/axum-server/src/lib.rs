//! `referral-server`'s app, as a library so the contract suite can run it in
//! process: the referral routes of `referral-axum` as they are (the
//! contract's paths), the web pages, and the layers the contract asks for
//! (request timeout, header limit, JSON envelope, request logs), all taken
//! from `referral-axum` as any host would. The binary (`src/main.rs`) adds
//! the accept loop and shutdown.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{map_request_with_state, map_response};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use referral_axum::middleware::{envelope, limit_headers, not_found, timeout, trace};
use referral_axum::{Api, ApiError, Error};
use referral_server_common::Settings;
use referral_server_common::assets::{self, Asset};
use tower::ServiceBuilder;

/// Every route of API.md and the pages, with the request timeout of
/// `settings`, the header limit, the JSON error envelope and request logs.
pub fn app(api: Api, settings: &Settings) -> Router {
    let limits = *api.limits();
    Router::new()
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
        .with_state(api)
        // One `layer` call for the four: each call wraps every route once
        // more (a boxed service cloned, and a boxed future, per request).
        // Outermost first: request logs, envelope, header limit, timeout.
        .layer(
            ServiceBuilder::new()
                .layer(trace())
                .layer(map_response(envelope))
                .layer(map_request_with_state(limits, limit_headers))
                .layer(timeout(settings.request_timeout())),
        )
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
