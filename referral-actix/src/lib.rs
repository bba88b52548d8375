//! # referral-actix
//!
//! The referral routes of [`referral_http`] for actix-web: [`configure`] (or
//! [`configure_with`]) registers them on your app or a scope, [`AuthUser`]
//! recognises the caller, [`Error`] is a `ResponseError` with the JSON
//! envelope, and [`middleware::guard`] offers the request timeout, the
//! header limit and the envelope for actix's own error answers, for you to
//! add where you want them. No middleware is added for you.
//!
//! ## Mounting in an existing app
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use actix_web::{App, web};
//! use referral_actix::{Api, JwtAuth, JwtSecret};
//! use referral_core::{ReferralService, StubSmsSender, SystemClock};
//! use referral_memory::MemoryStore;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let service = ReferralService::builder(Arc::new(MemoryStore::new()), Arc::new(StubSmsSender::new())).build()?;
//! let secret: JwtSecret = "a secret of at least thirty-two bytes".parse()?;
//! let auth = JwtAuth::new(&secret, Duration::from_secs(86_400), Arc::new(SystemClock));
//! let api = Api::builder(service, auth).build();
//! let app = App::new()
//!     .route("/", web::get().to(|| async { "my app" }))
//!     .service(web::scope("/referral").configure(referral_actix::configure_with(api)));
//! # let _ = app; Ok(()) }
//! ```
//!
//! The routes then answer below `/referral`. Inside `HttpServer::new`'s
//! factory, build the [`Api`] once outside and clone it in.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use actix_web::body::BoxBody;
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::{FromRequest, HttpRequest, HttpResponse, Resource, Responder, Route, guard, web};
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

/// Registers every referral route on `cfg`, with paths relative to where it
/// is mounted (`web::scope("/referral").configure(configure)`, or
/// `App::configure` for the paths of the contract as they are). The
/// [`Api`] must be in the app data as `web::Data<Api>`
/// ([`configure_with`] puts it there).
///
/// A wrong method on a known route answers 405 `method_not_allowed` with
/// `Allow`, in the JSON envelope; everything else the routes answer is
/// JSON too.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/auth/code", "POST").route(web::post().to(request_code)))
        .service(resource("/api/auth/verify", "POST").route(web::post().to(verify)))
        .service(resource("/api/profile", "GET, HEAD").route(get().to(profile)))
        .service(resource("/api/profile/invite", "POST").route(web::post().to(activate_invite)))
        .service(resource("/api/profile/referrals", "GET, HEAD").route(get().to(referrals)))
        .service(resource("/api/profile/rewards", "GET, HEAD").route(get().to(rewards)))
        .service(
            resource("/api/server/conversions", "POST").route(web::post().to(record_conversion)),
        )
        .service(
            resource("/api/server/conversions/{external_id}/reversals", "POST")
                .route(web::post().to(reverse_conversion)),
        )
        .service(
            resource("/api/server/rewards/{id}/paid", "POST")
                .route(web::post().to(mark_reward_paid)),
        )
        .service(resource("/api/dev/sms", "GET, HEAD").route(get().to(dev_sms)))
        .service(resource("/api/openapi.json", "GET, HEAD").route(get().to(openapi_json)))
        .service(resource("/health", "GET, HEAD").route(get().to(health)));
    admin::configure(cfg);
}

/// [`configure`], with `api` put in the app data first.
pub fn configure_with(api: Api) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(api));
        configure(cfg);
    }
}

/// A resource at `path` whose methods other than its routes' answer 405
/// `method_not_allowed` in the envelope, with `Allow: allow` (e.g.
/// `"GET, HEAD"`). For routes of your own that should answer like these.
pub fn resource(path: &str, allow: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move || async move {
        let mut response = Error(ApiError::method_not_allowed()).error_response_json();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        response
    }))
}

/// A route for GET, and HEAD like GET (actix sends no body for HEAD).
#[must_use]
pub fn get() -> Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// An [`ApiError`] as an actix error: its status, the JSON envelope, and
/// `Retry-After` on 429. Any error of the core converts into it, so handlers
/// of your own can use `?` on the service's results.
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

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Error {
    fn error_response_json(&self) -> HttpResponse {
        reply_response(Reply::from(self.0.clone()))
    }
}

