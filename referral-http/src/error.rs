//! [`ApiError`]: the one mapping from the core's errors to HTTP answers.
//!
//! Every error answer of every server is built here: its status, its
//! `{"error": {"code", "message"}}` body and, on 429, its `Retry-After`.
//! The framework crates only turn an [`ApiError`] into their framework's
//! response (through [`crate::Reply`]).

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use referral_core::user::{CursorError, PageLimitError};
use referral_core::{
    ActivateError, CurrencyError, InviteCodeError, MarkPaidError, OtpCodeError, PhoneError,
    ProfileError, RecordConversionError, ReferralsError, RequestCodeError, ReverseConversionError,
    RewardCursorError, RewardsError, StoreError, VerifyError,
};

use crate::auth::AuthError;
use crate::dto::{ErrorBody, ErrorDetail};

/// An error answer, framework-neutral.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiError {
    /// The HTTP status code.
    pub status: u16,
    /// The machine-readable `snake_case` code.
    pub code: &'static str,
    /// The human-readable message.
    pub message: String,
    /// Whole seconds for the `Retry-After` header (set on every 429).
    pub retry_after: Option<u64>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl StdError for ApiError {}

impl ApiError {
    /// An error answer with no `Retry-After`.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 429 `too_many_requests` with `Retry-After` (whole seconds, at least 1).
    pub fn too_many_requests(message: impl Into<String>, retry_after: Duration) -> Self {
        Self::new(429, "too_many_requests", message).retry_after(retry_after)
    }

    /// The same answer with `Retry-After` (whole seconds, rounded up, at
    /// least 1).
    #[must_use]
    pub fn retry_after(self, wait: Duration) -> Self {
        let secs = wait
            .as_secs()
            .saturating_add(u64::from(wait.subsec_nanos() > 0))
            .max(1);
        Self {
            retry_after: Some(secs),
            ..self
        }
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, "unauthorized", message)
    }

    /// 404 `not_found`.
    pub fn not_found() -> Self {
        Self::new(404, "not_found", "no such resource")
    }

    /// 500 `internal`: a bug.
    pub fn internal() -> Self {
        Self::new(500, "internal", "internal server error")
    }

    /// 503 `unavailable`: the store (or the request) could not finish.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "unavailable", message)
    }

    /// 503 `unavailable` for a request that ran past the request timeout.
    #[must_use]
    pub fn timed_out() -> Self {
        Self::unavailable("the request took too long; try again")
    }

    /// 400 `invalid_json`: the body is not JSON.
    pub fn invalid_json(detail: impl fmt::Display) -> Self {
        Self::new(
            400,
            "invalid_json",
            format!("the body is not valid JSON: {detail}"),
        )
    }

    /// 400 `invalid_body`: the JSON lacks a field or has one of the wrong type.
    pub fn invalid_body(detail: impl fmt::Display) -> Self {
        Self::new(
            400,
            "invalid_body",
            format!("the body does not fit this route: {detail}"),
        )
    }

    /// 400 `bad_request`: the body could not be read (the client broke off).
    pub fn body_unreadable(detail: impl fmt::Display) -> Self {
        Self::new(
            400,
            "bad_request",
            format!("the body could not be read: {detail}"),
        )
    }

    /// 415 `unsupported_media_type`.
    #[must_use]
    pub fn unsupported_media_type() -> Self {
        Self::new(
            415,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        )
    }

    /// 413 `payload_too_large`, for a body over `max_body_bytes`.
    #[must_use]
    pub fn payload_too_large(max_body_bytes: usize) -> Self {
        let limit = if max_body_bytes.is_multiple_of(1024) {
            format!("{} KiB", max_body_bytes / 1024)
        } else {
            format!("{max_body_bytes} bytes")
        };
        Self::new(
            413,
            "payload_too_large",
            format!("the body is larger than {limit}"),
        )
    }

    /// 405 `method_not_allowed`.
    #[must_use]
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "method_not_allowed",
            "this route does not take this method",
        )
    }

    /// The envelope for an error answer a framework produced on its own
    /// (a bare status with no JSON body): the code follows the status.
    #[must_use]
    pub fn for_status(status: u16) -> Self {
        match status {
            401 => Self::unauthorized("missing or invalid access token"),
            404 => Self::not_found(),
            405 => Self::method_not_allowed(),
            408 | 503 | 504 => Self::timed_out(),
            411 => Self::new(411, "length_required", "send a Content-Length"),
            413 => Self::payload_too_large(crate::Limits::DEFAULT_MAX_BODY_BYTES),
            415 => Self::unsupported_media_type(),
            431 => Self::new(
                431,
                "request_header_fields_too_large",
                "the request's headers are too large",
            ),
            429 => Self::too_many_requests("too many requests", Duration::from_secs(1)),
            400..=499 => Self::new(status, "bad_request", "the request was refused"),
            _ => Self::internal(),
        }
    }

    /// The body: `{"error": {"code", "message"}}`.
    #[must_use]
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
            },
        }
    }

    /// The body serialised.
    #[must_use]
    pub fn body_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.body()).unwrap_or_else(|_| {
            br#"{"error":{"code":"internal","message":"internal server error"}}"#.to_vec()
        })
    }
}

