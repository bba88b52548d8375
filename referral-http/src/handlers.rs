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

use std::sync::{Arc, Once};

use referral_core::user::PageLimit;
use referral_core::{
    ClientAddress, Conversion, ConversionId, ConversionKind, ConversionUser, Currency, InviteCode,
    PayoutRef, PhoneNumber, RecordConversion, ReferralCursor, ReversalId, Reward, RewardCursor,
    RewardId, UserId,
};
use serde::Serialize;

use crate::api::{Api, ServerCaller};
use crate::dto::{
    CodeRequest, CodeSentResponse, ConversionAnswer, ConversionDto, ConversionRequest, DevSms,
    ErrorBody, Health, InviteRequest, LoginResponse, PaidRequest, ProfileJson, ProfileResponse,
    ReferralsPage, ReferralsPageJson, ReversalRequest, RewardDto, RewardsPage, VerifyRequest,
    timestamp,
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
    /// The buffer [`Reply::json`] starts with, in bytes.
    const INITIAL_CAPACITY: usize = 512;

    /// `body` serialised as JSON with `status` (500 `internal` if it cannot
    /// be serialised, which the DTOs of this crate never fail).
    #[must_use]
    pub fn json<T: Serialize>(status: u16, body: &T) -> Self {
        // Room for a login's answer (its profile) at once: serde_json's own
        // start, 128 bytes, grew two or three times for it. The profile and
        // referrals routes write theirs by hand, sized at once
        // (`ProfileJson::to_json`, `ReferralsPageJson::to_json`).
        let mut buffer = Vec::with_capacity(Self::INITIAL_CAPACITY);
        match serde_json::to_writer(&mut buffer, body) {
            Ok(()) => Self::raw_json(status, buffer),
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
///
/// `client` is the request's client address ([`Api::client_address`]),
/// charged with the per-client send limit; `None` (the host does not know
/// the socket's peer) sends with no per-client limit, and logs a warning
/// once per process.
#[utoipa::path(
    post, path = "/api/auth/code", tag = "auth",
    request_body = CodeRequest,
    responses(
        (status = 202, description = "The code was sent; `code_length` is its number of digits (the step-up length while the phone is stepped up)", body = CodeSentResponse),
        (status = 400, description = "`invalid_phone`, `invalid_json`, `invalid_body`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 429, description = "`too_many_requests`: the phone's resend cooldown or hourly cap, or the client address's hourly limit (any phones)",
            body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "`sms_unavailable`: the sender failed, no usable code is left; `unavailable`: the store is down", body = ErrorBody),
        (status = 431, description = "`request_header_fields_too_large`: headers over the host's limit (the framework crates' header-limit helper)", body = ErrorBody),
    )
)]
pub async fn request_code(
    api: &Api,
    client: Option<ClientAddress>,
    body: CodeRequest,
) -> Result<Reply, ApiError> {
    let phone = api.service().parse_phone(&body.phone)?;
    let service = Arc::clone(api.service());
    let send = async move {
        match client {
            Some(client) => service.request_code_from(&phone, client).await,
            None => {
                static WARNED: Once = Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(
                        "a code request without the client's address: no per-client send \
                         limit (serve axum with ConnectInfo<SocketAddr>)"
                    );
                });
                service.request_code(&phone).await
            }
        }
    };
    let sent = tokio::spawn(send).await.map_err(|e| {
        tracing::error!(error = %e, "the code request task failed");
        ApiError::internal()
    })??;
    Ok(Reply::json(
        202,
        &CodeSentResponse {
            phone: sent.phone.to_string(),
            expires_in: sent.expires_in.as_secs(),
            retry_after: sent.retry_after.as_secs(),
            code_length: sent.code_length.get(),
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
        (status = 400, description = "`invalid_phone`, `invalid_code` (not 4 to 8 ASCII digits), `invalid_json`, `invalid_body`", body = ErrorBody),
        (status = 401, description = "`otp_invalid` (wrong code, or no live code), `otp_expired`", body = ErrorBody),
        (status = 403, description = "`user_blocked`: an operator blocked this account", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 429, description = "`too_many_requests`: the code's attempts are spent (the guess that spends the phone's daily failure budget burns the live code too: the phone is stepped up, and later codes are longer)",
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
        (status = 403, description = "`user_blocked`: an operator blocked this account", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
        (status = 431, description = "`request_header_fields_too_large`: headers over the host's limit (the framework crates' header-limit helper)", body = ErrorBody),
    )
)]
pub async fn profile(api: &Api, user: UserId) -> Result<Reply, ApiError> {
    let profile = api.service().profile(user).await?;
    Ok(Reply::raw_json(200, ProfileJson(&profile).to_json()))
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
        (status = 403, description = "`user_blocked`: an operator blocked this account", body = ErrorBody),
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
    Ok(Reply::raw_json(
        200,
        ProfileJson(&activation.profile).to_json(),
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
        (status = 403, description = "`user_blocked`: an operator blocked this account", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
        (status = 431, description = "`request_header_fields_too_large`: headers over the host's limit (the framework crates' header-limit helper)", body = ErrorBody),
    )
)]
pub async fn referrals(api: &Api, user: UserId, query: Option<&str>) -> Result<Reply, ApiError> {
    let (limit, cursor) = page_query(query, ReferralCursor::parse)?;
    let page = api.service().referrals(user, cursor, limit).await?;
    Ok(Reply::raw_json(200, ReferralsPageJson(&page).to_json()))
}

/// The `limit` (1 to 500, default 50) and the `cursor` (read by `parse`) of
/// a page's raw query string.
pub(crate) fn page_query<C, E>(
    query: Option<&str>,
    parse: impl FnOnce(&str) -> Result<C, E>,
) -> Result<(PageLimit, Option<C>), ApiError>
where
    ApiError: From<E>,
{
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
    let cursor = query.get("cursor").map(parse).transpose()?;
    Ok((limit, cursor))
}

/// All the caller's rewards, newest first, page by page.
///
/// `query` is the raw query string, if any.
#[utoipa::path(
    get, path = "/api/profile/rewards", tag = "profile",
    security(("bearer" = [])),
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 500 (default 50)", minimum = 1, maximum = 500),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page: 32 base64url characters (see `CURSOR_PATTERN`)",
            pattern = "^[A-Zabk-z0-9_-][A-Za-z0-9_-]{31}$", min_length = 32, max_length = 32),
    ),
    responses(
        (status = 200, description = "A page", body = RewardsPage),
        (status = 400, description = "`invalid_limit`, `invalid_cursor`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`user_blocked`: an operator blocked this account", body = ErrorBody),
        (status = 431, description = "`request_header_fields_too_large`: headers over the host's limit (the framework crates' header-limit helper)", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
    )
)]
pub async fn rewards(api: &Api, user: UserId, query: Option<&str>) -> Result<Reply, ApiError> {
    let (limit, cursor) = page_query(query, RewardCursor::parse)?;
    let page = api.service().rewards(user, cursor, limit).await?;
    Ok(Reply::json(
        200,
        &RewardsPage {
            items: page.items.iter().map(RewardDto::from).collect(),
            next_cursor: page.next.map(|c| c.to_string()),
        },
    ))
}

