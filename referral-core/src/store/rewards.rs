//! The reward port: see [`RewardStore`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::StoreError;
use crate::reward::{
    Balance, Conversion, ConversionId, NewConversion, PayoutRef, ReversalId, Reward, RewardCursor,
    RewardId, RewardPage, RewardPolicy,
};
use crate::user::UserId;

/// How many rewards one conversion (or one reversal) can create at most: the
/// referrer's fixed and percentage rewards (or one clawback of each).
pub const MAX_NEW_REWARDS: usize = 2;

/// Fresh ids for the rewards one operation may create, drawn by the service.
/// The store takes them in order for the rewards it creates and ignores the
/// rest (a replay creates nothing and uses none).
pub type NewRewardIds = [RewardId; MAX_NEW_REWARDS];

/// What [`RewardStore::record_conversion`] did.
#[must_use]
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// The conversion was recorded with the rewards it earned (possibly none).
    Recorded {
        /// The conversion as stored.
        conversion: Conversion,
        /// The rewards it created, fixed first.
        rewards: Vec<Reward>,
    },
    /// The same conversion was recorded before; nothing changed.
    Existing {
        /// The conversion as stored (with its reversals so far).
        conversion: Conversion,
        /// The rewards its recording created, as they are now.
        rewards: Vec<Reward>,
    },
    /// A conversion with this id but other fields exists; nothing changed.
    Conflict {
        /// The conversion that holds the id.
        existing: Conversion,
    },
    /// No user has this id or phone; nothing changed.
    UserNotFound,
}

/// What [`RewardStore::reverse_conversion`] did.
#[must_use]
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReverseOutcome {
    /// The reversal was applied.
    Reversed {
        /// The conversion after it.
        conversion: Conversion,
        /// The rewards it changed or added (clawbacks), in the order of the
        /// conversion's rewards.
        rewards: Vec<Reward>,
    },
    /// This reversal id was applied to this conversion before with the same
    /// amount; nothing changed.
    Existing {
        /// The conversion now.
        conversion: Conversion,
        /// The rewards that reversal changed or added, as they are now.
        rewards: Vec<Reward>,
    },
    /// This reversal id was applied to this conversion with another amount;
    /// nothing changed.
    Conflict {
        /// The amount it was applied with.
        amount: i64,
    },
    /// The amount is more than what is left to reverse (or nothing is left);
    /// nothing changed.
    ExceedsRemaining {
        /// What is left to reverse.
        remaining: i64,
    },
    /// No conversion has this id; nothing changed.
    ConversionNotFound,
}

/// What [`RewardStore::mark_reward_paid`] did.
#[must_use]
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayOutcome {
    /// The reward was approved and is now paid.
    Paid(Reward),
    /// The reward was already paid with this very reference; nothing changed.
    AlreadyPaid(Reward),
    /// The reward is pending, voided, or paid with another reference;
    /// nothing changed.
    NotPayable(Reward),
    /// No reward has this id.
    NotFound,
}

/// What [`RewardStore::approve_due_rewards`] did.
#[must_use]
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApproveOutcome {
    /// These rewards were pending past their hold and are now approved
    /// (possibly none), oldest first.
    Approved(Vec<Reward>),
}

