//! Optional pieces for the host's app: none is added by [`crate::router`].
//!
//! - [`Guard`]: the request timeout, the header limit and the JSON envelope
//!   on every error answer made without one (axum's own rejections and
//!   405s), in one tower layer, as `referral-actix`'s guard.
//! - [`trace`]: request logs (tower-http's `TraceLayer`).
//! - [`not_found`]: the 404 of the envelope, for your fallback.
//!
//! Wrap them around the whole router, outermost first, with
//! [`tower::ServiceBuilder`]: the router is then wrapped once. (`Router::layer`
//! wraps every route instead, so each request also clones and boxes the
//! layered route; use it where you want the layers on some routes only.)
//!
//! ```
//! use std::time::Duration;
//! use axum::Router;
//! use referral_axum::middleware::{Guard, not_found, trace};
//! use referral_axum::{Api, Limits};
//! use tower::ServiceBuilder;
//!
//! fn app(api: Api) -> impl Clone {
//!     let router: Router = Router::new()
//!         .merge(referral_axum::router())
//!         .fallback(not_found)
//!         .with_state(api);
//!     ServiceBuilder::new()
//!         .layer(trace())
//!         .layer(Guard::default().timeout(Duration::from_secs(30)).limits(Limits::default()))
//!         .service(router)
//! }
//! ```
//!
//! Serve the result with `axum::serve(listener, tower::make::Shared::new(app))`
//! or through your own accept loop.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{DefaultMakeSpan, DefaultOnRequest, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::{Answer, ApiError, Error, Limits};

/// What the contract's servers put around the whole app, as a tower
/// [`Layer`]: the header limit and the request timeout below, and the JSON
/// envelope ([`referral_http::envelope_for`]) on every error answer without
/// a JSON body (axum's own rejections, a 405, another layer's 4xx), keeping
/// `Allow` and `Retry-After`. The default enforces neither limit and only
/// adds the envelope.
///
/// The service it makes ([`Guarded`]) boxes nothing and arms no timer for a
/// request that is answered without waiting: the handler is polled first,
/// and the timeout's timer only once it has to wait.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Guard {
    /// A request still running this long after it came answers 503
    /// `unavailable` (and is dropped); `None`: no limit.
    pub timeout: Option<Duration>,
    /// Headers past [`Limits::max_header_bytes`] answer 431
    /// `request_header_fields_too_large` and the inner service never sees
    /// the request; `None`: no check (hyper alone takes up to 400 KiB).
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

impl<S> Layer<S> for Guard {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Guarded<S> {
        Guarded {
            inner,
            guard: *self,
        }
    }
}

/// A service behind a [`Guard`] (an axum `Router`, or any service answering
/// axum's [`Response`] without failing).
#[derive(Debug, Clone)]
pub struct Guarded<S> {
    inner: S,
    guard: Guard,
}

impl<S, B> Service<axum::http::Request<B>> for Guarded<S>
where
    S: Service<axum::http::Request<B>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = GuardFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        if let Some(limits) = self.guard.limits {
            let checked = limits.check_header_bytes(
                request
                    .headers()
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_bytes())),
            );
            if let Err(error) = checked {
                return GuardFuture {
                    state: State::Refused {
                        answer: Some(Error(error).into_response()),
                    },
                };
            }
        }
        // For the timeout's log line: both clones share the request's bytes.
        let deadline = self.guard.timeout.map(|timeout| Deadline {
            at: Instant::now() + timeout,
            timeout,
            method: request.method().clone(),
            uri: request.uri().clone(),
        });
        GuardFuture {
            state: State::Running {
                future: self.inner.call(request),
                deadline,
                sleep: None,
            },
        }
    }
}

/// When a running request times out, and what its log line names.
#[derive(Debug)]
struct Deadline {
    at: Instant,
    timeout: Duration,
    method: Method,
    uri: Uri,
}

pin_project! {
    /// The future of [`Guarded`].
    pub struct GuardFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // Refused before the inner service saw it (the answer, until taken).
        Refused { answer: Option<Response> },
        // The inner service's future; the timer once it had to wait.
        Running {
            #[pin]
            future: F,
            deadline: Option<Deadline>,
            #[pin]
            sleep: Option<Sleep>,
        },
    }
}

impl<F> Future for GuardFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Refused { answer } => Poll::Ready(Ok(answer
                .take()
                .unwrap_or_else(|| Error(ApiError::internal()).into_response()))),
            StateProj::Running {
                future,
                deadline,
                mut sleep,
            } => {
                if let Poll::Ready(Ok(response)) = future.poll(cx) {
                    return Poll::Ready(Ok(enveloped(response)));
                }
                let Some(deadline) = deadline else {
                    return Poll::Pending;
                };
                if sleep.is_none() {
                    sleep.set(Some(tokio::time::sleep_until(deadline.at)));
                }
                if let Some(sleep) = sleep.as_pin_mut() {
                    ready!(sleep.poll(cx));
                }
                tracing::warn!(
                    method = %deadline.method,
                    path = deadline.uri.path(),
                    timeout = ?deadline.timeout,
                    "request timed out"
                );
                Poll::Ready(Ok(Error(ApiError::timed_out()).into_response()))
            }
        }
    }
}