/// The error and its sources, joined with `: `, for logs.
#[must_use]
pub fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %chain(&error), "store unavailable");
                Self::unavailable("the service is unavailable; try again shortly")
            }
            _ => {
                tracing::error!(error = %chain(&error), "store failed");
                Self::internal()
            }
        }
    }
}

impl From<PhoneError> for ApiError {
    fn from(error: PhoneError) -> Self {
        Self::new(400, "invalid_phone", error.to_string())
    }
}

impl From<OtpCodeError> for ApiError {
    fn from(error: OtpCodeError) -> Self {
        Self::new(400, "invalid_code", error.to_string())
    }
}

impl From<InviteCodeError> for ApiError {
    fn from(error: InviteCodeError) -> Self {
        Self::new(400, "invalid_invite_code", error.to_string())
    }
}

impl From<PageLimitError> for ApiError {
    fn from(error: PageLimitError) -> Self {
        Self::new(400, "invalid_limit", error.to_string())
    }
}

impl From<CursorError> for ApiError {
    fn from(_: CursorError) -> Self {
        invalid_cursor()
    }
}

/// 400 `invalid_cursor`, for the cursor of any page.
pub(crate) fn invalid_cursor() -> ApiError {
    ApiError::new(
        400,
        "invalid_cursor",
        "the cursor is not one this server gave out",
    )
}

impl From<RequestCodeError> for ApiError {
    fn from(error: RequestCodeError) -> Self {
        let message = error.to_string();
        match error {
            RequestCodeError::Cooldown { retry_after }
            | RequestCodeError::TooManySends { retry_after }
            | RequestCodeError::ClientLimited { retry_after } => {
                Self::too_many_requests(message, retry_after)
            }
            RequestCodeError::Sms(source) => {
                tracing::warn!(error = %chain(&source), "the SMS sender failed");
                Self::new(
                    503,
                    "sms_unavailable",
                    "the code could not be sent; try again shortly",
                )
            }
            RequestCodeError::BudgetSpent { retry_after } => {
                tracing::warn!("the global SMS budget is spent");
                Self::new(
                    503,
                    "sms_unavailable",
                    "no more codes can be sent right now; try again later",
                )
                .retry_after(retry_after)
            }
            RequestCodeError::CountryNotAllowed => Self::new(400, "invalid_phone", message),
            RequestCodeError::Store(e) => e.into(),
            _ => unexpected(&error),
        }
    }
}

impl From<VerifyError> for ApiError {
    fn from(error: VerifyError) -> Self {
        let message = error.to_string();
        match error {
            VerifyError::WrongCode { .. } | VerifyError::NoLiveCode => {
                Self::new(401, "otp_invalid", message)
            }
            VerifyError::Expired => Self::new(401, "otp_expired", message),
            VerifyError::CodeBurned { retry_after } => {
                Self::too_many_requests(message, retry_after)
            }
            VerifyError::InviteCodesExhausted => {
                tracing::error!("no free invite code for a new user");
                Self::unavailable("no account can be created right now; try again later")
            }
            VerifyError::Blocked => crate::admin::user_blocked(),
            VerifyError::Store(e) => e.into(),
            _ => unexpected(&error),
        }
    }
}

