//! The OpenAPI 3.1 document of API.md, built from the code with utoipa.
//!
//! The paths come from the annotations of the route handlers in
//! [`crate::handlers`], the functions every framework crate calls; the
//! schemas from the DTOs in [`crate::dto`].

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::admin;
use crate::admin::dto::{
    BlockDto, BlockRequest, DayDto, Leaderboard, LeaderboardItem, MoneyDto, ReferrerDto,
    RewardTotalsDto, StatsDto, TotalsDto, UnblockRequest, UserDetailDto, UserSummaryDto, UsersPage,
    VoidRequest,
};
use crate::dto::{
    BalanceDto, CodeRequest, CodeSentResponse, ConversionAnswer, ConversionDto, ConversionRequest,
    DevSms, ErrorBody, ErrorDetail, Health, InviteRequest, LoginResponse, PaidRequest,
    ProfileResponse, ReferralItem, ReferralsPage, ReversalRequest, RewardDto, RewardsPage,
    VerifyRequest,
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
        handlers::referrals, handlers::rewards, handlers::record_conversion,
        handlers::reverse_conversion, handlers::mark_reward_paid, handlers::dev_sms,
        handlers::health, handlers::openapi_json, admin::search_users, admin::user_detail,
        admin::user_rewards,
        admin::block_user, admin::unblock_user, admin::void_reward, admin::stats,
        admin::leaderboard, admin::export_referrals, admin::export_rewards
    ),
    components(schemas(
        CodeRequest, CodeSentResponse, VerifyRequest, LoginResponse, ProfileResponse,
        InviteRequest, ReferralItem, ReferralsPage, DevSms, Health, ErrorBody, ErrorDetail,
        BalanceDto, ConversionRequest, ReversalRequest, PaidRequest, ConversionDto, RewardDto,
        ConversionAnswer, RewardsPage, UserSummaryDto, UsersPage, ReferrerDto, BlockDto,
        UserDetailDto, BlockRequest, UnblockRequest, VoidRequest, MoneyDto, LeaderboardItem,
        Leaderboard, RewardTotalsDto, TotalsDto, DayDto, StatsDto
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Log in by phone with a one-time code"),
        (name = "profile", description = "The caller's profile and referrals (Bearer token)"),
        (name = "server", description = "The host's backend reports conversions and payouts (API key: `Authorization: Bearer <key>` of `REFERRAL_API_KEYS`)"),
        (name = "admin", description = "Operators: search, block, void, statistics, exports (Bearer token of a phone in `REFERRAL_ADMIN_PHONES`; others: 403 `forbidden`)"),
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

/// The document for a service configured with `config`: the login code's
/// schema states the configured number of digits, up to the step-up length
/// (a stepped-up phone's codes are longer); the static document says 4 to
/// 8, any length a service may be configured with. `code_length` in the
/// code route's answer is one of the two.
#[must_use]
pub fn json_for(config: &referral_core::Config) -> String {
    let Ok(mut doc) = serde_json::to_value(document()) else {
        return json();
    };
    let (min, max) = (config.otp.length.get(), config.otp.step_up_length.get());
    let schemas = &mut doc["components"]["schemas"];
    let code = &mut schemas["VerifyRequest"]["properties"]["code"];
    if code.is_object() {
        code["pattern"] = if min == max {
            format!("^[0-9]{{{min}}}$")
        } else {
            format!("^[0-9]{{{min},{max}}}$")
        }
        .into();
        code["minLength"] = min.into();
        code["maxLength"] = max.into();
    }
    let length = &mut schemas["CodeSentResponse"]["properties"]["code_length"];
    if length.is_object() {
        length["minimum"] = min.into();
        length["maximum"] = max.into();
    }
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| json())
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
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("One of the server's API keys (REFERRAL_API_KEYS)"))
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
            "/api/profile/rewards",
            "/api/server/conversions",
            "/api/server/conversions/{external_id}/reversals",
            "/api/server/rewards/{id}/paid",
            "/api/dev/sms",
            "/health",
            "/api/openapi.json",
            "/api/admin/users",
            "/api/admin/users/{id}",
            "/api/admin/users/{id}/rewards",
            "/api/admin/users/{id}/block",
            "/api/admin/users/{id}/unblock",
            "/api/admin/rewards/{id}/void",
            "/api/admin/stats",
            "/api/admin/leaderboard",
            "/api/admin/export/referrals.csv",
            "/api/admin/export/rewards.csv",
        ] {
            assert!(doc["paths"][path].is_object(), "{path}");
        }
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
        assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
    }

    /// The patterns of the document are the ones the code names, and they
    /// describe what the parsers of referral-core accept.
    /// Every route sits behind the header-limit helper, so every operation
    /// declares its 431 answer.
    #[test]
    fn every_operation_declares_the_header_limit_answer() {
        let doc: serde_json::Value = serde_json::from_str(&super::json()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                assert!(
                    op["responses"].get("431").is_some(),
                    "{method} {path} does not declare 431"
                );
            }
        }
    }

    /// A blocked user gets 403 `user_blocked` on verify and on every route
    /// a user's token opens (schemathesis found the answer undeclared once
    /// its operator token blocked its own user).
    #[test]
    fn every_user_operation_declares_the_blocked_answer() {
        let doc: serde_json::Value = serde_json::from_str(&super::json()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let mut checked = 0;
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                let bearer = op["security"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
                if bearer || path == "/api/auth/verify" {
                    checked += 1;
                    assert!(
                        op["responses"].get("403").is_some(),
                        "{method} {path} does not declare 403"
                    );
                }
            }
        }
        assert!(checked >= 5, "only {checked} operations checked");
    }

    #[test]
    fn patterns_match_the_parsers() {
        use referral_core::{InviteCode, PhoneNumber, ReferralCursor, RewardCursor};
        let doc: serde_json::Value = serde_json::from_str(&super::json()).unwrap();
        let schemas = &doc["components"]["schemas"];
        for s in ["CodeRequest", "VerifyRequest"] {
            assert_eq!(
                schemas[s]["properties"]["phone"]["pattern"],
                crate::dto::PHONE_PATTERN,
                "{s}"
            );
        }
        let params = |path: &str| doc["paths"][path]["get"]["parameters"].clone();
        let sms = params("/api/dev/sms");
        assert_eq!(sms[0]["schema"]["pattern"], crate::dto::PHONE_PATTERN);
        let page = params("/api/profile/referrals");
        assert_eq!(page[1]["schema"]["pattern"], crate::dto::CURSOR_PATTERN);
        assert_eq!(page[0]["schema"]["minimum"], 1);
        assert_eq!(page[0]["schema"]["maximum"], 500);
        let rewards = params("/api/profile/rewards");
        assert_eq!(rewards[1]["schema"]["pattern"], crate::dto::CURSOR_PATTERN);
        assert_eq!(rewards[0]["schema"]["minimum"], 1);
        assert_eq!(rewards[0]["schema"]["maximum"], 500);
        let user_rewards = params("/api/admin/users/{id}/rewards");
        assert_eq!(user_rewards[0]["name"], "id");
        assert_eq!(
            user_rewards[2]["schema"]["pattern"],
            crate::dto::CURSOR_PATTERN
        );
        assert_eq!(user_rewards[1]["schema"]["minimum"], 1);
        assert_eq!(user_rewards[1]["schema"]["maximum"], 500);

        let phone = regex_lite::Regex::new(crate::dto::PHONE_PATTERN).unwrap();
        for ok in [
            "+79991234567",
            "+7 (999) 123-45-67",
            "+1234567",
            "+123456789012345",
            "+7.999.123.45.67",
            "+(7) 999 1234567-",
        ] {
            assert!(phone.is_match(ok), "{ok}");
            assert!(PhoneNumber::parse(ok, None).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "+",
            "+123456",
            "+1234567890123456",
            "+0999123456",
            "79991234567",
            "+7 999 123 45 67 ",
            "+7ó9991234567",
        ] {
            assert!(!phone.is_match(bad), "{bad}");
        }
        let long = format!("+7{}9991234567", " ".repeat(40));
        assert!(phone.is_match(&long) && PhoneNumber::parse(&long, None).is_err());

        let cursor = regex_lite::Regex::new(crate::dto::CURSOR_PATTERN).unwrap();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for first in alphabet.chars() {
            for rest in ["A", "_", "z"] {
                let c = format!("{first}{}", rest.repeat(31));
                if cursor.is_match(&c) {
                    assert!(ReferralCursor::parse(&c).is_ok(), "{c}");
                    assert!(RewardCursor::parse(&c).is_ok(), "{c}");
                }
            }
        }
        assert!(!cursor.is_match(""));

        let invite = regex_lite::Regex::new(
            schemas["InviteRequest"]["properties"]["invite_code"]["pattern"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert!(invite.is_match("a7kq2M") && InviteCode::parse("a7kq2M").is_ok());
        assert!(!invite.is_match("A7KQ2") && !invite.is_match("A7KQ2MM"));
    }

    #[test]
    fn the_served_document_states_the_code_length() {
        let mut config = referral_core::Config::default();
        config.otp.length = referral_core::OtpLength::new(6).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&super::json_for(&config)).unwrap();
        let schemas = &doc["components"]["schemas"];
        let code = &schemas["VerifyRequest"]["properties"]["code"];
        assert_eq!(code["pattern"], "^[0-9]{6,8}$");
        assert_eq!(
            (&code["minLength"], &code["maxLength"]),
            (&6.into(), &8.into())
        );
        let length = &schemas["CodeSentResponse"]["properties"]["code_length"];
        assert_eq!(
            (&length["minimum"], &length["maximum"]),
            (&6.into(), &8.into())
        );
        config.otp.step_up_length = referral_core::OtpLength::new(6).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&super::json_for(&config)).unwrap();
        let code = &doc["components"]["schemas"]["VerifyRequest"]["properties"]["code"];
        assert_eq!(code["pattern"], "^[0-9]{6}$");
        assert_eq!(code["maxLength"], 6);
    }
}
