//! # referral-axum
//!
//! The referral routes of [`referral_http`] for axum: a [`router`] to nest
//! in your own app, an [`AuthUser`] extractor, [`Error`] with
//! `IntoResponse`, a [`JsonBody`] extractor that applies the body rules, and
//! optional [`middleware`] (a guard layer for the timeout, the header limit
//! and the error envelope; request logs) that you add where you want them.
//! No layer is added for you.
//!
//! ## Mounting in an existing app
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use axum::{Router, extract::FromRef, routing::get};
//! use referral_axum::{Api, JwtAuth, JwtSecret};
//! use referral_core::{ReferralService, StubSmsSender, SystemClock};
//! use referral_memory::MemoryStore;
//!
//! #[derive(Clone)]
//! struct AppState { referral: Api /* , your own state */ }
//! impl FromRef<AppState> for Api {
//!     fn from_ref(state: &AppState) -> Api { state.referral.clone() }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let service = ReferralService::builder(Arc::new(MemoryStore::new()), Arc::new(StubSmsSender::new())).build()?;
//! let secret: JwtSecret = "a secret of at least thirty-two bytes".parse()?;
//! let auth = JwtAuth::new(&secret, Duration::from_secs(86_400), Arc::new(SystemClock));
//! let state = AppState { referral: Api::builder(service, auth).build() };
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "my app" }))
//!     .nest("/referral", referral_axum::router())
//!     .with_state(state);
//! # let _ = app; Ok(()) }
//! ```
//!
//! The routes then answer below `/referral` (`POST /referral/api/auth/code`,
//! …). To recognise users by your own session instead of the bearer tokens,
//! pass your [`Authenticator`] to [`Api::builder`]; [`AuthUser`] then uses it
//! in your routes too.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::{
    ConnectInfo, FromRef, FromRequest, FromRequestParts, Path, RawQuery, Request, State,
};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use http_body_util::BodyExt as _;
use referral_http::dto::{
    CodeRequest, ConversionRequest, InviteRequest, PaidRequest, ReversalRequest, VerifyRequest,
};
use referral_http::handlers;
use referral_http::referral_core::{ClientAddress, UserId};
use serde::de::DeserializeOwned;

pub use referral_http::{
    self, Api, ApiBuilder, ApiError, AuthError, Authenticator, Credentials, Headers, JwtAuth,
    JwtSecret, Limits, Reply, ServerCaller, TrustedProxies, referral_core,
};

pub mod admin;
pub mod middleware;

pub use admin::{Admin, Csv};

/// Every referral route, with paths relative to where you mount it
/// (`Router::nest("/referral", router())`, or `merge` for the paths of the
/// contract as they are). The state is anything an [`Api`] can be taken
/// from ([`FromRef`]). No layer inside: see [`middleware`].
///
/// A wrong method on a known route answers 405 `method_not_allowed` with
/// `Allow`, in the JSON envelope; everything else the routes answer is
/// JSON too.
pub fn router<S>() -> Router<S>
where
    Api: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/api/auth/code", only(post(request_code)))
        .route("/api/auth/verify", only(post(verify)))
        .route("/api/profile", only(get(profile)))
        .route("/api/profile/invite", only(post(activate_invite)))
        .route("/api/profile/referrals", only(get(referrals)))
        .route("/api/profile/rewards", only(get(rewards)))
        .route("/api/server/conversions", only(post(record_conversion)))
        .route(
            "/api/server/conversions/{external_id}/reversals",
            only(post(reverse_conversion)),
        )
        .route(
            "/api/server/rewards/{id}/paid",
            only(post(mark_reward_paid)),
        )
        .route("/api/dev/sms", only(get(dev_sms)))
        .route("/api/openapi.json", only(get(openapi_json)))
        .route("/health", only(get(health)))
        .merge(admin::routes())
}

/// The route's other methods answer 405 in the envelope (axum keeps `Allow`).
fn only<S>(route: MethodRouter<S>) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    route.fallback(|| async { Error(ApiError::method_not_allowed()) })
}

/// An [`ApiError`] as an axum answer: its status, the JSON envelope, and
/// `Retry-After` on 429. Any error of the core converts into it, so
/// handlers of your own can use `?` on the service's results.
#[derive(Debug)]
pub struct Error(pub ApiError);

impl<E> From<E> for Error
where
    ApiError: From<E>,
{
    fn from(error: E) -> Self {
        Self(ApiError::from(error))
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        Answer(Reply::from(self.0)).into_response()
    }
}

/// A [`Reply`] as an axum answer.
#[derive(Debug)]
pub struct Answer(pub Reply);

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let Reply {
            status,
            headers,
            body,
            ..
        } = self.0;
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // Built directly: the body's own `IntoResponse` would first set an
        // `application/octet-stream` type for this one to replace. The
        // content type is a static value: no copy per answer.
        let mut response = Response::new(axum::body::Body::from(body));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(referral_http::JSON),
        );
        for (name, value) in headers {
            match (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value),
            ) {
                (Ok(name), Ok(value)) => {
                    response.headers_mut().append(name, value);
                }
                _ => {
                    tracing::error!(header = name, "an answer header is not a valid header");
                    return Error(ApiError::internal()).into_response();
                }
            }
        }
        response
    }
}

/// The user of an authenticated route, recognised by the [`Api`]'s
/// [`Authenticator`] from the request's headers (the bearer token by
/// default, or the host's own session). Rejects with 401 `unauthorized`.
///
/// Use it in your own routes too: `async fn mine(AuthUser(user): AuthUser)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser(pub UserId);

