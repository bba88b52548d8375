//! The OpenAPI 3.1 document of API.md, built from the code with utoipa.
//!
//! The paths come from the annotations of the route handlers in
//! [`crate::handlers`], the functions every framework crate calls; the
//! schemas from the DTOs in [`crate::dto`].

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::dto::{
    CodeRequest, CodeSentResponse, DevSms, ErrorBody, ErrorDetail, Health, InviteRequest,
    LoginResponse, ProfileResponse, ReferralItem, ReferralsPage, VerifyRequest,
};
use crate::handlers;

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
        handlers::request_code, handlers::verify, handlers::profile, handlers::activate_invite,
        handlers::referrals, handlers::dev_sms, handlers::health, handlers::openapi_json
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

/// The document.
#[must_use]
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

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
