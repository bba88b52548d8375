//! Rewards: conversions the host reports, the reward ledger they produce,
//! and the policy that turns one into the other.
//!
//! A **conversion** is something a referred user did that the program pays
//! for (an order, a subscription), reported by the host under its own
//! external id. The [`RewardPolicy`] turns a qualifying conversion into
//! rewards for the referrer (a fixed amount on the referee's first one, a
//! share of each one), and an activation into a welcome reward for the
//! referee. Rewards are ledger entries: a refund reduces a reward that is
//! still `pending`, and adds a negative [`RewardKind::Clawback`] for one
//! that was already approved or paid; nothing approved is ever edited.
//!
//! The rules, exactly (all amounts in minor units, all rounding down):
//! - a conversion **qualifies** when its user activated someone's code, it
//!   happened at or after that activation and at most
//!   [`RewardPolicy::window`] after it, its amount is at least
//!   [`RewardPolicy::min_amount`], and neither its user nor the referrer is
//!   blocked (see [`crate::operator`]);
//! - [`RewardPolicy::referrer_fixed`] goes to the referrer with the
//!   referee's **first** qualifying conversion in
//!   [`RewardPolicy::currency`] (once per referee, whatever happens to it
//!   later); [`RewardPolicy::referrer_bp`] of **every** qualifying
//!   conversion, `floor(amount × bp ÷ 10000)`, in the conversion's currency;
//! - the cap [`RewardPolicy::max_per_referrer`]: in **every** rolling
//!   `cap_window`, the sum of the referrer's non-voided referrer rewards
//!   and clawbacks in that currency created in it never passes the cap. A
//!   new reward is cut to what is left (the fixed part first, then the
//!   percentage), and none is made when nothing is left, where the room
//!   used is the most that the rewards and clawbacks created in
//!   `(now − cap_window, now]` sum to over every suffix of them in time
//!   (all those created at or after some instant), and at least 0: the
//!   windows still to come that hold the new reward. Not just their whole
//!   sum: a clawback is created after the reward it claws back, so once
//!   that reward has left the window, the clawback alone would make room
//!   that a later window (holding the new reward, not the clawback) lacks;
//! - a reward of 0 is never made;
//! - a reversal leaves each (non-clawback) reward of the conversion worth
//!   `floor(original × remaining ÷ conversion amount)`, from its original
//!   amount: a `pending` one is reduced to that, or `voided` at 0 (keeping
//!   its last amount); an `approved` or `paid` one gets one `clawback` with
//!   the negative difference, approved at once.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::keyset;
use crate::money::{BasisPoints, Currency, Money};
use crate::phone::PhoneNumber;
use crate::user::UserId;
use crate::uuid_id::uuid_id;

/// Why a string is not an external id ([`ConversionId`], [`ReversalId`],
/// [`PayoutRef`]) or a [`ConversionKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExternalIdError {
    /// Empty.
    #[error("the id is empty")]
    Empty,
    /// Longer than allowed.
    #[error("the id is longer than {max} characters")]
    TooLong {
        /// The most characters allowed.
        max: usize,
    },
    /// A character outside `!` to `~` (printable ASCII without the space).
    #[error("the id holds a character outside '!' to '~'")]
    InvalidCharacter,
}

fn check_external(input: &str, max: usize) -> Result<(), ExternalIdError> {
    if input.is_empty() {
        return Err(ExternalIdError::Empty);
    }
    if !input.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
        return Err(ExternalIdError::InvalidCharacter);
    }
    if input.len() > max {
        return Err(ExternalIdError::TooLong { max });
    }
    Ok(())
}

macro_rules! external_id {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Box<str>);

        impl $name {
            /// The most characters it may have.
            pub const MAX_LEN: usize = $max;

            /// Parses 1 to [`Self::MAX_LEN`] characters from `!` to `~`
            /// (printable ASCII, no space), exactly as given.
            ///
            /// # Errors
            /// [`ExternalIdError`] for anything else.
            pub fn parse(input: &str) -> Result<Self, ExternalIdError> {
                check_external(input, $max)?;
                Ok(Self(input.into()))
            }

            /// The id as given.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl FromStr for $name {
            type Err = ExternalIdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ExternalIdError;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                check_external(&s, $max)?;
                Ok(Self(s.into_boxed_str()))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0.into_string()
            }
        }
    };
}

