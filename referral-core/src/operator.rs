//! What operators see and do: blocks, user search, the leaderboard, program
//! statistics and exports. The port is
//! [`OperatorStore`](crate::store::OperatorStore); the use cases are the
//! operator methods of [`ReferralService`](crate::ReferralService).
//!
//! # What a block does
//!
//! A blocked user (until an operator unblocks them):
//! - cannot log in: [`ReferralStore::register`](crate::store::ReferralStore::register)
//!   answers `Blocked` for their phone, so
//!   [`ReferralService::verify_code`](crate::ReferralService::verify_code)
//!   answers [`VerifyError::Blocked`](crate::VerifyError::Blocked) (the login
//!   code is used up; sending codes works as for anyone, so the answer to a
//!   code request never tells whether a phone is blocked);
//! - cannot activate a code ([`ActivateError::Blocked`](crate::ActivateError::Blocked));
//! - earns nothing new, **as referrer or as referee**: a conversion of a
//!   blocked referee, or of any referee of a blocked referrer, is recorded
//!   but does not qualify (no reward, the referral is not marked converted,
//!   the referee's fixed part is not used up). Blocking is not retroactive:
//!   conversions recorded while blocked never earn later;
//! - keeps their pending rewards pending: approval skips them while the
//!   block lasts and approves them on its first run after the unblock
//!   (their hold has run by then). Reversals still reduce or void them, and
//!   clawbacks are still made;
//! - can still be activated *as a referrer*: someone else activating a
//!   blocked user's code succeeds (the referee did nothing wrong and gets
//!   their welcome reward), but the blocked referrer earns nothing from it.
//!
//! Already approved rewards stay approved (and payable): an operator voids
//! them with [`ReferralService::void_reward`](crate::ReferralService::void_reward)
//! when they must not be paid.
//!
//! Each of these is decided inside the store operation that would make the
//! change (the block is read under the same lock, or in the same
//! statement), so a block racing an approval or a conversion is either
//! entirely before it or entirely after it.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::invite_code::InviteCode;
use crate::money::{Currency, Money};
use crate::phone::PhoneNumber;
use crate::reward::Reward;
use crate::reward::RewardCursor;
use crate::user::{Profile, ReferralCursor, UserId};

/// Why an operator blocked a user or voided a reward: 1 to
/// [`Reason::MAX_CHARS`] characters after trimming, no control characters.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Reason(Box<str>);

/// Why a string is not a [`Reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReasonError {
    /// Nothing but white space.
    #[error("a reason must not be empty")]
    Empty,
    /// Longer than [`Reason::MAX_CHARS`] characters.
    #[error("a reason holds at most 500 characters")]
    TooLong,
    /// A control character (a line break, a tab…).
    #[error("a reason must not hold control characters")]
    ControlCharacter,
}

impl Reason {
    /// The longest reason, in characters.
    pub const MAX_CHARS: usize = 500;

    /// Parses a reason typed by an operator (trimmed).
    ///
    /// # Errors
    /// [`ReasonError`] for an empty or too long reason or a control character.
    pub fn parse(input: &str) -> Result<Self, ReasonError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(ReasonError::Empty);
        }
        if s.chars().count() > Self::MAX_CHARS {
            return Err(ReasonError::TooLong);
        }
        if s.chars().any(char::is_control) {
            return Err(ReasonError::ControlCharacter);
        }
        Ok(Self(s.into()))
    }

    /// The reason.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reason({:?})", &*self.0)
    }
}

