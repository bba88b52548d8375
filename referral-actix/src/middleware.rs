//! An optional guard for the host's app: none is added by
//! [`crate::configure`]. Add it around your whole app (or a scope) with
//! `wrap_fn`:
//!
//! ```
//! use std::time::Duration;
//! use actix_web::App;
//! use referral_actix::middleware::{Guard, guard, not_found};
//!
//! let options = Guard::default().timeout(Duration::from_secs(30));
//! let app = App::new()
//!     .default_service(actix_web::web::to(not_found))
//!     .wrap_fn(move |req, srv| guard(req, srv, options));
//! # let _ = app;
//! ```

use std::future::Future;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::{HttpResponse, ResponseError as _};

use crate::{ActixHeaders, ApiError, Error, Limits};

/// What [`guard`] enforces besides the envelope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Guard {
    /// A request running past it answers 503 `unavailable`; `None`: no limit.
    pub timeout: Option<Duration>,
    /// Headers past [`Limits::max_header_bytes`] answer 431 and the handler
    /// never runs; `None`: no check.
    pub limits: Option<Limits>,
}

impl Guard {
    /// With the request timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// With the header limit of `limits`.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }
}

/// Wraps a request: the header limit and the timeout of `options`, and the
/// JSON envelope on every error answer actix made on its own
/// ([`referral_http::envelope_for`]). For `App::wrap_fn`.
pub fn guard<S, B>(
    req: ServiceRequest,
    srv: &S,
    options: Guard,
) -> impl Future<Output = Result<ServiceResponse, actix_web::Error>> + use<S, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    // For the logs: both clones share the request's bytes (no allocation).
    let method = req.method().clone();
    let uri = req.uri().clone();
    let headers_ok = options.limits.is_none_or(|limits| {
        limits
            .check_header_bytes(
                req.headers()
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_bytes())),
            )
            .is_ok()
    });
    let call = headers_ok.then(|| srv.call(req));
    async move {
        let Some(call) = call else {
            return Err(Error(ApiError::for_status(431)).into());
        };
        let result = match options.timeout {
            Some(timeout) => match actix_web::rt::time::timeout(timeout, call).await {
                Ok(result) => result,
                Err(_elapsed) => {
                    tracing::warn!(%method, path = uri.path(), ?timeout, "request timed out");
                    return Err(Error(ApiError::timed_out()).into());
                }
            },
            None => call.await,
        };
        match result {
            Ok(response) => {
                let (request, response) = response.into_parts();
                let response = enveloped(response.map_into_boxed_body());
                tracing::debug!(%method, path = uri.path(), status = response.status().as_u16(), "answered");
                Ok(ServiceResponse::new(request, response))
            }
            // Errors without a request to answer with: actix answers them
            // with `Error::error_response`, the envelope.
            Err(e) => {
                let status = e.as_response_error().status_code().as_u16();
                tracing::debug!(%method, path = uri.path(), status, error = %e, "failed");
                Err(Error(ApiError::for_status(status)).into())
            }
        }
    }
}

/// An error answer without a JSON body replaced by the envelope for its
/// status; every other answer as it is.
fn enveloped(response: HttpResponse) -> HttpResponse {
    match referral_http::envelope_for(
        response.status().as_u16(),
        &ActixHeaders(response.headers()),
    ) {
        Some(reply) => crate::reply_response(reply),
        None => response,
    }
}

/// 404 `not_found` in the envelope, for `App::default_service(web::to(not_found))`.
pub async fn not_found() -> HttpResponse {
    Error(ApiError::not_found()).error_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::StatusCode;
    use actix_web::http::header::{self, HeaderValue};

    #[test]
    fn framework_errors_get_the_envelope() {
        let response = enveloped(HttpResponse::MethodNotAllowed().finish());
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            response
                .headers()
                .get(header::CONTENT_TYPE)
                .map(HeaderValue::as_bytes),
            Some(referral_http::JSON.as_bytes())
        );
        let ok = enveloped(HttpResponse::Ok().body("x"));
        assert_eq!(ok.status(), StatusCode::OK);
    }

    #[test]
    fn too_many_requests_carries_retry_after() {
        let response = Error(ApiError::too_many_requests(
            "slow down",
            Duration::from_millis(1500),
        ))
        .error_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response
                .headers()
                .get(header::RETRY_AFTER)
                .map(HeaderValue::as_bytes),
            Some(&b"2"[..])
        );
    }
}