/// Stores conversions and the reward ledger, and decides their life cycle.
///
/// It is a port of its own, so a store can implement the
/// referral program first and rewards later (the service then runs with
/// rewards off: see [`ServiceBuilder::rewards`](crate::ServiceBuilder::rewards)).
/// It is NOT an independent consistency domain: `record_conversion` reads
/// the referral graph (who referred whom, and when) and
/// [`ReferralStore::activate_invite`](crate::store::ReferralStore::activate_invite)
/// writes the welcome reward, so the `RewardStore` and the `ReferralStore`
/// of a service MUST be the same store (one database, one lock).
///
/// The rules the methods apply are stated exactly in [`crate::reward`]; each
/// rule is one atomic operation below. The events each operation records
/// (in the same outbox as [`ReferralStore::events_after`](crate::store::ReferralStore::events_after)
/// reads) are part of its contract.
///
/// **Blocked users.** In a store that also implements
/// [`OperatorStore`](crate::store::OperatorStore), a conversion of a blocked
/// referee, or of a referee of a blocked referrer, does not qualify in
/// `record_conversion` (it is recorded, earns nothing), and
/// `approve_due_rewards` skips the pending rewards of blocked users; both
/// are decided inside these same operations (the block is read under the
/// same lock / in the same statement). [`crate::operator`] lists what a
/// block does.
///
/// Implementations MUST make each method one atomic step with respect to
/// every other call of this trait and of `ReferralStore`, from any process
/// sharing the store. Stores never read the clock: `now` comes from the
/// caller, and every row written by a call is stamped with it.
#[async_trait]
pub trait RewardStore: Send + Sync + 'static {
    /// Records a conversion and the rewards it earns, in one atomic step,
    /// checking in this order:
    /// 1. no user has `conversion.user` → [`RecordOutcome::UserNotFound`];
    /// 2. a conversion with `conversion.id` exists: with the same user,
    ///    amount, currency and kind, and the same `occurred_at` when one is
    ///    given → [`RecordOutcome::Existing`]; otherwise
    ///    [`RecordOutcome::Conflict`];
    /// 3. otherwise store it (`occurred_at` defaulting to `now`,
    ///    `recorded_at = now`, nothing reversed), record
    ///    [`EventKind::ConversionRecorded`](crate::EventKind), and, if it
    ///    **qualifies** under `policy` (see [`crate::reward`]): mark the
    ///    referee's referral `converted`, and create for the referrer, all
    ///    `pending`, `created_at = now`, `referral` = the referee:
    ///    - `referrer_fixed` of `policy.referrer_fixed` when the currency is
    ///      `policy.currency` and the referee had no qualifying conversion in
    ///      that currency before (this one uses the fixed part up, whatever
    ///      its amount after the cap);
    ///    - `referrer_percent` of `floor(amount × referrer_bp ÷ 10000)`;
    ///    - both cut by the cap (fixed first), and not made when 0;
    ///
    ///    with one [`EventKind::RewardCreated`](crate::EventKind) each, using
    ///    `ids` in that order; then [`RecordOutcome::Recorded`].
    ///
    /// However many identical calls race, from however many processes:
    /// exactly one returns `Recorded`, the others `Existing`, and one set of
    /// rewards exists. However many conversions of one referrer's referees
    /// race, the cap is never passed.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; nothing changed then.
    async fn record_conversion(
        &self,
        conversion: &NewConversion,
        ids: NewRewardIds,
        policy: &RewardPolicy,
        now: DateTime<Utc>,
    ) -> Result<RecordOutcome, StoreError>;

    /// Reverses (refunds) `amount` of a conversion, or all that is left when
    /// `None`, in one atomic step, checking in this order:
    /// 1. no conversion `conversion` → [`ReverseOutcome::ConversionNotFound`];
    /// 2. `reversal` was applied to it before: with `amount` `None` or equal
    ///    to the amount it was applied with → [`ReverseOutcome::Existing`],
    ///    otherwise [`ReverseOutcome::Conflict`];
    /// 3. the amount (given, or what is left) is not in `1..=remaining` →
    ///    [`ReverseOutcome::ExceedsRemaining`];
    /// 4. otherwise add it to `reversed_amount`, record
    ///    [`EventKind::ConversionReversed`](crate::EventKind), and bring each
    ///    non-clawback reward of the conversion to
    ///    `target = floor(original × (amount − reversed) ÷ amount)`:
    ///    - `pending`: at 0 → `voided` (keeping its amount;
    ///      [`EventKind::RewardVoided`](crate::EventKind)); below its amount
    ///      → reduced to `target` ([`EventKind::RewardAdjusted`](crate::EventKind));
    ///    - `approved` / `paid`: when `target` is below its amount plus its
    ///      clawbacks so far → one `clawback` reward of the (negative)
    ///      difference, `approved` at `now`, `reverses` = that reward, same
    ///      conversion and referral (`RewardCreated` and `RewardApproved`),
    ///      using `ids` in order;
    ///    - `voided`: nothing;
    ///
    ///    then [`ReverseOutcome::Reversed`] with the rewards changed or added.
    ///
    /// `reversed_amount` never exceeds the conversion's amount, however many
    /// reversals race; a reversal id takes effect once.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; nothing changed then.
    async fn reverse_conversion(
        &self,
        conversion: &ConversionId,
        reversal: &ReversalId,
        amount: Option<i64>,
        ids: NewRewardIds,
        now: DateTime<Utc>,
    ) -> Result<ReverseOutcome, StoreError>;

    /// Marks an approved reward paid, in one atomic step: unknown id →
    /// [`PayOutcome::NotFound`]; `approved` → `paid` with `paid_at = now` and
    /// `payout_ref` ([`EventKind::RewardPaid`](crate::EventKind)),
    /// [`PayOutcome::Paid`]; already `paid` with this `payout_ref` →
    /// [`PayOutcome::AlreadyPaid`]; anything else →
    /// [`PayOutcome::NotPayable`]. Of concurrent calls, at most one returns
    /// `Paid`.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn mark_reward_paid(
        &self,
        reward: RewardId,
        payout_ref: &PayoutRef,
        now: DateTime<Utc>,
    ) -> Result<PayOutcome, StoreError>;

    /// Approves up to `limit` `pending` rewards whose hold has ended
    /// (`created_at + hold <= now`), oldest `(created_at, id)` first:
    /// `approved_at = now`, one [`EventKind::RewardApproved`](crate::EventKind)
    /// each. Safe from many processes at once: each reward is approved by
    /// exactly one call, and a concurrent reversal sees it either pending or
    /// approved, never half-way (a store may skip rows another call holds,
    /// like `FOR UPDATE SKIP LOCKED`).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn approve_due_rewards(
        &self,
        hold: Duration,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<ApproveOutcome, StoreError>;

    /// Up to `limit` rewards of `user` after `after` (from the newest when
    /// `None`), newest first, ordered by `(created_at, id)` descending; `next`
    /// is set exactly when more follow. `None` when no such user. The cost
    /// MUST NOT grow with the number of the user's rewards (seek, do not skip).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn rewards(
        &self,
        user: UserId,
        after: Option<RewardCursor>,
        limit: usize,
    ) -> Result<Option<RewardPage>, StoreError>;

    /// The user's reward totals, one [`Balance`] per currency in which they
    /// have any non-voided reward, sorted by currency. `None` when no such
    /// user. The cost MUST NOT grow with the number of rewards (keep totals).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn balances(&self, user: UserId) -> Result<Option<Vec<Balance>>, StoreError>;

    /// The reward with this id.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn reward(&self, id: RewardId) -> Result<Option<Reward>, StoreError>;

    /// The conversion with this id.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn conversion(&self, id: &ConversionId) -> Result<Option<Conversion>, StoreError>;
}