impl<F> std::fmt::Debug for GuardFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardFuture").finish_non_exhaustive()
    }
}

/// An error answer without a JSON body replaced by the envelope of its
/// status; every other answer as it is.
fn enveloped(response: Response) -> Response {
    match referral_http::envelope_for(response.status().as_u16(), response.headers()) {
        Some(reply) => Answer(reply).into_response(),
        None => response,
    }
}

/// One INFO span and one INFO line per request, and an ERROR line for
/// every 5xx answer (tower-http's `TraceLayer`).
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

/// The service [`trace`]'s layer makes around `S`.
pub type Traced<S> = tower_http::trace::Trace<
    S,
    SharedClassifier<ServerErrorsAsFailures>,
    DefaultMakeSpan,
    DefaultOnRequest,
    DefaultOnResponse,
>;

/// 404 `not_found` in the envelope, for `Router::fallback(not_found)`.
pub async fn not_found() -> Error {
    Error(ApiError::not_found())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::body::Body;
    use axum::http::{HeaderValue, StatusCode, header};
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;

    /// A service answering `answer` after `wait`, counting its calls.
    fn inner(
        wait: Duration,
        answer: fn() -> Response,
    ) -> (
        Arc<AtomicUsize>,
        impl Service<axum::http::Request<Body>, Response = Response, Error = Infallible, Future: Send>
        + Clone,
    ) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let service = tower::service_fn(move |_request: axum::http::Request<Body>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                Ok::<_, Infallible>(answer())
            }
        });
        (calls, service)
    }

    fn ok() -> Response {
        (StatusCode::OK, "fine").into_response()
    }

    async fn call(
        service: impl Service<axum::http::Request<Body>, Response = Response, Error = Infallible>,
        request: axum::http::Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let response = service
            .oneshot(request)
            .await
            .unwrap_or_else(|e| match e {});
        let (parts, body) = response.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (parts.status, parts.headers, json)
    }

    fn request_with_header(bytes: usize) -> axum::http::Request<Body> {
        axum::http::Request::builder()
            .uri("/x")
            .header("x-big", "a".repeat(bytes))
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn header_limit_answers_431_and_the_service_never_runs() {
        let (calls, service) = inner(Duration::ZERO, ok);
        let guard = Guard::default().limits(Limits::default().with_max_header_bytes(64));
        let (status, _, body) = call(guard.layer(service.clone()), request_with_header(100)).await;
        assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(body["error"]["code"], "request_header_fields_too_large");
        assert_eq!(calls.load(Ordering::SeqCst), 0);

        let (status, _, _) = call(guard.layer(service.clone()), request_with_header(10)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // Without limits, no check.
        let (status, _, _) = call(Guard::default().layer(service), request_with_header(100)).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_the_timeout_answers_503_at_the_deadline() {
        let (_, slow) = inner(Duration::from_secs(10), ok);
        let guard = Guard::default().timeout(Duration::from_secs(1));
        let started = Instant::now();
        let (status, _, body) = call(guard.layer(slow), request_with_header(1)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "unavailable");
        assert_eq!(started.elapsed(), Duration::from_secs(1));

        // Waiting, but answered within the timeout: the answer as it is.
        let (_, in_time) = inner(Duration::from_millis(999), ok);
        let (status, _, _) = call(guard.layer(in_time), request_with_header(1)).await;
        assert_eq!(status, StatusCode::OK);

        // No timeout: it waits as long as the service does.
        let (_, slow) = inner(Duration::from_secs(10), ok);
        let started = Instant::now();
        let (status, _, _) = call(Guard::default().layer(slow), request_with_header(1)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test]
    async fn error_answers_without_json_get_the_envelope() {
        fn method_not_allowed() -> Response {
            let mut response = StatusCode::METHOD_NOT_ALLOWED.into_response();
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET,HEAD"));
            response
        }
        let (_, service) = inner(Duration::ZERO, method_not_allowed);
        let (status, headers, body) =
            call(Guard::default().layer(service), request_with_header(1)).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["error"]["code"], "method_not_allowed");
        assert_eq!(headers[header::ALLOW], "GET,HEAD");
        assert_eq!(headers[header::CONTENT_TYPE], referral_http::JSON);

        // A JSON error of the routes, and a success, go out as they are.
        fn conflict() -> Response {
            Error(ApiError::new(409, "mine", "my own")).into_response()
        }
        let (_, service) = inner(Duration::ZERO, conflict);
        let (status, _, body) = call(Guard::default().layer(service), request_with_header(1)).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["error"]["code"], "mine");
        let (_, service) = inner(Duration::ZERO, ok);
        let response = Guard::default()
            .layer(service)
            .oneshot(request_with_header(1))
            .await
            .unwrap_or_else(|e| match e {});
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"fine");
    }
}