impl FromStr for Reason {
    type Err = ReasonError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Reason {
    type Error = ReasonError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Reason> for String {
    fn from(r: Reason) -> Self {
        r.0.into()
    }
}

/// A user's block: why, when, and by which operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// Why.
    pub reason: Reason,
    /// When.
    pub at: DateTime<Utc>,
    /// The operator's user id.
    pub by: UserId,
}

/// The digits a phone starts with, as an operator searches for it: 1 to 15
/// ASCII digits, `+` optional (`"7999"` and `"+7999"` are the same prefix).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhonePrefix(Box<str>);

impl PhonePrefix {
    /// Parses a prefix: an optional `+`, then 1 to 15 ASCII digits.
    #[must_use]
    pub fn parse(input: &str) -> Option<Self> {
        let s = input.trim();
        let digits = s.strip_prefix('+').unwrap_or(s);
        (!digits.is_empty() && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Self(format!("+{digits}").into()))
    }

    /// The prefix as E.164 text starts: `+` and the digits.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `phone` starts with it.
    #[must_use]
    pub fn matches(&self, phone: &PhoneNumber) -> bool {
        phone.to_e164().starts_with(&*self.0)
    }
}

/// What an operator searches users by.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UserQuery {
    /// Every user.
    All,
    /// Users whose phone starts with `phone` (when given) or whose invite
    /// code is `invite_code` (when given); at least one is given.
    Match {
        /// A phone prefix.
        phone: Option<PhonePrefix>,
        /// An exact invite code.
        invite_code: Option<InviteCode>,
    },
}

/// A search text that is neither a phone prefix nor an invite code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("search by phone digits (a leading '+' optional) or by an invite code")]
pub struct UserQueryError;

impl UserQuery {
    /// Parses an operator's search text: empty → [`UserQuery::All`]; digits
    /// (`+` optional) → a phone prefix; six letters and digits → an invite
    /// code (any case); six digits are both.
    ///
    /// # Errors
    /// [`UserQueryError`] when the text is none of these.
    pub fn parse(input: &str) -> Result<Self, UserQueryError> {
        let s = input.trim();
        if s.is_empty() {
            return Ok(Self::All);
        }
        let phone = PhonePrefix::parse(s);
        let invite_code = InviteCode::parse(s).ok();
        if phone.is_none() && invite_code.is_none() {
            return Err(UserQueryError);
        }
        Ok(Self::Match { phone, invite_code })
    }

    /// Whether a user with this phone and code is a match.
    #[must_use]
    pub fn matches(&self, phone: &PhoneNumber, code: &InviteCode) -> bool {
        match self {
            Self::All => true,
            Self::Match {
                phone: p,
                invite_code,
            } => p.as_ref().is_some_and(|p| p.matches(phone)) || invite_code.as_ref() == Some(code),
        }
    }
}

/// A position in a user search: the phone of the last user seen (users are
/// ordered by their E.164 text). Shown to clients as that text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserCursor(PhoneNumber);

/// A string that is not a [`UserCursor`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a user cursor")]
pub struct UserCursorError;

impl UserCursor {
    /// The cursor just after the user with `phone`.
    #[must_use]
    pub fn after(phone: PhoneNumber) -> Self {
        Self(phone)
    }

    /// The phone of the last user seen.
    #[must_use]
    pub fn phone(&self) -> PhoneNumber {
        self.0
    }

    /// Decodes a cursor from [`Display`](fmt::Display) output.
    ///
    /// # Errors
    /// [`UserCursorError`] for anything else.
    pub fn parse(input: &str) -> Result<Self, UserCursorError> {
        let phone: PhoneNumber = input.parse().map_err(|_| UserCursorError)?;
        // Only the canonical spelling this type writes.
        if phone.to_e164() != input {
            return Err(UserCursorError);
        }
        Ok(Self(phone))
    }
}

impl fmt::Display for UserCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for UserCursor {
    type Err = UserCursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A user as a search lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSummary {
    /// The user's id.
    pub id: UserId,
    /// Their phone.
    pub phone: PhoneNumber,
    /// Their invite code.
    pub invite_code: InviteCode,
    /// How many users activated their code.
    pub referral_count: u64,
    /// Whether they are blocked now.
    pub blocked: bool,
    /// When they first logged in.
    pub created_at: DateTime<Utc>,
}

/// One page of a user search, ordered by phone (E.164 text).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserSearchPage {
    /// The users on this page.
    pub items: Vec<UserSummary>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<UserCursor>,
}