impl actix_web::ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        self.error_response_json()
    }
}

/// A [`Reply`] as an actix answer.
#[derive(Debug)]
pub struct Answer(pub Reply);

impl Responder for Answer {
    type Body = BoxBody;

    fn respond_to(self, _req: &HttpRequest) -> HttpResponse {
        reply_response(self.0)
    }
}

/// A [`Reply`] as an actix answer.
pub(crate) fn reply_response(reply: Reply) -> HttpResponse {
    let Reply {
        status,
        headers,
        body,
        ..
    } = reply;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status)
        .content_type(referral_http::JSON)
        .body(body);
    for (name, value) in headers {
        match (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value),
        ) {
            (Ok(name), Ok(value)) => response.headers_mut().append(name, value),
            _ => {
                tracing::error!(header = name, "an answer header is not a valid header");
                return Error(ApiError::internal()).error_response_json();
            }
        }
    }
    response
}

/// actix-web's header map as [`Headers`], for an [`Authenticator`].
#[derive(Debug, Clone, Copy)]
pub struct ActixHeaders<'a>(pub &'a HeaderMap);

impl Headers for ActixHeaders<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get_all(name).find_map(|v| v.to_str().ok())
    }
}

/// The [`Api`] of the app data.
pub(crate) fn api_of(req: &HttpRequest) -> Result<web::Data<Api>, Error> {
    req.app_data::<web::Data<Api>>().cloned().ok_or_else(|| {
        tracing::error!("no web::Data<Api> in the app data: use referral_actix::configure_with");
        Error(ApiError::internal())
    })
}

/// The user of an authenticated route, recognised by the [`Api`]'s
/// [`Authenticator`] from the request's headers (the bearer token by
/// default, or the host's own session). Rejects with 401 `unauthorized`.
///
/// Use it in your own routes too: `async fn mine(AuthUser(user): AuthUser)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser(pub UserId);

impl FromRequest for AuthUser {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Error>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let api = api_of(&req)?;
            Ok(Self(api.authenticate(&ActixHeaders(req.headers())).await?))
        })
    }
}

/// The host's backend on a `/api/server/*` route: the request carried one
/// of the [`Api`]'s API keys (compared in constant time). Rejects with 401
/// `unauthorized`.
#[derive(Debug, Clone, Copy)]
pub struct ServerKey(pub ServerCaller);

impl FromRequest for ServerKey {
    type Error = Error;
    type Future = std::future::Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        std::future::ready(
            api_of(req)
                .and_then(|api| Ok(Self(api.authenticate_server(&ActixHeaders(req.headers()))?))),
        )
    }
}

/// The client address of a request, for the per-client send limit of the
/// code route: the socket's peer (`HttpRequest::peer_addr`), or, when the
/// peer is one of the [`Api`]'s [`TrustedProxies`], the client its
/// `X-Forwarded-For` names (see [`referral_http::client`]). `None` when
/// actix knows no peer (a Unix socket): the code route then applies no
/// per-client limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client(pub Option<ClientAddress>);

impl Client {
    /// The client of `req` by `api`'s rule.
    #[must_use]
    pub fn of(api: &Api, req: &HttpRequest) -> Self {
        let peer = req.peer_addr().map(|addr| addr.ip());
        let forwarded_for = req
            .headers()
            .get_all(referral_http::X_FORWARDED_FOR)
            .map(HeaderValue::as_bytes);
        Self(api.client_address(peer, forwarded_for))
    }
}

impl FromRequest for Client {
    type Error = Error;
    type Future = std::future::Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        std::future::ready(api_of(req).map(|api| Self::of(&api, req)))
    }
}

