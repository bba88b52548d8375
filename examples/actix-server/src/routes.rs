//! The routes of API.md as actix-web glue over [`Api`]: pull the raw inputs out of the
//! request, call one `Api` method, write its DTO or its [`ApiError`].

use std::future::Future;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{Error, HttpRequest, HttpResponse, Resource, Route, guard, web};
use referral_server_common::assets::{self, Asset};
use referral_server_common::{Api, ApiError, MAX_BODY_BYTES, MAX_HEADER_BYTES};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// `application/json`, the type of every API answer.
const JSON: &str = "application/json";

/// Registers every route of API.md, the web page and the docs.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/auth/code", "POST").route(web::post().to(request_code)))
        .service(resource("/api/auth/verify", "POST").route(web::post().to(verify)))
        .service(resource("/api/profile", "GET, HEAD").route(get().to(profile)))
        .service(resource("/api/profile/invite", "POST").route(web::post().to(activate_invite)))
        .service(resource("/api/profile/referrals", "GET, HEAD").route(get().to(referrals)))
        .service(resource("/api/dev/sms", "GET, HEAD").route(get().to(dev_sms)))
        .service(resource("/api/openapi.json", "GET, HEAD").route(get().to(openapi)))
        .service(resource("/health", "GET, HEAD").route(get().to(health)))
        .service(resource("/", "GET, HEAD").route(get().to(index_page)))
        .service(resource("/docs", "GET, HEAD").route(get().to(docs_page)))
        .service(resource("/docs/{file}", "GET, HEAD").route(get().to(docs_asset)));
}

/// A route whose other methods answer 405 with `Allow: allow`.
fn resource(path: &str, allow: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move || async move {
        let mut response = error_response(&ApiError::method_not_allowed());
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        response
    }))
}

/// GET, and HEAD like GET (actix sends no body for HEAD).
fn get() -> Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// The answer for an unknown route: 404 `not_found`.
pub(crate) async fn not_found() -> HttpResponse {
    error_response(&ApiError::not_found())
}

/// Wraps every request: a request running past `timeout` answers 503 `unavailable`, and
/// any error answer actix made on its own gets the JSON envelope. (Bodies are limited
/// where they are read: [`read_json`].)
pub(crate) fn guard<S, B>(
    req: ServiceRequest,
    srv: &S,
    timeout: Duration,
) -> impl Future<Output = Result<ServiceResponse, Error>> + use<S, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    let method = req.method().clone();
    let path = req.path().to_owned();
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    // Headers past the limit: 431, the handler never runs.
    let call = (header_bytes <= MAX_HEADER_BYTES).then(|| srv.call(req));
    async move {
        let Some(call) = call else {
            return Err(ErrorAnswer(ApiError::for_status(431)).into());
        };
        match actix_web::rt::time::timeout(timeout, call).await {
            Ok(Ok(response)) => {
                let (request, response) = response.into_parts();
                let response = enveloped(response.map_into_boxed_body());
                tracing::debug!(%method, path, status = response.status().as_u16(), "answered");
                Ok(ServiceResponse::new(request, response))
            }
            // Errors without a request to answer with: actix answers them with
            // `ErrorAnswer::error_response`, the envelope.
            Ok(Err(e)) => {
                let status = e.as_response_error().status_code().as_u16();
                tracing::debug!(%method, path, status, error = %e, "failed");
                Err(ErrorAnswer(ApiError::for_status(status)).into())
            }
            Err(_elapsed) => {
                tracing::warn!(%method, path, ?timeout, "request timed out");
                Err(ErrorAnswer(ApiError::timed_out()).into())
            }
        }
    }
}

/// An [`ApiError`] as an actix error, answered with the envelope.
#[derive(Debug)]
struct ErrorAnswer(ApiError);

impl std::fmt::Display for ErrorAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl actix_web::ResponseError for ErrorAnswer {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        error_response(&self.0)
    }
}

/// An error answer without a JSON body (actix's own) replaced by the envelope for its
/// status; every other answer as it is.
fn enveloped(response: HttpResponse) -> HttpResponse {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(JSON));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let mut replaced = error_response(&ApiError::for_status(status.as_u16()));
    if let Some(allow) = response.headers().get(header::ALLOW) {
        replaced.headers_mut().insert(header::ALLOW, allow.clone());
    }
    replaced
}

/// An [`ApiError`] as an answer: its status, its envelope, and `Retry-After` on 429.
fn error_response(error: &ApiError) -> HttpResponse {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    response.content_type(JSON);
    if let Some(secs) = error.retry_after {
        response.insert_header((header::RETRY_AFTER, secs.to_string()));
    }
    response.body(error.body_json())
}

