//! The operators' routes (API.md, "Operators"), framework-neutral: who is
//! an operator ([`AdminPhones`], checked by [`Api::authenticate_admin`]),
//! one function per `/api/admin/*` route with its OpenAPI annotation, the
//! mapping of the operator errors, and the streamed CSV exports
//! ([`CsvExport`]).
//!
//! An operator is a user whose phone is in the [`Api`]'s [`AdminPhones`]
//! (the example servers read `REFERRAL_ADMIN_PHONES`). They log in like
//! everyone else; their access token also opens these routes. Everyone
//! else gets 403 `forbidden` (401 `unauthorized` without valid
//! credentials, an API key included; 403 `user_blocked` for a blocked
//! user, operators too).
//!
//! Logged: every refused operator route at WARN (the user id, never the
//! token); each block, unblock and void at INFO with the operator's and the
//! target's ids (the reason goes to the outbox event, not the log); each
//! export's start and end at INFO with the operator's id and the row count.

pub mod csv;
pub mod dto;

use std::collections::HashSet;
use std::fmt;

use referral_core::operator::{
    LeaderboardLimitError, StatsDaysError, UserCursorError, UserQueryError,
};
use referral_core::{
    BlockError, LeaderboardLimit, OperatorReadError, PhoneError, PhoneNumber, Reason, ReasonError,
    Region, RewardCursor, RewardId, RewardsError, StatsDays, UnblockError, UserCursor,
    UserDetailError, UserId, UserQuery, VoidRewardError,
};

pub use self::csv::CsvExport;
use self::dto::{
    BlockRequest, Leaderboard, LeaderboardItem, StatsDto, UnblockRequest, UserDetailDto,
    UserSummaryDto, UsersPage, VoidRequest,
};
use crate::api::Api;
use crate::auth::Headers;
use crate::dto::{ErrorBody, RewardDto, RewardsPage};
use crate::error::{ApiError, unexpected, user_gone};
use crate::handlers::{Reply, page_query};
use crate::query::Query;

/// The operators: the phones whose users may call the `/api/admin/*`
/// routes. Empty by default (nobody is an operator).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AdminPhones(HashSet<PhoneNumber>);

impl fmt::Debug for AdminPhones {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminPhones")
            .field("count", &self.0.len())
            .finish()
    }
}

impl AdminPhones {
    /// The set of `phones`.
    #[must_use]
    pub fn new(phones: impl IntoIterator<Item = PhoneNumber>) -> Self {
        Self(phones.into_iter().collect())
    }

    /// Parses phones in any spelling the login accepts (`+7 999 123-45-67`;
    /// national numbers with `region`); blank entries are skipped.
    ///
    /// # Errors
    /// The first phone that does not parse, with its error.
    pub fn parse<'a>(
        phones: impl IntoIterator<Item = &'a str>,
        region: Option<Region>,
    ) -> Result<Self, (String, PhoneError)> {
        let mut set = HashSet::new();
        for raw in phones.into_iter().filter(|p| !p.trim().is_empty()) {
            let phone = PhoneNumber::parse(raw, region).map_err(|e| (raw.to_owned(), e))?;
            set.insert(phone);
        }
        Ok(Self(set))
    }

    /// Whether `phone` is an operator's.
    #[must_use]
    pub fn contains(&self, phone: &PhoneNumber) -> bool {
        self.0.contains(phone)
    }

    /// Whether nobody is an operator.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many phones are listed.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// Proof that a request came from an operator: made only by
/// [`Api::authenticate_admin`], required by the `/api/admin/*` handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operator(UserId);

impl Operator {
    /// The operator's user id.
    #[must_use]
    pub fn id(self) -> UserId {
        self.0
    }
}

impl Api {
    /// The operator of an `/api/admin/*` request: a user recognised by
    /// [`Api::authenticate`] whose phone is in [`Api::admin_phones`].
    ///
    /// # Errors
    /// 401 `unauthorized` without valid credentials (an API key included)
    /// or for a user that no longer exists; 403 `user_blocked` for a
    /// blocked user; 403 `forbidden` for anyone else who is not an
    /// operator; 503 when the store cannot be reached.
    pub async fn authenticate_admin(&self, headers: &dyn Headers) -> Result<Operator, ApiError> {
        let id = self.authenticate(headers).await?;
        let user = self.service().user(id).await?.ok_or_else(user_gone)?;
        if !self.admin_phones().contains(&user.phone) {
            tracing::warn!(user = %id, "a user who is not an operator called an admin route");
            return Err(ApiError::new(
                403,
                "forbidden",
                "this route is for operators only",
            ));
        }
        Ok(Operator(id))
    }
}

