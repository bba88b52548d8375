//! The routes' work, framework-neutral: one function per route, annotated
//! with its OpenAPI description (the document in [`crate::openapi`] is built
//! from these annotations).
//!
//! A framework crate's handler pulls the inputs out of its request (the
//! [`Api`] from its state, the user from its extractor, a body through
//! [`crate::rules`], the raw query string), calls one function here and
//! writes the [`Reply`] (or the [`ApiError`]) as its response.
//!
//! Paths are relative to where the host mounts the routes.

use std::sync::Arc;

use referral_core::user::PageLimit;
use referral_core::{InviteCode, PhoneNumber, ReferralCursor, UserId};
use serde::Serialize;

use crate::api::Api;
use crate::dto::{
    CodeRequest, CodeSentResponse, DevSms, ErrorBody, Health, InviteRequest, LoginResponse,
    ProfileResponse, ReferralItem, ReferralsPage, VerifyRequest, timestamp,
};
use crate::error::ApiError;
use crate::query::Query;

/// `application/json`: the `Content-Type` of every [`Reply`] and error answer.
pub const JSON: &str = "application/json";

/// An answer, framework-neutral: a status, extra headers and a JSON body
/// (its `Content-Type` is always [`JSON`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// Headers besides `Content-Type`, `(name, value)`.
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
}

impl Reply {
    /// `body` serialised as JSON with `status` (500 `internal` if it cannot
    /// be serialised, which the DTOs of this crate never fail).
    #[must_use]
    pub fn json<T: Serialize>(status: u16, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(body) => Self {
                status,
                headers: Vec::new(),
                body,
            },
            Err(e) => {
                tracing::error!(error = %e, "an answer could not be serialised");
                ApiError::internal().into()
            }
        }
    }

    /// Already-serialised JSON with `status`.
    #[must_use]
    pub fn raw_json(status: u16, body: Vec<u8>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body,
        }
    }

    /// The same answer with one more header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// The answer of an error: its status, the envelope, `Retry-After` when the
/// error carries one, and `Connection: close` on 413 (the rest of the body
/// is left unread, so the connection cannot serve another request; without
/// the header a client may reuse it and lose its next request).
impl From<ApiError> for Reply {
    fn from(error: ApiError) -> Self {
        let mut reply = Self::raw_json(error.status, error.body_json());
        if let Some(secs) = error.retry_after {
            reply = reply.with_header("retry-after", secs.to_string());
        }
        if error.status == 413 {
            reply = reply.with_header("connection", "close");
        }
        reply
    }
}

/// Send a login code by SMS.
///
/// The same answer whether or not the phone belongs to a user. The answer
/// waits for the SMS to be sent. A new code replaces the phone's previous
/// one. The send runs in its own task: a client that hangs up (or a request
/// timeout) does not cut it off half-way, so a code that was issued is also
/// sent (or revoked when the sender fails).
#[utoipa::path(
    post, path = "/api/auth/code", tag = "auth",
    request_body = CodeRequest,
    responses(
        (status = 202, description = "The code was sent", body = CodeSentResponse),
        (status = 400, description = "`invalid_phone`, `invalid_json`, `invalid_body`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 429, description = "`too_many_requests`: resend cooldown, hourly cap, or the phone is locked",
            body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "`sms_unavailable`: the sender failed, no usable code is left; `unavailable`: the store is down", body = ErrorBody),
        (status = 431, description = "`request_header_fields_too_large`: headers over the host's limit (the framework crates' header-limit helper)", body = ErrorBody),
    )
)]
pub async fn request_code(api: &Api, body: CodeRequest) -> Result<Reply, ApiError> {
    let phone = api.service().parse_phone(&body.phone)?;
    let service = Arc::clone(api.service());
    let sent = tokio::spawn(async move { service.request_code(&phone).await })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "the code request task failed");
            ApiError::internal()
        })??;
    Ok(Reply::json(
        202,
        &CodeSentResponse {
            phone: sent.phone.to_string(),
            expires_in: sent.expires_in.as_secs(),
            retry_after: sent.retry_after.as_secs(),
        },
    ))
}