impl From<ProfileError> for ApiError {
    fn from(error: ProfileError) -> Self {
        match error {
            ProfileError::UserNotFound => user_gone(),
            ProfileError::Store(e) => e.into(),
            _ => unexpected(&error),
        }
    }
}

impl From<ReferralsError> for ApiError {
    fn from(error: ReferralsError) -> Self {
        match error {
            ReferralsError::UserNotFound => user_gone(),
            ReferralsError::Store(e) => e.into(),
            _ => unexpected(&error),
        }
    }
}

impl From<ActivateError> for ApiError {
    fn from(error: ActivateError) -> Self {
        let message = error.to_string();
        match error {
            ActivateError::UserNotFound => user_gone(),
            ActivateError::AlreadyActivated { code } => Self::new(
                409,
                "invite_already_activated",
                format!("you already activated the invite code {code}"),
            ),
            ActivateError::CodeNotFound => Self::new(404, "invite_code_not_found", message),
            ActivateError::SelfReferral => Self::new(422, "self_referral", message),
            ActivateError::Cycle => Self::new(422, "referral_cycle", message),
            ActivateError::TooManyAttempts { retry_after } => {
                Self::too_many_requests(message, retry_after)
            }
            ActivateError::Blocked => crate::admin::user_blocked(),
            ActivateError::Store(e) => e.into(),
            _ => unexpected(&error),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing | AuthError::Invalid | AuthError::Expired => {
                Self::unauthorized(error.to_string())
            }
            AuthError::Unavailable(ref source) => {
                tracing::warn!(error = %chain(source.as_ref()), "authentication unavailable");
                Self::unavailable("the service is unavailable; try again shortly")
            }
            AuthError::Internal(ref source) => {
                tracing::error!(error = %chain(source.as_ref()), "authentication failed");
                Self::internal()
            }
        }
    }
}

impl From<CurrencyError> for ApiError {
    fn from(_: CurrencyError) -> Self {
        Self::new(
            400,
            "invalid_currency",
            "the currency must be an ISO 4217 code: three capital letters",
        )
    }
}

impl From<RewardCursorError> for ApiError {
    fn from(_: RewardCursorError) -> Self {
        invalid_cursor()
    }
}

/// Rewards are off on this server: its reward routes are not there.
fn rewards_disabled() -> ApiError {
    ApiError::new(404, "not_found", "rewards are not enabled on this server")
}

impl From<RecordConversionError> for ApiError {
    fn from(error: RecordConversionError) -> Self {
        let message = error.to_string();
        match error {
            RecordConversionError::RewardsDisabled => rewards_disabled(),
            RecordConversionError::InvalidAmount => Self::new(400, "invalid_amount", message),
            RecordConversionError::UserNotFound => Self::new(404, "user_not_found", message),
            RecordConversionError::Conflict { .. } => Self::new(
                409,
                "conversion_conflict",
                "a conversion with this external_id but other fields was recorded before",
            ),
            RecordConversionError::Store(e) => e.into(),
            _ => unexpected(&error),
        }
    }
}

impl From<ReverseConversionError> for ApiError {
    fn from(error: ReverseConversionError) -> Self {
        let message = error.to_string();
        match error {
            ReverseConversionError::RewardsDisabled => rewards_disabled(),
            ReverseConversionError::InvalidAmount
            | ReverseConversionError::ExceedsRemaining { .. } => {
                Self::new(400, "invalid_amount", message)
            }
            ReverseConversionError::ConversionNotFound => {
                Self::new(404, "conversion_not_found", message)
            }
            ReverseConversionError::Conflict { amount } => Self::new(
                409,
                "reversal_conflict",
                format!("this reversal_id was used on this conversion with the amount {amount}"),
            ),
            ReverseConversionError::Store(e) => e.into(),
            _ => unexpected(&error),
        }
    }
}