/// Reads a JSON object body under the [`Api`]'s [`Limits`]: 415 unless it
/// is declared JSON, 413 past the body limit, 400 `invalid_json` or
/// `invalid_body` (see [`referral_http::rules`]).
///
/// # Errors
/// Those answers.
pub async fn read_json<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<T, Error> {
    let limits = *api_of(req)?.limits();
    let headers = req.headers();
    limits.check_json_request(
        headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes),
        headers
            .get(header::CONTENT_LENGTH)
            .map(HeaderValue::as_bytes),
    )?;
    let bytes = match payload.to_bytes_limited(limits.max_body_bytes).await {
        Err(_exceeded) => return Err(limits.payload_too_large().into()),
        Ok(Err(e)) => return Err(ApiError::body_unreadable(e).into()),
        Ok(Ok(bytes)) => bytes,
    };
    Ok(referral_http::parse_json_body(&bytes)?)
}

/// The raw query string, if any.
pub(crate) fn query(req: &HttpRequest) -> Option<&str> {
    Some(req.query_string()).filter(|q| !q.is_empty())
}

async fn request_code(
    api: web::Data<Api>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<Answer, Error> {
    let client = Client::of(&api, &req);
    let body: CodeRequest = read_json(&req, body).await?;
    Ok(Answer(handlers::request_code(&api, client.0, body).await?))
}

async fn verify(
    api: web::Data<Api>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<Answer, Error> {
    let body: VerifyRequest = read_json(&req, body).await?;
    Ok(Answer(handlers::verify(&api, body).await?))
}

async fn profile(api: web::Data<Api>, AuthUser(user): AuthUser) -> Result<Answer, Error> {
    Ok(Answer(handlers::profile(&api, user).await?))
}

/// The user first, then the body: a caller without credentials learns
/// nothing from the body.
async fn activate_invite(
    api: web::Data<Api>,
    req: HttpRequest,
    AuthUser(user): AuthUser,
    body: web::Payload,
) -> Result<Answer, Error> {
    let body: InviteRequest = read_json(&req, body).await?;
    Ok(Answer(handlers::activate_invite(&api, user, body).await?))
}

async fn referrals(
    api: web::Data<Api>,
    req: HttpRequest,
    AuthUser(user): AuthUser,
) -> Result<Answer, Error> {
    Ok(Answer(handlers::referrals(&api, user, query(&req)).await?))
}

async fn rewards(
    api: web::Data<Api>,
    req: HttpRequest,
    AuthUser(user): AuthUser,
) -> Result<Answer, Error> {
    Ok(Answer(handlers::rewards(&api, user, query(&req)).await?))
}

/// The key first, then the body (as for the user routes).
async fn record_conversion(
    api: web::Data<Api>,
    req: HttpRequest,
    ServerKey(caller): ServerKey,
    body: web::Payload,
) -> Result<Answer, Error> {
    let body: ConversionRequest = read_json(&req, body).await?;
    Ok(Answer(
        handlers::record_conversion(&api, caller, body).await?,
    ))
}

async fn reverse_conversion(
    api: web::Data<Api>,
    req: HttpRequest,
    ServerKey(caller): ServerKey,
    external_id: web::Path<String>,
    body: web::Payload,
) -> Result<Answer, Error> {
    let body: ReversalRequest = read_json(&req, body).await?;
    Ok(Answer(
        handlers::reverse_conversion(&api, caller, &external_id, body).await?,
    ))
}

async fn mark_reward_paid(
    api: web::Data<Api>,
    req: HttpRequest,
    ServerKey(caller): ServerKey,
    id: web::Path<String>,
    body: web::Payload,
) -> Result<Answer, Error> {
    let body: PaidRequest = read_json(&req, body).await?;
    Ok(Answer(
        handlers::mark_reward_paid(&api, caller, &id, body).await?,
    ))
}

async fn dev_sms(api: web::Data<Api>, req: HttpRequest) -> Result<Answer, Error> {
    Ok(Answer(handlers::dev_sms(&api, query(&req))?))
}

async fn health(api: web::Data<Api>) -> Answer {
    Answer(handlers::health(&api).await)
}

async fn openapi_json(api: web::Data<Api>) -> Answer {
    Answer(handlers::openapi_json(&api))
}

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