external_id!(
    /// The host's own id of a conversion (an order number): 1–128 characters
    /// from `!` to `~`, unique per conversion, compared exactly.
    ConversionId,
    128
);

external_id!(
    /// The host's id of one reversal (refund) of a conversion: 1–128
    /// characters from `!` to `~`; unique per conversion.
    ReversalId,
    128
);

external_id!(
    /// The host's reference of the payout that paid a reward: 1–128
    /// characters from `!` to `~`.
    PayoutRef,
    128
);

external_id!(
    /// What kind of conversion it was (`purchase` by default): 1–32
    /// characters from `!` to `~`. Informative only: the policy treats every
    /// kind alike.
    ConversionKind,
    32
);

impl Default for ConversionKind {
    fn default() -> Self {
        Self("purchase".into())
    }
}

uuid_id!(
    /// A reward's id: a random UUID.
    RewardId,
    RewardIdError
);

/// A string that is not a [`RewardId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a reward id")]
pub struct RewardIdError;

/// A string that is not a [`RewardKind`] or [`RewardStatus`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown reward kind or status")]
pub struct UnknownNameError;

/// Why a reward was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardKind {
    /// The referrer's fixed amount, on a referee's first qualifying conversion.
    ReferrerFixed,
    /// The referrer's share of a qualifying conversion.
    ReferrerPercent,
    /// The referee's gift for activating a code.
    Welcome,
    /// A negative entry taking back part of an approved or paid reward after
    /// a reversal.
    Clawback,
}

impl RewardKind {
    /// The snake_case name (`referrer_fixed`…), as in JSON and SQL.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReferrerFixed => "referrer_fixed",
            Self::ReferrerPercent => "referrer_percent",
            Self::Welcome => "welcome",
            Self::Clawback => "clawback",
        }
    }

    /// Whether it counts against the referrer's cap (referrer rewards and
    /// their clawbacks).
    #[must_use]
    pub fn is_referrer_side(self) -> bool {
        !matches!(self, Self::Welcome)
    }
}

impl FromStr for RewardKind {
    type Err = UnknownNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::ReferrerFixed,
            Self::ReferrerPercent,
            Self::Welcome,
            Self::Clawback,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or(UnknownNameError)
    }
}

/// Where a reward is in its life: `pending` → `approved` → `paid`, or
/// `voided` (from `pending`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardStatus {
    /// Held through the refund window.
    Pending,
    /// Due to be paid.
    Approved,
    /// Paid out by the host.
    Paid,
    /// Cancelled; counts nowhere.
    Voided,
}

impl RewardStatus {
    /// The snake_case name (`pending`…), as in JSON and SQL.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Paid => "paid",
            Self::Voided => "voided",
        }
    }
}

impl FromStr for RewardStatus {
    type Err = UnknownNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Pending, Self::Approved, Self::Paid, Self::Voided]
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or(UnknownNameError)
    }
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reward {
    /// Its id.
    pub id: RewardId,
    /// Who earns it.
    pub user: UserId,
    /// Why it was made.
    pub kind: RewardKind,
    /// What it is worth now (negative for a clawback). A pending reward
    /// shrinks with reversals; a voided one keeps its last amount.
    pub amount: Money,
    /// What it was worth when made (after the cap).
    pub original_amount: Money,
    /// Where it is in its life.
    pub status: RewardStatus,
    /// The conversion it comes from (`None` for a welcome reward).
    pub conversion: Option<ConversionId>,
    /// The other side of the referral: the referee on referrer rewards and
    /// clawbacks, the referrer on a welcome reward.
    pub referral: Option<UserId>,
    /// That user's phone.
    pub referral_phone: Option<PhoneNumber>,
    /// On a clawback: the reward it takes back from.
    pub reverses: Option<RewardId>,
    /// When it was made; its hold runs from here.
    pub created_at: DateTime<Utc>,
    /// When it was approved.
    pub approved_at: Option<DateTime<Utc>>,
    /// When it was marked paid.
    pub paid_at: Option<DateTime<Utc>>,
    /// The host's payout reference.
    pub payout_ref: Option<PayoutRef>,
}

/// A recorded conversion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversion {
    /// The host's id.
    pub id: ConversionId,
    /// Whose conversion it is (the referee).
    pub user: UserId,
    /// How much was spent.
    pub amount: Money,
    /// What kind of conversion.
    pub kind: ConversionKind,
    /// When it happened (the host's time; qualification is measured by it).
    pub occurred_at: DateTime<Utc>,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// How much of `amount` has been reversed so far, in minor units.
    pub reversed_amount: i64,
}

