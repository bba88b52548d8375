//! The JSON bodies of the operator routes (API.md, "Operators"), with their
//! OpenAPI schemas.

use referral_core::{
    Block, DayStats, LeaderboardEntry, Money, Referrer, RewardTotals, Stats, UserDetail,
    UserSummary,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::dto::{ProfileResponse, timestamp};

/// One user in a search page.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct UserSummaryDto {
    /// The user's id.
    pub id: String,
    /// Their phone, E.164.
    pub phone: String,
    /// Their own invite code.
    pub invite_code: String,
    /// How many users activated their code.
    pub referral_count: u64,
    /// Whether they are blocked now.
    pub blocked: bool,
    /// When they first logged in (RFC 3339).
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<&UserSummary> for UserSummaryDto {
    fn from(u: &UserSummary) -> Self {
        Self {
            id: u.id.to_string(),
            phone: u.phone.to_string(),
            invite_code: u.invite_code.to_string(),
            referral_count: u.referral_count,
            blocked: u.blocked,
            created_at: timestamp(u.created_at),
        }
    }
}

/// 200 of `GET /api/admin/users`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct UsersPage {
    /// Users, ordered by phone.
    pub items: Vec<UserSummaryDto>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The referrer of a user.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct ReferrerDto {
    /// Their id.
    pub id: String,
    /// Their phone, E.164.
    pub phone: String,
}

impl From<&Referrer> for ReferrerDto {
    fn from(r: &Referrer) -> Self {
        Self {
            id: r.id.to_string(),
            phone: r.phone.to_string(),
        }
    }
}

/// A user's block.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct BlockDto {
    /// Why the operator blocked them.
    pub reason: String,
    /// When (RFC 3339).
    #[schema(format = DateTime)]
    pub at: String,
    /// The operator's user id.
    pub by: String,
}

impl From<&Block> for BlockDto {
    fn from(b: &Block) -> Self {
        Self {
            reason: b.reason.to_string(),
            at: timestamp(b.at),
            by: b.by.to_string(),
        }
    }
}

/// 200 of `GET /api/admin/users/{id}` and of the block and unblock routes.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct UserDetailDto {
    /// The user's profile, balances included.
    pub user: ProfileResponse,
    /// Whose code they activated, if anyone's.
    pub referrer: Option<ReferrerDto>,
    /// Their block, while blocked.
    pub blocked: Option<BlockDto>,
}

impl From<&UserDetail> for UserDetailDto {
    fn from(d: &UserDetail) -> Self {
        Self {
            user: ProfileResponse::from(&d.profile),
            referrer: d.referrer.as_ref().map(ReferrerDto::from),
            blocked: d.block.as_ref().map(BlockDto::from),
        }
    }
}

/// `POST /api/admin/users/{id}/block`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({"reason": "several accounts from one device"}))]
pub struct BlockRequest {
    /// Why: 1 to 500 characters after trimming, no control characters (see
    /// [`REASON_PATTERN`](crate::admin::REASON_PATTERN)).
    #[schema(
        pattern = r"^[\t-\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000](?:[^\x00-\x1F\x7F-\x9F]{0,498}[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000])?[\t-\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$"
    )]
    pub reason: String,
}

/// `POST /api/admin/users/{id}/unblock`: an empty object.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({}))]
pub struct UnblockRequest {}

/// `POST /api/admin/rewards/{id}/void`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({"reason": "the order was fraudulent"}))]
pub struct VoidRequest {
    /// Why: 1 to 500 characters after trimming, no control characters (see
    /// [`REASON_PATTERN`](crate::admin::REASON_PATTERN)).
    #[schema(
        pattern = r"^[\t-\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000](?:[^\x00-\x1F\x7F-\x9F]{0,498}[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000])?[\t-\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$"
    )]
    pub reason: String,
}

/// An amount of money.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct MoneyDto {
    /// ISO 4217 code.
    pub currency: String,
    /// Minor units.
    pub amount: i64,
}

impl From<&Money> for MoneyDto {
    fn from(m: &Money) -> Self {
        Self {
            currency: m.currency().to_string(),
            amount: m.amount(),
        }
    }
}

/// One referrer on the leaderboard.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct LeaderboardItem {
    /// The referrer's id.
    pub user_id: String,
    /// Their phone, E.164.
    pub phone: String,
    /// Their referrals (in the window asked for, or all time).
    pub referrals: u64,
    /// Their approved and paid referrer rewards, clawbacks included, per
    /// currency (all time).
    pub rewarded: Vec<MoneyDto>,
}

impl From<&LeaderboardEntry> for LeaderboardItem {
    fn from(e: &LeaderboardEntry) -> Self {
        Self {
            user_id: e.user.to_string(),
            phone: e.phone.to_string(),
            referrals: e.referrals,
            rewarded: e.rewarded.iter().map(MoneyDto::from).collect(),
        }
    }
}

/// 200 of `GET /api/admin/leaderboard`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct Leaderboard {
    /// Referrers, most referrals first.
    pub items: Vec<LeaderboardItem>,
}

/// Reward totals of the program in one currency, minor units.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct RewardTotalsDto {
    /// ISO 4217 code.
    pub currency: String,
    /// Sum of pending rewards.
    pub pending: i64,
    /// Sum of approved rewards, clawbacks included.
    pub approved: i64,
    /// Sum of paid rewards.
    pub paid: i64,
    /// Sum of voided rewards (each at its last amount).
    pub voided: i64,
}

impl From<&RewardTotals> for RewardTotalsDto {
    fn from(t: &RewardTotals) -> Self {
        Self {
            currency: t.currency.to_string(),
            pending: t.pending,
            approved: t.approved,
            paid: t.paid,
            voided: t.voided,
        }
    }
}

/// The program's all-time totals.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct TotalsDto {
    /// Users.
    pub users: u64,
    /// Activated invite codes.
    pub activations: u64,
    /// Recorded conversions.
    pub conversions: u64,
    /// Reward totals per currency, sorted by currency.
    pub rewards: Vec<RewardTotalsDto>,
}

/// What was created on one UTC date.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct DayDto {
    /// The date, `YYYY-MM-DD` (UTC).
    #[schema(format = Date)]
    pub date: String,
    /// Users created.
    pub users: u64,
    /// Invite codes activated.
    pub activations: u64,
    /// Conversions recorded.
    pub conversions: u64,
}

impl From<&DayStats> for DayDto {
    fn from(d: &DayStats) -> Self {
        Self {
            date: d.date.format("%Y-%m-%d").to_string(),
            users: d.users,
            activations: d.activations,
            conversions: d.conversions,
        }
    }
}

/// 200 of `GET /api/admin/stats`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct StatsDto {
    /// All time.
    pub totals: TotalsDto,
    /// One row per date, oldest first, exactly `days` rows, the last one
    /// today (UTC).
    pub days: Vec<DayDto>,
}

impl From<&Stats> for StatsDto {
    fn from(s: &Stats) -> Self {
        let t = &s.totals;
        Self {
            totals: TotalsDto {
                users: t.users,
                activations: t.activations,
                conversions: t.conversions,
                rewards: t.rewards.iter().map(RewardTotalsDto::from).collect(),
            },
            days: s.days.iter().map(DayDto::from).collect(),
        }
    }
}