impl<S> FromRequestParts<S> for AuthUser
where
    Api: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let api = Api::from_ref(state);
        Ok(Self(api.authenticate(&parts.headers).await?))
    }
}

/// The host's backend on a `/api/server/*` route: the request carried one
/// of the [`Api`]'s API keys (compared in constant time). Rejects with 401
/// `unauthorized`.
#[derive(Debug, Clone, Copy)]
pub struct ServerKey(pub ServerCaller);

impl<S> FromRequestParts<S> for ServerKey
where
    Api: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let api = Api::from_ref(state);
        Ok(Self(api.authenticate_server(&parts.headers)?))
    }
}

/// The client address of a request, for the per-client send limit of the
/// code route: the socket's peer (axum's [`ConnectInfo<SocketAddr>`], or
/// its `MockConnectInfo` in tests), or, when the peer is one of the
/// [`Api`]'s [`TrustedProxies`], the client its `X-Forwarded-For` names
/// (see [`referral_http::client`]). `None` when the app is not served with
/// connect info (`into_make_service_with_connect_info::<SocketAddr>()`):
/// the code route then applies no per-client limit. Never rejects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client(pub Option<ClientAddress>);

impl<S> FromRequestParts<S> for Client
where
    Api: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let peer = ConnectInfo::<SocketAddr>::from_request_parts(parts, state)
            .await
            .ok()
            .map(|ConnectInfo(addr)| addr.ip());
        let forwarded_for = parts
            .headers
            .get_all(referral_http::X_FORWARDED_FOR)
            .iter()
            .map(HeaderValue::as_bytes);
        Ok(Self(
            Api::from_ref(state).client_address(peer, forwarded_for),
        ))
    }
}

/// A JSON object body read under the [`Api`]'s [`Limits`]: 415 unless it is
/// declared JSON, 413 past the body limit, 400 `invalid_json` or
/// `invalid_body` (see [`referral_http::rules`]).
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    Api: FromRef<S>,
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limits = *Api::from_ref(state).limits();
        let headers = req.headers();
        limits.check_json_request(
            headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes),
            headers
                .get(header::CONTENT_LENGTH)
                .map(HeaderValue::as_bytes),
        )?;
        let limited = http_body_util::Limited::new(req.into_body(), limits.max_body_bytes);
        let bytes = match limited.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(limits.payload_too_large().into());
            }
            Err(e) => return Err(ApiError::body_unreadable(e).into()),
        };
        Ok(Self(referral_http::parse_json_body(&bytes)?))
    }
}

async fn request_code(
    State(api): State<Api>,
    Client(client): Client,
    JsonBody(body): JsonBody<CodeRequest>,
) -> Result<Answer, Error> {
    Ok(Answer(handlers::request_code(&api, client, body).await?))
}

async fn verify(
    State(api): State<Api>,
    JsonBody(body): JsonBody<VerifyRequest>,
) -> Result<Answer, Error> {
    Ok(Answer(handlers::verify(&api, body).await?))
}

async fn profile(State(api): State<Api>, AuthUser(user): AuthUser) -> Result<Answer, Error> {
    Ok(Answer(handlers::profile(&api, user).await?))
}

/// The user first (an extractor's order is its argument's): a caller
/// without credentials learns nothing from the body.
async fn activate_invite(
    State(api): State<Api>,
    AuthUser(user): AuthUser,
    JsonBody(body): JsonBody<InviteRequest>,
) -> Result<Answer, Error> {
    Ok(Answer(handlers::activate_invite(&api, user, body).await?))
}

async fn referrals(
    State(api): State<Api>,
    AuthUser(user): AuthUser,
    RawQuery(query): RawQuery,
) -> Result<Answer, Error> {
    Ok(Answer(
        handlers::referrals(&api, user, query.as_deref()).await?,
    ))
}

async fn rewards(
    State(api): State<Api>,
    AuthUser(user): AuthUser,
    RawQuery(query): RawQuery,
) -> Result<Answer, Error> {
    Ok(Answer(
        handlers::rewards(&api, user, query.as_deref()).await?,
    ))
}

/// The key first, then the body (as for the user routes).
async fn record_conversion(
    State(api): State<Api>,
    ServerKey(caller): ServerKey,
    JsonBody(body): JsonBody<ConversionRequest>,
) -> Result<Answer, Error> {
    Ok(Answer(
        handlers::record_conversion(&api, caller, body).await?,
    ))
}

async fn reverse_conversion(
    State(api): State<Api>,
    ServerKey(caller): ServerKey,
    Path(external_id): Path<String>,
    JsonBody(body): JsonBody<ReversalRequest>,
) -> Result<Answer, Error> {
    Ok(Answer(
        handlers::reverse_conversion(&api, caller, &external_id, body).await?,
    ))
}

async fn mark_reward_paid(
    State(api): State<Api>,
    ServerKey(caller): ServerKey,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PaidRequest>,
) -> Result<Answer, Error> {
    Ok(Answer(
        handlers::mark_reward_paid(&api, caller, &id, body).await?,
    ))
}

async fn dev_sms(State(api): State<Api>, RawQuery(query): RawQuery) -> Result<Answer, Error> {
    Ok(Answer(handlers::dev_sms(&api, query.as_deref())?))
}

async fn health(State(api): State<Api>) -> Answer {
    Answer(handlers::health(&api).await)
}

async fn openapi_json(State(api): State<Api>) -> Answer {
    Answer(handlers::openapi_json(&api))
}

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