/// Whose conversion it is, as the host names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversionUser {
    /// By id.
    Id(UserId),
    /// By phone.
    Phone(PhoneNumber),
}

/// A conversion as the host reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConversion {
    /// The host's id.
    pub id: ConversionId,
    /// Whose it is.
    pub user: ConversionUser,
    /// How much was spent: 1 to [`Money::MAX_AMOUNT`] minor units.
    pub amount: Money,
    /// What kind.
    pub kind: ConversionKind,
    /// When it happened; `None`: at the moment it is recorded. A repeat of
    /// the same conversion only has to match it when it is given.
    pub occurred_at: Option<DateTime<Utc>>,
}

/// A user's reward totals in one currency (voided rewards count nowhere;
/// clawbacks count in `approved`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// The currency.
    pub currency: Currency,
    /// Sum of pending rewards.
    pub pending: i64,
    /// Sum of approved rewards, clawbacks included.
    pub approved: i64,
    /// Sum of paid rewards.
    pub paid: i64,
}

impl Balance {
    /// An empty balance in `currency`.
    #[must_use]
    pub fn new(currency: Currency) -> Self {
        Self {
            currency,
            pending: 0,
            approved: 0,
            paid: 0,
        }
    }

    /// Adds `amount` to the total of `status` (nothing for `Voided`);
    /// saturating, which no real ledger reaches.
    pub fn add(&mut self, status: RewardStatus, amount: i64) {
        let slot = match status {
            RewardStatus::Pending => &mut self.pending,
            RewardStatus::Approved => &mut self.approved,
            RewardStatus::Paid => &mut self.paid,
            RewardStatus::Voided => return,
        };
        *slot = slot.saturating_add(amount);
    }

    /// Whether every total is zero.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pending == 0 && self.approved == 0 && self.paid == 0
    }
}

/// One page of a user's rewards, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RewardPage {
    /// The rewards on this page.
    pub items: Vec<Reward>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<RewardCursor>,
}

/// A position in a reward list: the `(created_at, id)` key of the last
/// reward seen. Lists run newest first, so the next page holds the keys below
/// it. Shown to clients as an opaque string.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RewardCursor {
    created_at: DateTime<Utc>,
    id: RewardId,
}

/// A string that is not a [`RewardCursor`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a reward cursor")]
pub struct RewardCursorError;

impl RewardCursor {
    /// The cursor just after (older than) the reward `id` made at `created_at`.
    #[must_use]
    pub fn new(created_at: DateTime<Utc>, id: RewardId) -> Self {
        Self { created_at, id }
    }

    /// The cursor just after `reward`.
    #[must_use]
    pub fn after(reward: &Reward) -> Self {
        Self::new(reward.created_at, reward.id)
    }

    /// The creation time of the last reward seen.
    #[must_use]
    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }

    /// The last reward seen.
    #[must_use]
    pub fn id(&self) -> RewardId {
        self.id
    }

    /// Decodes a cursor from [`Display`](fmt::Display) output.
    ///
    /// # Errors
    /// [`RewardCursorError`] for anything this crate did not write.
    pub fn parse(input: &str) -> Result<Self, RewardCursorError> {
        let (created_at, id) = keyset::decode(input).ok_or(RewardCursorError)?;
        Ok(Self::new(created_at, RewardId(id)))
    }
}

impl fmt::Display for RewardCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&keyset::encode(self.created_at, self.id.0))
    }
}

impl fmt::Debug for RewardCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RewardCursor({}, {})", self.created_at, self.id)
    }
}

impl FromStr for RewardCursor {
    type Err = RewardCursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// What the program pays, and when. Every amount is in minor units; the
/// default pays nobody (every amount zero), so nothing changes for a program
/// that does not reward.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RewardPolicy {
    /// Paid to the referrer with a referee's first qualifying conversion in
    /// [`currency`](Self::currency) (0).
    pub referrer_fixed: i64,
    /// Share of each qualifying conversion paid to the referrer, rounded down
    /// (0).
    pub referrer_bp: BasisPoints,
    /// Conversions later than this after the referee's activation earn
    /// nothing (365 days).
    pub window: Duration,
    /// Conversions below this amount earn nothing (0).
    pub min_amount: i64,
    /// Given to the referee when they activate a code, approved at once (0).
    pub welcome: i64,
    /// Currency of `referrer_fixed` and `welcome` (`RUB`).
    pub currency: Currency,
    /// Most a referrer earns per currency in any rolling
    /// [`cap_window`](Self::cap_window); `None`: no cap.
    pub max_per_referrer: Option<i64>,
    /// The cap's rolling window (30 days).
    pub cap_window: Duration,
    /// How long a reward stays pending before it is approved (30 days; zero:
    /// approved at the next approval run).
    pub hold: Duration,
}