/// A DTO with `status`, or the error.
fn respond<T: Serialize>(status: StatusCode, result: Result<T, ApiError>) -> HttpResponse {
    match result {
        Ok(body) => match serde_json::to_vec(&body) {
            Ok(json) => HttpResponse::build(status).content_type(JSON).body(json),
            Err(e) => {
                tracing::error!(error = %e, "cannot serialise an answer");
                error_response(&ApiError::internal())
            }
        },
        Err(error) => error_response(&error),
    }
}

/// The JSON body of a request: 415 unless it is declared JSON, 413 past 16 KiB, 400
/// `invalid_json` when it does not parse, 400 `invalid_body` when it does not fit.
async fn read_json<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<T, ApiError> {
    if !is_json(req) {
        return Err(ApiError::unsupported_media_type());
    }
    // A declared length over the limit is refused before reading anything.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(ApiError::payload_too_large());
    }
    let bytes = match payload.to_bytes_limited(MAX_BODY_BYTES).await {
        Err(_exceeded) => return Err(ApiError::payload_too_large()),
        Ok(Err(e)) => {
            return Err(ApiError::new(
                400,
                "bad_request",
                format!("the body could not be read: {e}"),
            ));
        }
        Ok(Ok(bytes)) => bytes,
    };
    referral_server_common::parse_json_body(&bytes)
}

/// Whether the request declares a JSON body (`application/json` or `application/*+json`).
fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(referral_server_common::is_json_content_type)
}

/// The `Authorization` header, if it is text.
fn authorization(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// The raw query string, if any.
fn query(req: &HttpRequest) -> Option<&str> {
    Some(req.query_string()).filter(|q| !q.is_empty())
}

async fn request_code(api: web::Data<Api>, req: HttpRequest, body: web::Payload) -> HttpResponse {
    match read_json(&req, body).await {
        Ok(body) => respond(StatusCode::ACCEPTED, api.request_code(body).await),
        Err(e) => error_response(&e),
    }
}

async fn verify(api: web::Data<Api>, req: HttpRequest, body: web::Payload) -> HttpResponse {
    match read_json(&req, body).await {
        Ok(body) => respond(StatusCode::OK, api.verify(body).await),
        Err(e) => error_response(&e),
    }
}

async fn profile(api: web::Data<Api>, req: HttpRequest) -> HttpResponse {
    respond(StatusCode::OK, api.profile(authorization(&req)).await)
}

/// Authenticates before reading the body, so a caller without a token learns nothing.
async fn activate_invite(
    api: web::Data<Api>,
    req: HttpRequest,
    body: web::Payload,
) -> HttpResponse {
    let user = match api.authenticate(authorization(&req)) {
        Ok(user) => user,
        Err(e) => return error_response(&e),
    };
    match read_json(&req, body).await {
        Ok(body) => respond(StatusCode::OK, api.activate_invite(user, body).await),
        Err(e) => error_response(&e),
    }
}

async fn referrals(api: web::Data<Api>, req: HttpRequest) -> HttpResponse {
    respond(
        StatusCode::OK,
        api.referrals(authorization(&req), query(&req)).await,
    )
}

async fn dev_sms(api: web::Data<Api>, req: HttpRequest) -> HttpResponse {
    respond(StatusCode::OK, api.dev_sms(query(&req)))
}

async fn health(api: web::Data<Api>) -> HttpResponse {
    let (status, body) = api.health().await;
    respond(
        StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
        Ok(body),
    )
}

async fn openapi(api: web::Data<Api>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(JSON)
        .body(api.openapi_json().to_owned())
}

/// A static page or file.
fn asset(asset: Asset) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(asset.content_type)
        .body(asset.body)
}

async fn index_page() -> HttpResponse {
    asset(assets::index_page())
}

async fn docs_page() -> HttpResponse {
    asset(assets::docs_page())
}

async fn docs_asset(req: HttpRequest) -> HttpResponse {
    match req.match_info().get("file").and_then(assets::docs_asset) {
        Some(file) => {
            let mut response = asset(file);
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static(assets::DOCS_ASSET_CACHE_CONTROL),
            );
            response
        }
        None => error_response(&ApiError::not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        for (value, json) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/problem+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("", false),
        ] {
            let req = actix_web::test::TestRequest::default()
                .insert_header((header::CONTENT_TYPE, value))
                .to_http_request();
            assert_eq!(is_json(&req), json, "{value}");
        }
        let req = actix_web::test::TestRequest::default().to_http_request();
        assert!(!is_json(&req));
    }

    #[test]
    fn framework_errors_get_the_envelope() {
        let response = enveloped(HttpResponse::MethodNotAllowed().finish());
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            response
                .headers()
                .get(header::CONTENT_TYPE)
                .map(HeaderValue::as_bytes),
            Some(JSON.as_bytes())
        );
        let ok = enveloped(HttpResponse::Ok().body("x"));
        assert_eq!(ok.status(), StatusCode::OK);
    }

    #[test]
    fn too_many_requests_carries_retry_after() {
        let response = error_response(&ApiError::too_many_requests(
            "slow down",
            Duration::from_millis(1500),
        ));
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