/// What the schema of the users search's `q` accepts: nothing (every user),
/// 1 to 15 digits with an optional `+` (a phone prefix), or 6 letters and
/// digits (an invite code). The server also trims surrounding whitespace.
pub const QUERY_PATTERN: &str = r"^(\+?[0-9]{1,15}|[A-Za-z0-9]{6})?$";

/// What the schema of an operator's `reason` (block, void) accepts, exactly
/// what [`Reason::parse`] does: surrounding white space (Unicode
/// `White_Space`, which the server trims), then 1 to 500 characters with no
/// control character that neither start nor end with white space.
pub const REASON_PATTERN: &str = r"^[\t-\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000](?:[^\x00-\x1F\x7F-\x9F]{0,498}[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000])?[\t-\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$";

/// 403 `user_blocked`: the answer to a blocked user's every route.
#[must_use]
pub fn user_blocked() -> ApiError {
    ApiError::new(
        403,
        "user_blocked",
        "this account is blocked; contact support",
    )
}

/// A whole number in a query, else 400 `code` with `message`.
fn number(raw: &str, code: &'static str, message: &'static str) -> Result<u64, ApiError> {
    raw.trim()
        .parse()
        .map_err(|_| ApiError::new(400, code, message))
}

/// A user id of a path: not an id is no such user.
fn user_id(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw).map_err(|_| ApiError::new(404, "user_not_found", "no such user"))
}

/// Users whose phone starts with `q` or whose invite code is `q`, ordered by
/// phone, page by page (all users without `q`).
///
/// `q`: digits with an optional leading `+` (a phone prefix), or an invite
/// code (any case); six digits are both.
#[utoipa::path(
    get, path = "/api/admin/users", tag = "admin",
    security(("bearer" = [])),
    params(
        ("q" = Option<String>, Query, description = "Phone digits (`+` optional) the phone starts with, or an invite code (any case); empty: every user (see `QUERY_PATTERN`)",
            pattern = r"^(\+?[0-9]{1,15}|[A-Za-z0-9]{6})?$", max_length = 16),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 500 (default 50)", minimum = 1, maximum = 500),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page (a phone in E.164)",
            pattern = r"^\+[1-9][0-9]{6,14}$", min_length = 8, max_length = 16),
    ),
    responses(
        (status = 200, description = "A page", body = UsersPage),
        (status = 400, description = "`invalid_query`, `invalid_limit`, `invalid_cursor`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden` (not an operator), `user_blocked`", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
        (status = 431, description = "`request_header_fields_too_large`: headers over the host's limit (the framework crates' header-limit helper)", body = ErrorBody),
    )
)]
pub async fn search_users(
    api: &Api,
    _operator: Operator,
    query: Option<&str>,
) -> Result<Reply, ApiError> {
    let q = UserQuery::parse(
        Query::parse(query.unwrap_or_default())
            .get("q")
            .unwrap_or(""),
    )?;
    let (limit, cursor) = page_query(query, UserCursor::parse)?;
    let page = api.service().search_users(&q, cursor, limit).await?;
    Ok(Reply::json(
        200,
        &UsersPage {
            items: page.items.iter().map(UserSummaryDto::from).collect(),
            next_cursor: page.next.map(|c| c.to_string()),
        },
    ))
}

/// A user as an operator sees them: profile (with balances), referrer and
/// block.
#[utoipa::path(
    get, path = "/api/admin/users/{id}", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user", body = UserDetailDto),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden` (not an operator), `user_blocked`", body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
        (status = 431, description = "`request_header_fields_too_large`: headers over the host's limit (the framework crates' header-limit helper)", body = ErrorBody),
    )
)]
pub async fn user_detail(api: &Api, _operator: Operator, id: &str) -> Result<Reply, ApiError> {
    let detail = api.service().user_detail(user_id(id)?).await?;
    Ok(Reply::json(200, &UserDetailDto::from(&detail)))
}

