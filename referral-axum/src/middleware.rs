//! Optional pieces for the host's own router: none is added by
//! [`crate::router`]. Add the ones you want around your whole app (or the
//! nested referral routes only), outermost last:
//!
//! ```
//! use std::time::Duration;
//! use axum::Router;
//! use axum::middleware::{map_request_with_state, map_response};
//! use referral_axum::middleware::{envelope, limit_headers, not_found, timeout, trace};
//! use referral_axum::{Api, Limits};
//!
//! fn app(api: Api) -> Router {
//!     Router::new()
//!         .merge(referral_axum::router())
//!         .fallback(not_found)
//!         .with_state(api)
//!         .layer(timeout(Duration::from_secs(30)))
//!         .layer(map_request_with_state(Limits::default(), limit_headers))
//!         .layer(map_response(envelope))
//!         .layer(trace())
//! }
//! ```

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnRequest, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::{Answer, ApiError, Error, Limits};

/// Gives every error answer without a JSON body (axum's own rejections, a
/// timeout's bare 503, another layer's 4xx) the JSON envelope of its
/// status, keeping `Allow` and `Retry-After`
/// ([`referral_http::envelope_for`]). For
/// `axum::middleware::map_response(envelope)`.
pub async fn envelope(response: Response) -> Response {
    match referral_http::envelope_for(response.status().as_u16(), response.headers()) {
        Some(reply) => Answer(reply).into_response(),
        None => response,
    }
}

/// Refuses a request whose headers exceed [`Limits::max_header_bytes`] with
/// 431 `request_header_fields_too_large` (hyper alone takes up to 400 KiB).
/// For `axum::middleware::map_request_with_state(limits, limit_headers)`.
///
/// # Errors
/// That answer.
pub async fn limit_headers(
    State(limits): State<Limits>,
    request: Request,
) -> Result<Request, Error> {
    limits.check_header_bytes(
        request
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes())),
    )?;
    Ok(request)
}

/// A request running past `timeout` answers 503 (enveloped as `unavailable`
/// by [`envelope`] when that is outside it).
#[must_use]
pub fn timeout(timeout: Duration) -> TimeoutLayer {
    TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, timeout)
}

/// One INFO span and one INFO line per request (tower-http's `TraceLayer`).
#[must_use]
pub fn trace() -> TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    DefaultMakeSpan,
    DefaultOnRequest,
    DefaultOnResponse,
> {
    TraceLayer::new_for_http()
        .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
        .on_response(DefaultOnResponse::new().level(Level::INFO))
}

/// 404 `not_found` in the envelope, for `Router::fallback(not_found)`.
pub async fn not_found() -> Error {
    Error(ApiError::not_found())
}