/// An amount in minor units as JSON: an integer (in `i64`), else 400
/// `invalid_amount`; the service checks the range.
fn amount_of(value: &serde_json::Value) -> Result<i64, ApiError> {
    value.as_i64().ok_or_else(|| {
        ApiError::new(
            400,
            "invalid_amount",
            "the amount must be an integer number of minor units",
        )
    })
}

/// An external id (conversion, reversal, payout), else 400 `invalid_body`.
fn external<T>(
    field: &str,
    raw: &str,
    parse: impl FnOnce(&str) -> Result<T, referral_core::ExternalIdError>,
) -> Result<T, ApiError> {
    parse(raw).map_err(|e| ApiError::invalid_body(format_args!("{field}: {e}")))
}

/// The host reports a conversion (a purchase): the rewards it earns.
///
/// The same request again answers 200 with the same answer and changes
/// nothing, however many race, on however many servers.
#[utoipa::path(
    post, path = "/api/server/conversions", tag = "server",
    security(("api_key" = [])),
    request_body = ConversionRequest,
    responses(
        (status = 201, description = "Recorded, with the rewards it created (possibly none)", body = ConversionAnswer),
        (status = 200, description = "Recorded before with the same fields: the same answer, nothing new", body = ConversionAnswer),
        (status = 400, description = "`invalid_amount` (not an integer in 1 … 10^15), `invalid_currency`, `invalid_phone`, `invalid_body` (a bad `external_id`, `kind`, `user_id` or `occurred_at`, or not exactly one of `user_id` and `phone`), `invalid_json`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no API key, or not one of the keys", body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 409, description = "`conversion_conflict`: the `external_id` was recorded with other fields", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 431, description = "`request_header_fields_too_large`: headers over the host's limit (the framework crates' header-limit helper)", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
    )
)]
pub async fn record_conversion(
    api: &Api,
    _caller: ServerCaller,
    body: ConversionRequest,
) -> Result<Reply, ApiError> {
    let external_id = external("external_id", &body.external_id, ConversionId::parse)?;
    let amount = amount_of(&body.amount)?;
    let currency = Currency::parse(&body.currency)?;
    let user = match (body.user_id.as_deref(), body.phone.as_deref()) {
        (Some(id), None) => ConversionUser::Id(
            UserId::parse(id).map_err(|_| ApiError::invalid_body("user_id is not a user id"))?,
        ),
        (None, Some(phone)) => ConversionUser::Phone(api.service().parse_phone(phone)?),
        _ => {
            return Err(ApiError::invalid_body(
                "give exactly one of user_id and phone",
            ));
        }
    };
    let mut input = RecordConversion::new(external_id, user, amount, currency);
    if let Some(kind) = body.kind.as_deref() {
        input = input.kind(external("kind", kind, ConversionKind::parse)?);
    }
    if let Some(at) = body.occurred_at.as_deref() {
        let at = chrono::DateTime::parse_from_rfc3339(at)
            .map_err(|e| ApiError::invalid_body(format_args!("occurred_at: {e}")))?;
        input = input.occurred_at(at.to_utc());
    }
    let recorded = api.service().record_conversion(input).await?;
    Ok(Reply::json(
        if recorded.created { 201 } else { 200 },
        &conversion_answer(&recorded.conversion, &recorded.rewards),
    ))
}