impl From<MarkPaidError> for ApiError {
    fn from(error: MarkPaidError) -> Self {
        match error {
            MarkPaidError::RewardsDisabled => rewards_disabled(),
            MarkPaidError::RewardNotFound => Self::new(404, "reward_not_found", error.to_string()),
            MarkPaidError::NotPayable { status } => Self::new(
                409,
                "reward_not_payable",
                format!(
                    "the reward is {} and cannot be paid (only an approved one can, or a paid one again with the same payout_ref)",
                    status.as_str()
                ),
            ),
            MarkPaidError::Store(e) => e.into(),
            _ => unexpected(&error),
        }
    }
}

impl From<RewardsError> for ApiError {
    fn from(error: RewardsError) -> Self {
        match error {
            RewardsError::UserNotFound => user_gone(),
            RewardsError::Store(e) => e.into(),
            _ => unexpected(&error),
        }
    }
}

/// A token whose user no longer exists.
pub(crate) fn user_gone() -> ApiError {
    ApiError::unauthorized("the access token's user no longer exists")
}

/// A variant this server does not know (the core's enums are
/// `#[non_exhaustive]`): a bug to fix here.
pub(crate) fn unexpected(error: &dyn StdError) -> ApiError {
    tracing::error!(error = %chain(error), "unmapped error");
    ApiError::internal()
}

#[cfg(test)]
mod tests {
    use super::*;
    use referral_core::SmsError;

    #[test]
    fn limits_carry_whole_seconds() {
        let e: ApiError = RequestCodeError::Cooldown {
            retry_after: Duration::from_millis(1500),
        }
        .into();
        assert_eq!(
            (e.status, e.code, e.retry_after),
            (429, "too_many_requests", Some(2))
        );
        let e = ApiError::too_many_requests("x", Duration::ZERO);
        assert_eq!(e.retry_after, Some(1));
    }

    #[test]
    fn statuses_and_codes() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (VerifyError::NoLiveCode.into(), 401, "otp_invalid"),
            (
                VerifyError::WrongCode { attempts_left: 1 }.into(),
                401,
                "otp_invalid",
            ),
            (VerifyError::Expired.into(), 401, "otp_expired"),
            (
                ActivateError::CodeNotFound.into(),
                404,
                "invite_code_not_found",
            ),
            (ActivateError::SelfReferral.into(), 422, "self_referral"),
            (ActivateError::Cycle.into(), 422, "referral_cycle"),
            (ActivateError::UserNotFound.into(), 401, "unauthorized"),
            (ProfileError::UserNotFound.into(), 401, "unauthorized"),
            (
                RequestCodeError::Sms(SmsError::TimedOut).into(),
                503,
                "sms_unavailable",
            ),
            (StoreError::unavailable("down").into(), 503, "unavailable"),
            (StoreError::internal("bug").into(), 500, "internal"),
            (PhoneError::Empty.into(), 400, "invalid_phone"),
            (ApiError::for_status(405), 405, "method_not_allowed"),
            (
                RecordConversionError::InvalidAmount.into(),
                400,
                "invalid_amount",
            ),
            (
                RecordConversionError::UserNotFound.into(),
                404,
                "user_not_found",
            ),
            (
                ReverseConversionError::ExceedsRemaining { remaining: 1 }.into(),
                400,
                "invalid_amount",
            ),
            (
                ReverseConversionError::Conflict { amount: 1 }.into(),
                409,
                "reversal_conflict",
            ),
            (
                ReverseConversionError::ConversionNotFound.into(),
                404,
                "conversion_not_found",
            ),
            (
                MarkPaidError::RewardNotFound.into(),
                404,
                "reward_not_found",
            ),
            (
                MarkPaidError::NotPayable {
                    status: referral_core::RewardStatus::Pending,
                }
                .into(),
                409,
                "reward_not_payable",
            ),
        ];
        for (e, status, code) in cases {
            assert_eq!((e.status, e.code), (status, code), "{e}");
        }
    }

    #[test]
    fn body_is_the_envelope() {
        let body = ApiError::not_found().body_json();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "not_found");
        assert!(v["error"]["message"].is_string());
    }
}