/// The referrer of a user, as the user detail shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Referrer {
    /// Their id.
    pub id: UserId,
    /// Their phone.
    pub phone: PhoneNumber,
}

/// A user as an operator sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDetail {
    /// Their profile (balances filled by the service).
    pub profile: Profile,
    /// Whose code they activated.
    pub referrer: Option<Referrer>,
    /// Their block, while blocked.
    pub block: Option<Block>,
}

/// One referrer on the leaderboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderboardEntry {
    /// The referrer.
    pub user: UserId,
    /// Their phone.
    pub phone: PhoneNumber,
    /// Their referrals (in the window asked for, or all time).
    pub referrals: u64,
    /// When the latest of those referrals activated.
    pub latest_activation: DateTime<Utc>,
    /// Their approved and paid referrer rewards (clawbacks included), per
    /// currency, sorted by currency; all time, whatever the window.
    pub rewarded: Vec<Money>,
}

/// Reward totals of the program in one currency (amounts in minor units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardTotals {
    /// The currency.
    pub currency: Currency,
    /// Sum of pending rewards.
    pub pending: i64,
    /// Sum of approved rewards, clawbacks included.
    pub approved: i64,
    /// Sum of paid rewards.
    pub paid: i64,
    /// Sum of voided rewards (each at its last amount).
    pub voided: i64,
}

/// What the program did, all time.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProgramTotals {
    /// Users.
    pub users: u64,
    /// Activated invite codes.
    pub activations: u64,
    /// Recorded conversions.
    pub conversions: u64,
    /// Reward totals per currency, sorted by currency.
    pub rewards: Vec<RewardTotals>,
}

/// What was created on one UTC date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayStats {
    /// The date (UTC).
    pub date: NaiveDate,
    /// Users created.
    pub users: u64,
    /// Invite codes activated.
    pub activations: u64,
    /// Conversions recorded.
    pub conversions: u64,
}

/// Program statistics: totals and one row per day.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stats {
    /// All time.
    pub totals: ProgramTotals,
    /// One row per date, oldest first, the last one today (UTC).
    pub days: Vec<DayStats>,
}

/// How many days of statistics: 1 to 366.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatsDays(u16);

/// A number of days outside 1..=366.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("days must be between 1 and 366")]
pub struct StatsDaysError;

impl StatsDays {
    /// `n` days.
    ///
    /// # Errors
    /// [`StatsDaysError`] outside 1..=366.
    pub fn new(n: u64) -> Result<Self, StatsDaysError> {
        match u16::try_from(n) {
            Ok(n @ 1..=366) => Ok(Self(n)),
            _ => Err(StatsDaysError),
        }
    }

    /// The number of days.
    #[must_use]
    pub fn get(self) -> u16 {
        self.0
    }
}

/// How many referrers a leaderboard lists: 1 to 100 (10 by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaderboardLimit(u8);

/// A leaderboard size outside 1..=100.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a leaderboard lists 1 to 100 referrers")]
pub struct LeaderboardLimitError;

impl LeaderboardLimit {
    /// `n` referrers.
    ///
    /// # Errors
    /// [`LeaderboardLimitError`] outside 1..=100.
    pub fn new(n: u64) -> Result<Self, LeaderboardLimitError> {
        match u8::try_from(n) {
            Ok(n @ 1..=100) => Ok(Self(n)),
            _ => Err(LeaderboardLimitError),
        }
    }

    /// The number of referrers.
    #[must_use]
    pub fn get(self) -> usize {
        usize::from(self.0)
    }
}

impl Default for LeaderboardLimit {
    fn default() -> Self {
        Self(10)
    }
}

/// One row of the referrals export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferralExportRow {
    /// The referrer (the code's owner).
    pub referrer: UserId,
    /// Their phone.
    pub referrer_phone: PhoneNumber,
    /// The referee (who activated the code).
    pub referee: UserId,
    /// Their phone.
    pub referee_phone: PhoneNumber,
    /// The code activated.
    pub invite_code: InviteCode,
    /// When.
    pub activated_at: DateTime<Utc>,
}