/// Log in with the code: the first success creates the user.
///
/// A code works once. Each wrong guess answers 401 and counts; once a code
/// has taken `REFERRAL_OTP_MAX_ATTEMPTS` wrong guesses it is burned (429).
/// What the answer gives the user (a bearer token in the body, a session
/// cookie, …) is up to the host's authenticator.
#[utoipa::path(
    post, path = "/api/auth/verify", tag = "auth",
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 400, description = "`invalid_phone`, `invalid_code` (not the configured number of digits), `invalid_json`, `invalid_body`", body = ErrorBody),
        (status = 401, description = "`otp_invalid` (wrong code, or no live code), `otp_expired`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 429, description = "`too_many_requests`: the code's attempts are spent, or the phone is locked",
            body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "`unavailable`", body = ErrorBody),
        (status = 431, description = "`request_header_fields_too_large`: headers over the host's limit (the framework crates' header-limit helper)", body = ErrorBody),
    )
)]
pub async fn verify(api: &Api, body: VerifyRequest) -> Result<Reply, ApiError> {
    let service = api.service();
    let phone = service.parse_phone(&body.phone)?;
    let code = service.parse_code(&body.code)?;
    let login = service.verify_code(&phone, &code).await?;
    let profile = service.profile(login.user.id).await?;
    let credentials = api.authenticator().log_in(&login.user).await?;
    let bearer = credentials.bearer;
    let body = LoginResponse {
        token_type: bearer.as_ref().map(|_| "Bearer".to_owned()),
        expires_in: bearer.as_ref().map(|b| b.expires_in.as_secs()),
        access_token: bearer.map(|b| b.access_token),
        new_user: login.new_user,
        profile: ProfileResponse::from(&profile),
    };
    let mut reply = Reply::json(200, &body);
    reply.headers.extend(credentials.headers);
    Ok(reply)
}

/// The caller's profile.
#[utoipa::path(
    get, path = "/api/profile", tag = "profile",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The profile", body = ProfileResponse),
        (status = 401, description = "`unauthorized`: missing, malformed, expired or forged token", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
        (status = 431, description = "`request_header_fields_too_large`: headers over the host's limit (the framework crates' header-limit helper)", body = ErrorBody),
    )
)]
pub async fn profile(api: &Api, user: UserId) -> Result<Reply, ApiError> {
    let profile = api.service().profile(user).await?;
    Ok(Reply::json(200, &ProfileResponse::from(&profile)))
}

/// Activate another user's invite code (once in a life).
///
/// Matching ignores case and surrounding spaces. Sending the code already
/// activated again is a safe retry (200). Handlers authenticate `user`
/// before they read the body, so a caller without credentials learns
/// nothing about codes.
#[utoipa::path(
    post, path = "/api/profile/invite", tag = "profile",
    security(("bearer" = [])),
    request_body = InviteRequest,
    responses(
        (status = 200, description = "Activated (or already activated, the same code)", body = ProfileResponse),
        (status = 400, description = "`invalid_invite_code` (not 6 letters and digits), `invalid_json`, `invalid_body`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`invite_code_not_found`", body = ErrorBody),
        (status = 409, description = "`invite_already_activated`: a different code was activated before", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`self_referral` (own code), `referral_cycle` (the owner is referred by the caller, directly or through a chain)", body = ErrorBody),
        (status = 429, description = "`too_many_requests`: too many unknown codes",
            body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "`unavailable`", body = ErrorBody),
        (status = 431, description = "`request_header_fields_too_large`: headers over the host's limit (the framework crates' header-limit helper)", body = ErrorBody),
    )
)]
pub async fn activate_invite(
    api: &Api,
    user: UserId,
    body: InviteRequest,
) -> Result<Reply, ApiError> {
    let code = InviteCode::parse(&body.invite_code)?;
    let activation = api.service().activate_invite(user, &code).await?;
    Ok(Reply::json(
        200,
        &ProfileResponse::from(&activation.profile),
    ))
}

