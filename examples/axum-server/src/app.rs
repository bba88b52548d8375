//! The axum glue: routes, extractors, and turning every answer (the
//! framework's own rejections included) into API.md's JSON.

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use referral_server_common::assets::{self, Asset};
use referral_server_common::dto::{CodeRequest, InviteRequest, VerifyRequest};
use referral_server_common::{Api, ApiError, MAX_BODY_BYTES, MAX_HEADER_BYTES};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

/// Every route of API.md, with the body limit, the request timeout, the
/// JSON error envelope and request logs.
pub(crate) fn router(api: Api, request_timeout: Duration) -> Router {
    Router::new()
        .route("/api/auth/code", post(request_code))
        .route("/api/auth/verify", post(verify))
        .route("/api/profile", get(profile))
        .route("/api/profile/invite", post(activate_invite))
        .route("/api/profile/referrals", get(referrals))
        .route("/api/dev/sms", get(dev_sms))
        .route("/api/openapi.json", get(openapi))
        .route("/health", get(health))
        .route("/", get(|| async { asset(assets::index_page(), None) }))
        .route("/docs", get(|| async { asset(assets::docs_page(), None) }))
        .route("/docs/{file}", get(docs_asset))
        .fallback(|| async { Error(ApiError::not_found()) })
        .with_state(api)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            request_timeout,
        ))
        .layer(axum::middleware::map_request(limit_headers))
        .layer(axum::middleware::map_response(envelope))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
}

/// An [`ApiError`] as an axum response.
pub(crate) struct Error(ApiError);

impl From<ApiError> for Error {
    fn from(error: ApiError) -> Self {
        Self(error)
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            e.body_json(),
        )
            .into_response();
        if let Some(secs) = e.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A JSON answer with a status.
fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(_) => Error(ApiError::internal()).into_response(),
    }
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

/// A JSON body whose every rejection is an [`ApiError`]: 400 `invalid_json`
/// or `invalid_body`, 415, 413.
pub(crate) struct Body<T>(T);

impl<S, T> FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(referral_server_common::is_json_content_type);
        if !is_json {
            return Err(Error(ApiError::unsupported_media_type()));
        }
        // Over the body limit: 413.
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| Error(ApiError::for_status(rejection.status().as_u16())))?;
        referral_server_common::parse_json_body(&bytes)
            .map(Self)
            .map_err(Error)
    }
}

/// Gives every bare error answer (axum's 405, a timeout, …) the JSON envelope.
async fn envelope(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return response;
    }
    let mut enveloped = Error(ApiError::for_status(status.as_u16())).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(value) = response.headers().get(&name) {
            enveloped.headers_mut().insert(name, value.clone());
        }
    }
    enveloped
}

/// Refuses requests whose headers exceed [`MAX_HEADER_BYTES`] with 431, as
/// actix-web does (hyper alone would take up to 400 KiB).
async fn limit_headers(request: Request) -> Result<Request, Error> {
    let bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if bytes > MAX_HEADER_BYTES {
        return Err(Error(ApiError::for_status(431)));
    }
    Ok(request)
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

async fn request_code(
    State(api): State<Api>,
    body: Result<Body<CodeRequest>, Error>,
) -> Result<Response, Error> {
    let Body(body) = body?;
    let sent = api.request_code(body).await?;
    Ok(json(StatusCode::ACCEPTED, &sent))
}

async fn verify(
    State(api): State<Api>,
    body: Result<Body<VerifyRequest>, Error>,
) -> Result<Response, Error> {
    let Body(body) = body?;
    let login = api.verify(body).await?;
    Ok(json(StatusCode::OK, &login))
}

async fn profile(State(api): State<Api>, headers: HeaderMap) -> Result<Response, Error> {
    let profile = api.profile(authorization(&headers)).await?;
    Ok(json(StatusCode::OK, &profile))
}

async fn activate_invite(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Result<Body<InviteRequest>, Error>,
) -> Result<Response, Error> {
    // The token first: a caller without one learns nothing from the body.
    let user = api.authenticate(authorization(&headers))?;
    let Body(body) = body?;
    let profile = api.activate_invite(user, body).await?;
    Ok(json(StatusCode::OK, &profile))
}

async fn referrals(
    State(api): State<Api>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, Error> {
    let page = api
        .referrals(authorization(&headers), query.as_deref())
        .await?;
    Ok(json(StatusCode::OK, &page))
}

async fn dev_sms(State(api): State<Api>, RawQuery(query): RawQuery) -> Result<Response, Error> {
    let sms = api.dev_sms(query.as_deref())?;
    Ok(json(StatusCode::OK, &sms))
}

async fn health(State(api): State<Api>) -> Response {
    let (status, body) = api.health().await;
    json(
        StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
        &body,
    )
}

async fn openapi(State(api): State<Api>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        api.openapi_json().to_owned(),
    )
        .into_response()
}

async fn docs_asset(Path(file): Path<String>) -> Response {
    match assets::docs_asset(&file) {
        Some(found) => asset(found, Some(assets::DOCS_ASSET_CACHE_CONTROL)),
        None => Error(ApiError::not_found()).into_response(),
    }
}
