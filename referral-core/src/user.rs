//! Users, their profiles and their referrals.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::invite_code::InviteCode;
use crate::keyset;
use crate::phone::PhoneNumber;
use crate::uuid_id::uuid_id;

uuid_id!(
    /// A user's id: a random UUID, so ids reveal neither order nor count.
    UserId,
    UserIdError
);

/// A string that is not a [`UserId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a user id")]
pub struct UserIdError;

/// A registered user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The user's id.
    pub id: UserId,
    /// The phone the user logs in with; unique.
    pub phone: PhoneNumber,
    /// The user's own invite code; unique, never changed.
    pub invite_code: InviteCode,
    /// When the first successful login created the user.
    pub created_at: DateTime<Utc>,
}

/// What a user sees of themselves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The user.
    pub user: User,
    /// The other user's code this user activated, if any.
    pub activated_invite_code: Option<InviteCode>,
    /// How many users activated this user's code.
    pub referral_count: u64,
    /// Phones of the first users who activated this user's code, oldest
    /// activation first (as many as the caller asked for).
    pub referrals: Vec<PhoneNumber>,
    /// The user's reward totals per currency, sorted by currency: filled by
    /// [`ReferralService::profile`](crate::ReferralService::profile) from the
    /// [`RewardStore`](crate::store::RewardStore); a
    /// [`ReferralStore`](crate::store::ReferralStore) leaves it empty.
    #[serde(default)]
    pub rewards: Vec<crate::reward::Balance>,
}

/// One user who activated another's code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Referral {
    /// The referred user.
    pub user: UserId,
    /// The referred user's phone.
    pub phone: PhoneNumber,
    /// When they activated the code.
    pub activated_at: DateTime<Utc>,
    /// Whether they have had a qualifying conversion (even if it was
    /// reversed later).
    #[serde(default)]
    pub converted: bool,
}

/// One page of a user's referrals, oldest activation first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReferralPage {
    /// The referrals on this page.
    pub items: Vec<Referral>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<ReferralCursor>,
}

/// A position in a referral list: the `(activated_at, user)` key of the last
/// referral seen. Shown to clients as an opaque string; a store seeks to it
/// with an index, so a page costs the same deep in a long list.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReferralCursor {
    activated_at: DateTime<Utc>,
    user: UserId,
}

/// A string that is not a [`ReferralCursor`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a referral cursor")]
pub struct CursorError;

impl ReferralCursor {
    /// The cursor just after the referral `user`, activated at `activated_at`.
    #[must_use]
    pub fn new(activated_at: DateTime<Utc>, user: UserId) -> Self {
        Self { activated_at, user }
    }

    /// The cursor just after `referral`.
    #[must_use]
    pub fn after(referral: &Referral) -> Self {
        Self::new(referral.activated_at, referral.user)
    }

    /// The activation time of the last referral seen.
    #[must_use]
    pub fn activated_at(&self) -> DateTime<Utc> {
        self.activated_at
    }

    /// The last referral seen.
    #[must_use]
    pub fn user(&self) -> UserId {
        self.user
    }

    /// Decodes a cursor from [`Display`](fmt::Display) output.
    ///
    /// # Errors
    /// [`CursorError`] for anything this crate did not write.
    pub fn parse(input: &str) -> Result<Self, CursorError> {
        let (activated_at, user) = keyset::decode(input).ok_or(CursorError)?;
        Ok(Self::new(activated_at, UserId(user)))
    }
}

impl fmt::Display for ReferralCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&keyset::encode(self.activated_at, self.user.0))
    }
}

impl fmt::Debug for ReferralCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReferralCursor({}, {})", self.activated_at, self.user)
    }
}

impl FromStr for ReferralCursor {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// How many referrals a page holds: 1 to 500, 50 by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PageLimit(u16);

/// A page size outside 1..=500.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a page holds 1 to 500 items")]
pub struct PageLimitError;

impl PageLimit {
    /// The largest page.
    pub const MAX: u16 = 500;

    /// A page of `n` items.
    ///
    /// # Errors
    /// [`PageLimitError`] outside 1..=500.
    pub fn new(n: u64) -> Result<Self, PageLimitError> {
        match u16::try_from(n) {
            Ok(n @ 1..=Self::MAX) => Ok(Self(n)),
            _ => Err(PageLimitError),
        }
    }

    /// The number of items.
    #[must_use]
    pub fn get(self) -> usize {
        usize::from(self.0)
    }
}

impl Default for PageLimit {
    fn default() -> Self {
        Self(50)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;
    use proptest::prelude::*;
    use uuid::Uuid;

    #[test]
    fn user_id_round_trip_and_one_spelling() {
        let id = UserId::generate(&SeededRandom::new(1));
        assert_eq!(UserId::parse(&id.to_string()), Ok(id));
        assert!(UserId::parse(&id.as_uuid().simple().to_string()).is_err());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("not-a-uuid-not-a-uuid-not-a-uuid-xyz").is_err());
    }

    #[test]
    fn page_limits() {
        assert_eq!(PageLimit::default().get(), 50);
        assert!(PageLimit::new(0).is_err());
        assert!(PageLimit::new(501).is_err());
        assert!(PageLimit::new(u64::MAX).is_err());
        assert_eq!(PageLimit::new(500).unwrap().get(), 500);
    }

    #[test]
    fn bad_cursors_are_refused() {
        for s in [
            "",
            "abc",
            "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
            &"A".repeat(33),
            "é",
        ] {
            assert_eq!(ReferralCursor::parse(s), Err(CursorError), "{s:?}");
        }
    }

    proptest! {
        #[test]
        fn cursor_round_trip(micros in -10_000_000_000_000_000i64..10_000_000_000_000_000, id: u128) {
            let at = DateTime::from_timestamp_micros(micros).unwrap();
            let c = ReferralCursor::new(at, UserId(Uuid::from_u128(id)));
            prop_assert_eq!(ReferralCursor::parse(&c.to_string()), Ok(c));
        }

        #[test]
        fn cursor_parse_never_panics(s in "\\PC{0,40}") {
            let _ = ReferralCursor::parse(&s);
        }
    }
}