/// All the caller's referrals, oldest activation first, page by page.
///
/// `query` is the raw query string, if any.
#[utoipa::path(
    get, path = "/api/profile/referrals", tag = "profile",
    security(("bearer" = [])),
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 500 (default 50)", minimum = 1, maximum = 500),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page: 32 base64url characters (see `CURSOR_PATTERN`)",
            pattern = "^[A-Zabk-z0-9_-][A-Za-z0-9_-]{31}$", min_length = 32, max_length = 32),
    ),
    responses(
        (status = 200, description = "A page", body = ReferralsPage),
        (status = 400, description = "`invalid_limit`, `invalid_cursor`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
        (status = 431, description = "`request_header_fields_too_large`: headers over the host's limit (the framework crates' header-limit helper)", body = ErrorBody),
    )
)]
pub async fn referrals(api: &Api, user: UserId, query: Option<&str>) -> Result<Reply, ApiError> {
    let query = Query::parse(query.unwrap_or_default());
    let limit = match query.get("limit") {
        None => PageLimit::default(),
        Some(raw) => {
            let n: u64 = raw.trim().parse().map_err(|_| {
                ApiError::new(
                    400,
                    "invalid_limit",
                    "limit must be a whole number from 1 to 500",
                )
            })?;
            PageLimit::new(n)?
        }
    };
    let cursor = match query.get("cursor") {
        None => None,
        Some(raw) => Some(ReferralCursor::parse(raw)?),
    };
    let page = api.service().referrals(user, cursor, limit).await?;
    Ok(Reply::json(
        200,
        &ReferralsPage {
            items: page.items.iter().map(ReferralItem::from).collect(),
            next_cursor: page.next.map(|c| c.to_string()),
        },
    ))
}

/// The latest simulated SMS sent to a phone (while the dev outbox is on).
///
/// A `+` in the query is read as `+`, so `?phone=+79991234567` works as
/// written.
#[utoipa::path(
    get, path = "/api/dev/sms", tag = "dev",
    params(("phone" = String, Query, description = "The phone, as in `POST /api/auth/code` (see `PHONE_PATTERN`)", example = "+79991234567",
        pattern = r"^\+[ ().-]*[1-9](?:[ ().-]*[0-9]){6,14}(?:[ ().-]*[().-])?$", min_length = 8, max_length = 40)),
    responses(
        (status = 200, description = "The latest code sent", body = DevSms),
        (status = 400, description = "`invalid_phone`", body = ErrorBody),
        (status = 404, description = "`not_found`: nothing was sent, or the outbox is off", body = ErrorBody),
        (status = 431, description = "`request_header_fields_too_large`: headers over the host's limit (the framework crates' header-limit helper)", body = ErrorBody),
    )
)]
pub fn dev_sms(api: &Api, query: Option<&str>) -> Result<Reply, ApiError> {
    let outbox = api.dev_outbox().ok_or_else(ApiError::not_found)?;
    let query = Query::parse(query.unwrap_or_default());
    let raw = query.get("phone").unwrap_or_default();
    let phone: PhoneNumber = api.service().parse_phone(raw)?;
    let sent = outbox
        .latest(&phone)
        .ok_or_else(|| ApiError::new(404, "not_found", "no code was sent to this phone"))?;
    Ok(Reply::json(
        200,
        &DevSms {
            phone: sent.to.to_string(),
            code: sent.code.expose().to_owned(),
            sent_at: timestamp(sent.sent_at),
        },
    ))
}

/// Whether the store answers.
#[utoipa::path(
    get, path = "/health", tag = "ops",
    responses(
        (status = 200, description = "`{\"status\": \"ok\"}`", body = Health),
        (status = 503, description = "`{\"status\": \"unavailable\"}`", body = Health),
        (status = 431, description = "`request_header_fields_too_large`: headers over the host's limit (the framework crates' header-limit helper)", body = ErrorBody),
    )
)]
pub async fn health(api: &Api) -> Reply {
    let healthy = matches!(
        tokio::time::timeout(api.health_timeout(), api.service().health()).await,
        Ok(Ok(()))
    );
    let (status, text) = if healthy {
        (200, "ok")
    } else {
        (503, "unavailable")
    };
    Reply::json(
        status,
        &Health {
            status: text.to_owned(),
        },
    )
}

/// This document.
#[utoipa::path(
    get, path = "/api/openapi.json", tag = "ops",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"),
        (status = 431, description = "`request_header_fields_too_large`: headers over the host's limit (the framework crates' header-limit helper)", body = ErrorBody),
    )
)]
pub fn openapi_json(api: &Api) -> Reply {
    Reply::raw_json(200, api.openapi_json().as_bytes().to_vec())
}