impl ReferralExportRow {
    /// The cursor just after this row (exports run by
    /// `(activated_at, referee)` ascending).
    #[must_use]
    pub fn cursor(&self) -> ReferralCursor {
        ReferralCursor::new(self.activated_at, self.referee)
    }
}

/// One row of the rewards export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardExportRow {
    /// The reward.
    pub reward: Reward,
    /// The phone of its owner.
    pub phone: PhoneNumber,
}

impl RewardExportRow {
    /// The cursor just after this row (exports run by `(created_at, id)`
    /// ascending).
    #[must_use]
    pub fn cursor(&self) -> RewardCursor {
        RewardCursor::after(&self.reward)
    }
}

/// A batch of an export: at most the number of rows asked for, and where
/// the next batch starts (`None` after the last row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportBatch<R, C> {
    /// The rows, in export order.
    pub rows: Vec<R>,
    /// Pass it to get the next batch; `None` when this batch ends the export.
    pub next: Option<C>,
}

impl<R, C> Default for ExportBatch<R, C> {
    fn default() -> Self {
        Self {
            rows: Vec::new(),
            next: None,
        }
    }
}

/// A batch of the referrals export.
pub type ReferralExportBatch = ExportBatch<ReferralExportRow, ReferralCursor>;
/// A batch of the rewards export.
pub type RewardExportBatch = ExportBatch<RewardExportRow, RewardCursor>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons() {
        assert_eq!(Reason::parse("  spam  ").unwrap().as_str(), "spam");
        assert_eq!(Reason::parse(" "), Err(ReasonError::Empty));
        assert_eq!(Reason::parse("a\nb"), Err(ReasonError::ControlCharacter));
        assert_eq!(
            Reason::parse(&"é".repeat(500))
                .unwrap()
                .as_str()
                .chars()
                .count(),
            500
        );
        assert_eq!(Reason::parse(&"é".repeat(501)), Err(ReasonError::TooLong));
        assert!(Reason::parse("a, \"quoted\" reason").is_ok());
    }

    #[test]
    fn queries() {
        assert_eq!(UserQuery::parse(" "), Ok(UserQuery::All));
        let UserQuery::Match { phone, invite_code } = UserQuery::parse("+7999").unwrap() else {
            panic!()
        };
        assert_eq!(phone.unwrap().as_str(), "+7999");
        assert!(invite_code.is_none());
        let UserQuery::Match { phone, invite_code } = UserQuery::parse("a7kq2m").unwrap() else {
            panic!()
        };
        assert!(phone.is_none());
        assert_eq!(invite_code.unwrap().as_str(), "A7KQ2M");
        let UserQuery::Match { phone, invite_code } = UserQuery::parse("123456").unwrap() else {
            panic!()
        };
        assert!(phone.is_some() && invite_code.is_some());
        assert_eq!(UserQuery::parse("7-999"), Err(UserQueryError));
        assert_eq!(UserQuery::parse("+"), Err(UserQueryError));
        assert_eq!(UserQuery::parse(&"1".repeat(16)), Err(UserQueryError));
    }

    #[test]
    fn cursors_and_limits() {
        let c = UserCursor::parse("+79991234567").unwrap();
        assert_eq!(c.to_string(), "+79991234567");
        assert!(UserCursor::parse("+7 999 123 45 67").is_err());
        assert!(UserCursor::parse("x").is_err());
        assert!(StatsDays::new(0).is_err() && StatsDays::new(367).is_err());
        assert_eq!(StatsDays::new(366).unwrap().get(), 366);
        assert!(LeaderboardLimit::new(0).is_err() && LeaderboardLimit::new(101).is_err());
        assert_eq!(LeaderboardLimit::default().get(), 10);
    }
}