macro_rules! forward_reward_store {
    ($($ptr:ident),*) => {$(
        #[async_trait]
        impl<T: RewardStore + ?Sized> RewardStore for $ptr<T> {
            async fn record_conversion(
                &self,
                conversion: &NewConversion,
                ids: NewRewardIds,
                policy: &RewardPolicy,
                now: DateTime<Utc>,
            ) -> Result<RecordOutcome, StoreError> {
                (**self).record_conversion(conversion, ids, policy, now).await
            }

            async fn reverse_conversion(
                &self,
                conversion: &ConversionId,
                reversal: &ReversalId,
                amount: Option<i64>,
                ids: NewRewardIds,
                now: DateTime<Utc>,
            ) -> Result<ReverseOutcome, StoreError> {
                (**self)
                    .reverse_conversion(conversion, reversal, amount, ids, now)
                    .await
            }

            async fn mark_reward_paid(
                &self,
                reward: RewardId,
                payout_ref: &PayoutRef,
                now: DateTime<Utc>,
            ) -> Result<PayOutcome, StoreError> {
                (**self).mark_reward_paid(reward, payout_ref, now).await
            }

            async fn approve_due_rewards(
                &self,
                hold: Duration,
                now: DateTime<Utc>,
                limit: usize,
            ) -> Result<ApproveOutcome, StoreError> {
                (**self).approve_due_rewards(hold, now, limit).await
            }

            async fn rewards(
                &self,
                user: UserId,
                after: Option<RewardCursor>,
                limit: usize,
            ) -> Result<Option<RewardPage>, StoreError> {
                (**self).rewards(user, after, limit).await
            }

            async fn balances(&self, user: UserId) -> Result<Option<Vec<Balance>>, StoreError> {
                (**self).balances(user).await
            }

            async fn reward(&self, id: RewardId) -> Result<Option<Reward>, StoreError> {
                (**self).reward(id).await
            }

            async fn conversion(
                &self,
                id: &ConversionId,
            ) -> Result<Option<Conversion>, StoreError> {
                (**self).conversion(id).await
            }
        }
    )*};
}

forward_reward_store!(Arc, Box);