/// One user's rewards, newest first, page by page: what
/// `GET /api/profile/rewards` answers that user (same REWARD shape, same
/// keyset pages, same `limit` and `cursor` rules), for an operator who
/// looks for a reward to void. Not in API.md's list: an addition of these
/// servers (README, "Operating the program").
///
/// `query` is the raw query string, if any. The path's id is looked at
/// first (not an id: 404), then `limit` and `cursor` (400), then the store
/// (an unknown user: 404).
#[utoipa::path(
    get, path = "/api/admin/users/{id}/rewards", tag = "admin",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The user's id"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 500 (default 50)", minimum = 1, maximum = 500),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page: 32 base64url characters (see `CURSOR_PATTERN`)",
            pattern = "^[A-Zabk-z0-9_-][A-Za-z0-9_-]{31}$", min_length = 32, max_length = 32),
    ),
    responses(
        (status = 200, description = "A page of the user's rewards, newest first", body = RewardsPage),
        (status = 400, description = "`invalid_limit`, `invalid_cursor`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden` (not an operator), `user_blocked`", body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
        (status = 431, description = "`request_header_fields_too_large`: headers over the host's limit (the framework crates' header-limit helper)", body = ErrorBody),
    )
)]
pub async fn user_rewards(
    api: &Api,
    _operator: Operator,
    id: &str,
    query: Option<&str>,
) -> Result<Reply, ApiError> {
    if !api.service().operators_enabled() {
        return Err(operators_disabled());
    }
    let user = user_id(id)?;
    let (limit, cursor) = page_query(query, RewardCursor::parse)?;
    let page = api
        .service()
        .rewards(user, cursor, limit)
        .await
        .map_err(|error| match error {
            RewardsError::UserNotFound => user_not_found(&error),
            other => other.into(),
        })?;
    Ok(Reply::json(
        200,
        &RewardsPage {
            items: page.items.iter().map(RewardDto::from).collect(),
            next_cursor: page.next.map(|c| c.to_string()),
        },
    ))
}

/// Blocks a user: they cannot log in (verify answers 403 `user_blocked`),
/// their tokens answer 403 `user_blocked` on every route, they earn no new
/// reward and their pending rewards wait. Blocking a blocked user keeps the
/// first block.
#[utoipa::path(
    post, path = "/api/admin/users/{id}/block", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The user's id")),
    request_body = BlockRequest,
    responses(
        (status = 200, description = "The user, blocked", body = UserDetailDto),
        (status = 400, description = "`invalid_reason`, `invalid_body`, `invalid_json`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden` (not an operator), `user_blocked`", body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
        (status = 431, description = "`request_header_fields_too_large`: headers over the host's limit (the framework crates' header-limit helper)", body = ErrorBody),
    )
)]
pub async fn block_user(
    api: &Api,
    operator: Operator,
    id: &str,
    body: BlockRequest,
) -> Result<Reply, ApiError> {
    let user = user_id(id)?;
    let reason = Reason::parse(&body.reason)?;
    let detail = api.service().block_user(operator.0, user, &reason).await?;
    tracing::info!(operator = %operator.0, user = %user, "an operator blocked a user");
    Ok(Reply::json(200, &UserDetailDto::from(&detail)))
}

/// Unblocks a user (their unexpired tokens work again). Unblocking a user
/// who is not blocked changes nothing.
#[utoipa::path(
    post, path = "/api/admin/users/{id}/unblock", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The user's id")),
    request_body = UnblockRequest,
    responses(
        (status = 200, description = "The user, not blocked", body = UserDetailDto),
        (status = 400, description = "`invalid_body`, `invalid_json`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden` (not an operator), `user_blocked`", body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
        (status = 431, description = "`request_header_fields_too_large`: headers over the host's limit (the framework crates' header-limit helper)", body = ErrorBody),
    )
)]
pub async fn unblock_user(
    api: &Api,
    operator: Operator,
    id: &str,
    _body: UnblockRequest,
) -> Result<Reply, ApiError> {
    let user = user_id(id)?;
    let detail = api.service().unblock_user(operator.0, user).await?;
    tracing::info!(operator = %operator.0, user = %user, "an operator unblocked a user");
    Ok(Reply::json(200, &UserDetailDto::from(&detail)))
}

