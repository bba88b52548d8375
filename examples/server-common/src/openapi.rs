//! The OpenAPI 3.1 document of API.md, built from the code with utoipa.
//!
//! The functions below exist only to carry each route's description; the
//! servers' handlers call [`crate::Api`] and answer with the same DTOs.
#![allow(dead_code)] // the documented functions are never called

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::dto::{
    CodeRequest, CodeSentResponse, DevSms, ErrorBody, ErrorDetail, Health, InviteRequest,
    LoginResponse, ProfileResponse, ReferralItem, ReferralsPage, VerifyRequest,
};

/// The OpenAPI document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "referral",
        description = "Phone login with one-time SMS codes and a one-invite referral program.\n\n\
            Every error answer has the body `{\"error\": {\"code\", \"message\"}}`; 429 answers carry \
            `Retry-After` (whole seconds). Any route may answer 503 `unavailable` when the store \
            cannot be reached, 413 `payload_too_large` for bodies over 16 KiB, 415 \
            `unsupported_media_type` for a body that is not `application/json`, 400 `invalid_json` \
            / `invalid_body` for malformed JSON, a body that is not an object, or a missing or \
            mistyped field, 431 `request_header_fields_too_large` for headers over 32 KiB, \
            404 `not_found` \
            for an unknown route and 405 `method_not_allowed` for a wrong method.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        request_code, verify, profile, activate_invite, referrals, dev_sms, health, openapi_json
    ),
    components(schemas(
        CodeRequest, CodeSentResponse, VerifyRequest, LoginResponse, ProfileResponse,
        InviteRequest, ReferralItem, ReferralsPage, DevSms, Health, ErrorBody, ErrorDetail
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Log in by phone with a one-time code"),
        (name = "profile", description = "The caller's profile and referrals (Bearer token)"),
        (name = "dev", description = "Development helpers"),
        (name = "ops", description = "Health and documentation")
    )
)]
pub struct ApiDoc;

/// The document as JSON.
#[must_use]
pub fn json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".to_owned())
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Send a login code by (simulated) SMS.
///
/// The same answer whether or not the phone belongs to a user. The answer
/// waits for the simulated SMS delay. A new code replaces the phone's
/// previous one.
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
    )
)]
fn request_code() {}

/// Log in with the code: the first success creates the user.
///
/// A code works once. Each wrong guess answers 401 and counts; once a code
/// has taken `REFERRAL_OTP_MAX_ATTEMPTS` wrong guesses it is burned (429).
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
    )
)]
fn verify() {}

/// The caller's profile.
#[utoipa::path(
    get, path = "/api/profile", tag = "profile",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The profile", body = ProfileResponse),
        (status = 401, description = "`unauthorized`: missing, malformed, expired or forged token", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
    )
)]
fn profile() {}

/// Activate another user's invite code (once in a life).
///
/// Matching ignores case and surrounding spaces. Sending the code already
/// activated again is a safe retry (200).
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
    )
)]
fn activate_invite() {}

/// All the caller's referrals, oldest activation first, page by page.
#[utoipa::path(
    get, path = "/api/profile/referrals", tag = "profile",
    security(("bearer" = [])),
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 500 (default 50)", minimum = 1, maximum = 500),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page", body = ReferralsPage),
        (status = 400, description = "`invalid_limit`, `invalid_cursor`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
    )
)]
fn referrals() {}

/// The latest simulated SMS sent to a phone (while the dev outbox is on).
///
/// A `+` in the query is read as `+`, so `?phone=+79991234567` works as written.
#[utoipa::path(
    get, path = "/api/dev/sms", tag = "dev",
    params(("phone" = String, Query, description = "The phone", example = "+79991234567")),
    responses(
        (status = 200, description = "The latest code sent", body = DevSms),
        (status = 400, description = "`invalid_phone`", body = ErrorBody),
        (status = 404, description = "`not_found`: nothing was sent, or the outbox is off", body = ErrorBody),
    )
)]
fn dev_sms() {}

/// Whether the store answers.
#[utoipa::path(
    get, path = "/health", tag = "ops",
    responses(
        (status = 200, description = "`{\"status\": \"ok\"}`", body = Health),
        (status = 503, description = "`{\"status\": \"unavailable\"}`", body = Health),
    )
)]
fn health() {}

/// This document.
#[utoipa::path(
    get, path = "/api/openapi.json", tag = "ops",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"))
)]
fn openapi_json() {}

#[cfg(test)]
mod tests {
    #[test]
    fn is_openapi_3_1_with_every_route() {
        let doc: serde_json::Value = serde_json::from_str(&super::json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        for path in [
            "/api/auth/code",
            "/api/auth/verify",
            "/api/profile",
            "/api/profile/invite",
            "/api/profile/referrals",
            "/api/dev/sms",
            "/health",
            "/api/openapi.json",
        ] {
            assert!(doc["paths"][path].is_object(), "{path}");
        }
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }
}