impl Default for RewardPolicy {
    fn default() -> Self {
        const DAY: u64 = 24 * 3600;
        Self {
            referrer_fixed: 0,
            referrer_bp: BasisPoints::ZERO,
            window: Duration::from_secs(365 * DAY),
            min_amount: 0,
            welcome: 0,
            currency: Currency::RUB,
            max_per_referrer: None,
            cap_window: Duration::from_secs(30 * DAY),
            hold: Duration::from_secs(30 * DAY),
        }
    }
}

impl RewardPolicy {
    /// Whether the policy pays anything at all.
    #[must_use]
    pub fn pays(&self) -> bool {
        self.referrer_fixed != 0 || !self.referrer_bp.is_zero() || self.welcome != 0
    }

    /// The welcome reward as money, `None` when there is none.
    #[must_use]
    pub fn welcome_money(&self) -> Option<Money> {
        (self.welcome > 0).then(|| Money::new(self.welcome, self.currency))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;
    use proptest::prelude::*;
    use uuid::Uuid;

    #[test]
    fn external_ids() {
        assert_eq!(
            ConversionId::parse("order-17").unwrap().as_str(),
            "order-17"
        );
        assert_eq!(ConversionId::parse(""), Err(ExternalIdError::Empty));
        assert_eq!(
            ConversionId::parse("a b"),
            Err(ExternalIdError::InvalidCharacter)
        );
        assert_eq!(
            ConversionId::parse("é"),
            Err(ExternalIdError::InvalidCharacter)
        );
        assert!(ConversionId::parse(&"x".repeat(128)).is_ok());
        assert_eq!(
            ConversionId::parse(&"x".repeat(129)),
            Err(ExternalIdError::TooLong { max: 128 })
        );
        assert!(ConversionKind::parse(&"k".repeat(33)).is_err());
        assert_eq!(ConversionKind::default().as_str(), "purchase");
        assert!(serde_json::from_str::<ConversionId>("\"a b\"").is_err());
        assert!(ConversionId::parse("!~").is_ok());
    }

    #[test]
    fn names_round_trip() {
        for k in [
            RewardKind::ReferrerFixed,
            RewardKind::ReferrerPercent,
            RewardKind::Welcome,
            RewardKind::Clawback,
        ] {
            assert_eq!(k.as_str().parse::<RewardKind>(), Ok(k));
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
        for s in [
            RewardStatus::Pending,
            RewardStatus::Approved,
            RewardStatus::Paid,
            RewardStatus::Voided,
        ] {
            assert_eq!(s.as_str().parse::<RewardStatus>(), Ok(s));
        }
        assert!("Pending".parse::<RewardStatus>().is_err());
    }

    #[test]
    fn reward_ids() {
        let id = RewardId::generate(&SeededRandom::new(3));
        assert_eq!(RewardId::parse(&id.to_string()), Ok(id));
        assert!(RewardId::parse("nope").is_err());
    }

    #[test]
    fn default_policy_pays_nobody() {
        let p = RewardPolicy::default();
        assert!(!p.pays());
        assert_eq!(p.welcome_money(), None);
    }

    proptest! {
        #[test]
        fn cursor_round_trip(micros in -10_000_000_000_000_000i64..10_000_000_000_000_000, id: u128) {
            let at = DateTime::from_timestamp_micros(micros).unwrap();
            let c = RewardCursor::new(at, RewardId(Uuid::from_u128(id)));
            prop_assert_eq!(RewardCursor::parse(&c.to_string()), Ok(c));
        }

        #[test]
        fn external_id_parse_matches_rule(s in "\\PC{0,140}") {
            let ok = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| (b'!'..=b'~').contains(&b));
            prop_assert_eq!(ConversionId::parse(&s).is_ok(), ok);
        }
    }
}