/// The answer of the conversion routes: the conversion and the rewards.
fn conversion_answer(conversion: &Conversion, rewards: &[Reward]) -> ConversionAnswer {
    ConversionAnswer {
        conversion: ConversionDto::from(conversion),
        rewards: rewards.iter().map(RewardDto::from).collect(),
    }
}

/// The host reports a refund of a conversion (partial, or all that is left).
///
/// Pending rewards shrink in proportion (voided at 0); approved and paid
/// ones get a negative `clawback`. `external_id` is the path segment,
/// percent-decoded.
#[utoipa::path(
    post, path = "/api/server/conversions/{external_id}/reversals", tag = "server",
    security(("api_key" = [])),
    params(("external_id" = String, Path, description = "The conversion's `external_id`, percent-encoded")),
    request_body = ReversalRequest,
    responses(
        (status = 200, description = "Applied (or applied before with the same amount): the conversion and the rewards changed or added", body = ConversionAnswer),
        (status = 400, description = "`invalid_amount` (not a positive integer, or more than is left), `invalid_body`, `invalid_json`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`conversion_not_found`", body = ErrorBody),
        (status = 409, description = "`reversal_conflict`: this `reversal_id` was used with another amount", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 431, description = "`request_header_fields_too_large`: headers over the host's limit (the framework crates' header-limit helper)", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
    )
)]
pub async fn reverse_conversion(
    api: &Api,
    _caller: ServerCaller,
    external_id: &str,
    body: ReversalRequest,
) -> Result<Reply, ApiError> {
    let conversion = ConversionId::parse(external_id)
        .map_err(|_| ApiError::new(404, "conversion_not_found", "no such conversion"))?;
    let reversal = external("reversal_id", &body.reversal_id, ReversalId::parse)?;
    let amount = body.amount.as_ref().map(amount_of).transpose()?;
    let reversed = api
        .service()
        .reverse_conversion(&conversion, &reversal, amount)
        .await?;
    Ok(Reply::json(
        200,
        &conversion_answer(&reversed.conversion, &reversed.rewards),
    ))
}

/// The host paid a reward out: `approved` → `paid`.
///
/// Again with the same `payout_ref`: 200, nothing changes.
#[utoipa::path(
    post, path = "/api/server/rewards/{id}/paid", tag = "server",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The reward's id")),
    request_body = PaidRequest,
    responses(
        (status = 200, description = "Paid", body = RewardDto),
        (status = 400, description = "`invalid_body` (a bad `payout_ref`), `invalid_json`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`reward_not_found`", body = ErrorBody),
        (status = 409, description = "`reward_not_payable`: pending, voided, or paid under another `payout_ref`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 431, description = "`request_header_fields_too_large`: headers over the host's limit (the framework crates' header-limit helper)", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
    )
)]
pub async fn mark_reward_paid(
    api: &Api,
    _caller: ServerCaller,
    id: &str,
    body: PaidRequest,
) -> Result<Reply, ApiError> {
    let id = RewardId::parse(id)
        .map_err(|_| ApiError::new(404, "reward_not_found", "no such reward"))?;
    let payout_ref = external("payout_ref", &body.payout_ref, PayoutRef::parse)?;
    let reward = api.service().mark_reward_paid(id, &payout_ref).await?;
    Ok(Reply::json(200, &RewardDto::from(&reward)))
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