/// Voids a `pending` or `approved` reward (and its clawbacks): the owner's
/// balance loses what it still counted. A voided reward again: 200, nothing
/// changes.
#[utoipa::path(
    post, path = "/api/admin/rewards/{id}/void", tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The reward's id")),
    request_body = VoidRequest,
    responses(
        (status = 200, description = "The reward, voided", body = RewardDto),
        (status = 400, description = "`invalid_reason`, `invalid_body`, `invalid_json`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden` (not an operator), `user_blocked`", body = ErrorBody),
        (status = 404, description = "`reward_not_found`", body = ErrorBody),
        (status = 409, description = "`reward_not_voidable`: paid, a clawback, or with a paid clawback", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
        (status = 431, description = "`request_header_fields_too_large`: headers over the host's limit (the framework crates' header-limit helper)", body = ErrorBody),
    )
)]
pub async fn void_reward(
    api: &Api,
    operator: Operator,
    id: &str,
    body: VoidRequest,
) -> Result<Reply, ApiError> {
    let reward = RewardId::parse(id)
        .map_err(|_| ApiError::new(404, "reward_not_found", "no such reward"))?;
    let reason = Reason::parse(&body.reason)?;
    let voided = api
        .service()
        .void_reward(operator.0, reward, &reason)
        .await?;
    tracing::info!(operator = %operator.0, reward = %reward, "an operator voided a reward");
    Ok(Reply::json(200, &RewardDto::from(&voided)))
}

/// Program totals (all time) and one row per UTC date of the last `days`
/// days, today last.
#[utoipa::path(
    get, path = "/api/admin/stats", tag = "admin",
    security(("bearer" = [])),
    params(("days" = Option<u32>, Query, description = "Days of rows, 1 to 366 (default 30)", minimum = 1, maximum = 366)),
    responses(
        (status = 200, description = "The statistics", body = StatsDto),
        (status = 400, description = "`invalid_days`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden` (not an operator), `user_blocked`", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
        (status = 431, description = "`request_header_fields_too_large`: headers over the host's limit (the framework crates' header-limit helper)", body = ErrorBody),
    )
)]
pub async fn stats(api: &Api, _operator: Operator, query: Option<&str>) -> Result<Reply, ApiError> {
    let query = Query::parse(query.unwrap_or_default());
    let days = match query.get("days") {
        Some(raw) => days(raw)?,
        None => StatsDays::new(30)?,
    };
    let stats = api.service().stats(days).await?;
    Ok(Reply::json(200, &StatsDto::from(&stats)))
}

fn days(raw: &str) -> Result<StatsDays, ApiError> {
    let message = "days must be a whole number from 1 to 366";
    Ok(StatsDays::new(number(raw, "invalid_days", message)?)?)
}

/// The top referrers by referrals activated in the last `days` days (all
/// time without `days`); ties by the earlier latest activation.
#[utoipa::path(
    get, path = "/api/admin/leaderboard", tag = "admin",
    security(("bearer" = [])),
    params(
        ("limit" = Option<u32>, Query, description = "Referrers, 1 to 100 (default 10)", minimum = 1, maximum = 100),
        ("days" = Option<u32>, Query, description = "Count referrals of the last `days` days, 1 to 366 (default: all time)", minimum = 1, maximum = 366),
    ),
    responses(
        (status = 200, description = "The leaderboard", body = Leaderboard),
        (status = 400, description = "`invalid_limit`, `invalid_days`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden` (not an operator), `user_blocked`", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
        (status = 431, description = "`request_header_fields_too_large`: headers over the host's limit (the framework crates' header-limit helper)", body = ErrorBody),
    )
)]
pub async fn leaderboard(
    api: &Api,
    _operator: Operator,
    query: Option<&str>,
) -> Result<Reply, ApiError> {
    let query = Query::parse(query.unwrap_or_default());
    let limit = match query.get("limit") {
        Some(raw) => LeaderboardLimit::new(number(
            raw,
            "invalid_limit",
            "limit must be a whole number from 1 to 100",
        )?)?,
        None => LeaderboardLimit::default(),
    };
    let days = query.get("days").map(days).transpose()?;
    let entries = api.service().leaderboard(limit, days).await?;
    Ok(Reply::json(
        200,
        &Leaderboard {
            items: entries.iter().map(LeaderboardItem::from).collect(),
        },
    ))
}

/// Every referral as CSV (`referrer_id, referrer_phone, referee_id,
/// referee_phone, invite_code, activated_at`), oldest activation first,
/// streamed in constant memory.
#[utoipa::path(
    get, path = "/api/admin/export/referrals.csv", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "RFC 4180 CSV with a header row", content_type = "text/csv"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden` (not an operator), `user_blocked`", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
        (status = 431, description = "`request_header_fields_too_large`: headers over the host's limit (the framework crates' header-limit helper)", body = ErrorBody),
    )
)]
pub async fn export_referrals(api: &Api, operator: Operator) -> Result<CsvExport, ApiError> {
    CsvExport::referrals(api, operator.0).await
}

/// Every reward as CSV (`id, user_id, phone, kind, amount, currency,
/// status, conversion_id, created_at, approved_at, paid_at, payout_ref`;
/// empty fields for nulls), oldest first, streamed in constant memory.
#[utoipa::path(
    get, path = "/api/admin/export/rewards.csv", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "RFC 4180 CSV with a header row", content_type = "text/csv"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden` (not an operator), `user_blocked`", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
        (status = 431, description = "`request_header_fields_too_large`: headers over the host's limit (the framework crates' header-limit helper)", body = ErrorBody),
    )
)]
pub async fn export_rewards(api: &Api, operator: Operator) -> Result<CsvExport, ApiError> {
    CsvExport::rewards(api, operator.0).await
}

/// Operators are off on this server: its admin routes are not there.
fn operators_disabled() -> ApiError {
    ApiError::new(404, "not_found", "operators are not enabled on this server")
}

fn user_not_found(error: &dyn std::error::Error) -> ApiError {
    ApiError::new(404, "user_not_found", error.to_string())
}

impl From<ReasonError> for ApiError {
    fn from(error: ReasonError) -> Self {
        Self::new(400, "invalid_reason", error.to_string())
    }
}

impl From<UserQueryError> for ApiError {
    fn from(error: UserQueryError) -> Self {
        Self::new(400, "invalid_query", error.to_string())
    }
}

impl From<UserCursorError> for ApiError {
    fn from(_: UserCursorError) -> Self {
        crate::error::invalid_cursor()
    }
}

impl From<StatsDaysError> for ApiError {
    fn from(error: StatsDaysError) -> Self {
        Self::new(400, "invalid_days", error.to_string())
    }
}

impl From<LeaderboardLimitError> for ApiError {
    fn from(error: LeaderboardLimitError) -> Self {
        Self::new(400, "invalid_limit", error.to_string())
    }
}

impl From<UserDetailError> for ApiError {
    fn from(error: UserDetailError) -> Self {
        match error {
            UserDetailError::OperatorsDisabled => operators_disabled(),
            UserDetailError::UserNotFound => user_not_found(&error),
            UserDetailError::Store(e) => e.into(),
            _ => unexpected(&error),
        }
    }
}

impl From<BlockError> for ApiError {
    fn from(error: BlockError) -> Self {
        match error {
            BlockError::OperatorsDisabled => operators_disabled(),
            BlockError::UserNotFound => user_not_found(&error),
            BlockError::Store(e) => e.into(),
            _ => unexpected(&error),
        }
    }
}

impl From<UnblockError> for ApiError {
    fn from(error: UnblockError) -> Self {
        match error {
            UnblockError::OperatorsDisabled => operators_disabled(),
            UnblockError::UserNotFound => user_not_found(&error),
            UnblockError::Store(e) => e.into(),
            _ => unexpected(&error),
        }
    }
}

impl From<VoidRewardError> for ApiError {
    fn from(error: VoidRewardError) -> Self {
        match error {
            VoidRewardError::OperatorsDisabled => operators_disabled(),
            VoidRewardError::RewardNotFound => {
                Self::new(404, "reward_not_found", error.to_string())
            }
            VoidRewardError::NotVoidable { status } => Self::new(
                409,
                "reward_not_voidable",
                format!(
                    "the reward is {} and cannot be voided (only a pending or approved one that is not a clawback can)",
                    status.as_str()
                ),
            ),
            VoidRewardError::Store(e) => e.into(),
            _ => unexpected(&error),
        }
    }
}

impl From<OperatorReadError> for ApiError {
    fn from(error: OperatorReadError) -> Self {
        match error {
            OperatorReadError::OperatorsDisabled => operators_disabled(),
            OperatorReadError::Store(e) => e.into(),
            _ => unexpected(&error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (BlockError::UserNotFound.into(), 404, "user_not_found"),
            (UnblockError::UserNotFound.into(), 404, "user_not_found"),
            (UserDetailError::UserNotFound.into(), 404, "user_not_found"),
            (BlockError::OperatorsDisabled.into(), 404, "not_found"),
            (
                VoidRewardError::RewardNotFound.into(),
                404,
                "reward_not_found",
            ),
            (
                VoidRewardError::NotVoidable {
                    status: referral_core::RewardStatus::Paid,
                }
                .into(),
                409,
                "reward_not_voidable",
            ),
            (ReasonError::Empty.into(), 400, "invalid_reason"),
            (UserQueryError.into(), 400, "invalid_query"),
            (UserCursorError.into(), 400, "invalid_cursor"),
            (StatsDaysError.into(), 400, "invalid_days"),
            (LeaderboardLimitError.into(), 400, "invalid_limit"),
            (
                referral_core::VerifyError::Blocked.into(),
                403,
                "user_blocked",
            ),
            (
                referral_core::ActivateError::Blocked.into(),
                403,
                "user_blocked",
            ),
        ];
        for (e, status, code) in cases {
            assert_eq!((e.status, e.code), (status, code), "{e}");
        }
    }

    /// The document's pattern for `q` is [`QUERY_PATTERN`], and what it
    /// matches the parser accepts.
    #[test]
    fn query_pattern_matches_the_parser() {
        let doc: serde_json::Value = serde_json::from_str(&crate::openapi::json()).unwrap();
        let q = &doc["paths"]["/api/admin/users"]["get"]["parameters"][0];
        assert_eq!(q["name"], "q");
        assert_eq!(q["schema"]["pattern"], QUERY_PATTERN);
        let pattern = regex_lite::Regex::new(QUERY_PATTERN).unwrap();
        for ok in ["", "7", "+7999", "123456789012345", "a7kq2M", "123456"] {
            assert!(pattern.is_match(ok), "{ok}");
            assert!(UserQuery::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "+",
            "7-999",
            "abc",
            "1234567890123456",
            "a7kq2m!",
            "+a7kq2m",
        ] {
            assert!(!pattern.is_match(bad), "{bad}");
            assert!(UserQuery::parse(bad).is_err(), "{bad}");
        }
    }

    /// The document's pattern for `reason` is [`REASON_PATTERN`], and it
    /// accepts what [`Reason::parse`] accepts (schemathesis found the
    /// pattern missing: a reason with a control character was schema-valid).
    #[test]
    fn reason_pattern_matches_the_parser() {
        let doc: serde_json::Value = serde_json::from_str(&crate::openapi::json()).unwrap();
        for schema in ["BlockRequest", "VoidRequest"] {
            let reason = &doc["components"]["schemas"][schema]["properties"]["reason"];
            assert_eq!(reason["pattern"], REASON_PATTERN, "{schema}");
        }
        let pattern = regex_lite::Regex::new(REASON_PATTERN).unwrap();
        let long = "x".repeat(500);
        let cases = [
            "fraud".to_owned(),
            " two words\n".to_owned(),
            "\u{a0}nbsp\u{3000}".to_owned(),
            "\u{85}x".to_owned(),
            "a, \"quoted\" reason".to_owned(),
            long.clone(),
            format!("  {long}\t"),
            format!("{long}y"),
            String::new(),
            "   ".to_owned(),
            "\t\n".to_owned(),
            "line\nbreak".to_owned(),
            "tab\there".to_owned(),
            "\u{1c}x".to_owned(),
            "x\u{7f}".to_owned(),
            "x\u{85}y".to_owned(),
            "nul\0".to_owned(),
        ];
        for case in &cases {
            assert_eq!(
                pattern.is_match(case),
                Reason::parse(case).is_ok(),
                "{case:?}"
            );
        }
        assert!(cases.iter().filter(|c| pattern.is_match(c)).count() >= 7);
    }

    #[test]
    fn admin_phones_in_any_spelling() {
        let region = Some("RU".parse::<Region>().unwrap());
        let admins =
            AdminPhones::parse(["+7 (999) 123-45-67", " ", "8 999 000 00 01"], region).unwrap();
        assert_eq!(admins.len(), 2);
        assert!(admins.contains(&"+79991234567".parse().unwrap()));
        assert!(admins.contains(&"+79990000001".parse().unwrap()));
        assert!(!admins.contains(&"+79990000002".parse().unwrap()));
        let (raw, _) = AdminPhones::parse(["+7999", "+79991234567"], None).unwrap_err();
        assert_eq!(raw, "+7999");
        assert!(!format!("{admins:?}").contains("999"));
    }
}
