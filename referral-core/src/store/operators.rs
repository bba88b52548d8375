//! The operator port: see [`OperatorStore`].

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use crate::error::StoreError;
use crate::operator::{
    Block, LeaderboardEntry, Reason, ReferralExportBatch, RewardExportBatch, Stats, UserCursor,
    UserDetail, UserQuery, UserSearchPage,
};
use crate::reward::{Reward, RewardCursor, RewardId};
use crate::user::{ReferralCursor, UserId};

/// What [`OperatorStore::block_user`] did.
#[must_use]
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockOutcome {
    /// The user is now blocked.
    Blocked(Block),
    /// The user was blocked before; nothing changed (the first block, its
    /// reason and operator, stays).
    AlreadyBlocked(Block),
    /// No user has this id.
    UserNotFound,
}

/// What [`OperatorStore::unblock_user`] did.
#[must_use]
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnblockOutcome {
    /// The user was blocked by this block and is not any more.
    Unblocked(Block),
    /// The user was not blocked; nothing changed.
    NotBlocked,
    /// No user has this id.
    UserNotFound,
}

/// What [`OperatorStore::void_reward`] did.
#[must_use]
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoidOutcome {
    /// The reward was pending or approved and is now voided.
    Voided(Reward),
    /// The reward was voided before; nothing changed.
    AlreadyVoided(Reward),
    /// The reward is paid, is a clawback, or has a paid clawback; nothing
    /// changed.
    NotVoidable(Reward),
    /// No reward has this id.
    NotFound,
}

/// What operators need of a store: blocks, voids, search, the leaderboard,
/// statistics and exports.
///
/// Like [`RewardStore`](crate::store::RewardStore), it is NOT an independent
/// consistency domain: a block is read by
/// [`ReferralStore::register`](crate::store::ReferralStore::register) and
/// [`activate_invite`](crate::store::ReferralStore::activate_invite) and by
/// [`RewardStore::record_conversion`](crate::store::RewardStore::record_conversion)
/// and [`approve_due_rewards`](crate::store::RewardStore::approve_due_rewards),
/// each deciding with the block as it is at that operation's instant (under
/// the same lock, in the same statement). So it MUST be the same store as
/// the service's other ports. The rules a block imposes are listed in
/// [`crate::operator`].
///
/// Each method is one atomic step with respect to every other call of every
/// port, from any process sharing the store. Every operator action records
/// its event, naming the operator, in the same step. Stores never read the
/// clock: `now` comes from the caller.
#[async_trait]
pub trait OperatorStore: Send + Sync + 'static {
    /// Blocks `user` for `reason`, by operator `by`, at `now`, in one atomic
    /// step: no such user → [`BlockOutcome::UserNotFound`]; already blocked →
    /// [`BlockOutcome::AlreadyBlocked`] (nothing changes); otherwise record
    /// the block and [`EventKind::UserBlocked`](crate::EventKind), and
    /// return [`BlockOutcome::Blocked`].
    ///
    /// From the step on, the other ports MUST apply the block (see
    /// [`crate::operator`]): an approval or a conversion racing it is
    /// either wholly before it or wholly after it.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; nothing changed then.
    async fn block_user(
        &self,
        user: UserId,
        reason: &Reason,
        by: UserId,
        now: DateTime<Utc>,
    ) -> Result<BlockOutcome, StoreError>;

    /// Unblocks `user`, by operator `by`, in one atomic step: no such user →
    /// [`UnblockOutcome::UserNotFound`]; not blocked →
    /// [`UnblockOutcome::NotBlocked`]; otherwise remove the block, record
    /// [`EventKind::UserUnblocked`](crate::EventKind), and return
    /// [`UnblockOutcome::Unblocked`] with the block removed.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; nothing changed then.
    async fn unblock_user(
        &self,
        user: UserId,
        by: UserId,
        now: DateTime<Utc>,
    ) -> Result<UnblockOutcome, StoreError>;

    /// The user's block, while they are blocked (`None` otherwise, and for
    /// an unknown user).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn block(&self, user: UserId) -> Result<Option<Block>, StoreError>;

    /// Voids a reward as an operator action, in one atomic step: unknown id
    /// → [`VoidOutcome::NotFound`]; `voided` → [`VoidOutcome::AlreadyVoided`];
    /// `paid`, a clawback, or a reward with a `paid` clawback →
    /// [`VoidOutcome::NotVoidable`]; otherwise (`pending` or `approved`) the
    /// reward becomes `voided`, keeping its amount, and so do its
    /// clawbacks (so the owner's balance loses exactly what the reward
    /// still counted), with [`EventKind::RewardVoided`](crate::EventKind)
    /// for each and one [`EventKind::RewardVoidedByOperator`](crate::EventKind)
    /// naming `by` and `reason`; then [`VoidOutcome::Voided`].
    ///
    /// Of a void racing an approval, a payment or a reversal of the same
    /// reward, one is wholly first: a reward is never paid once voided.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; nothing changed then.
    async fn void_reward(
        &self,
        reward: RewardId,
        reason: &Reason,
        by: UserId,
        now: DateTime<Utc>,
    ) -> Result<VoidOutcome, StoreError>;

    /// The user with their profile (the first `referrals` referral phones;
    /// `rewards` left empty), their referrer and their block, from one
    /// consistent snapshot. `None` when no such user.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn user_detail(
        &self,
        user: UserId,
        referrals: usize,
    ) -> Result<Option<UserDetail>, StoreError>;

    /// Up to `limit` users matching `query`, ordered by their phone's E.164
    /// text, after `after` (from the first when `None`); `next` is set
    /// exactly when more follow. The cost MUST grow with `limit`, not with
    /// the number of users (seek an index by phone; an invite code is one
    /// lookup).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn search_users(
        &self,
        query: &UserQuery,
        after: Option<UserCursor>,
        limit: usize,
    ) -> Result<UserSearchPage, StoreError>;

    /// The top `limit` referrers by their referrals activated after `since`
    /// (all time when `None`), more first; ties by the earlier latest
    /// activation, then by user id. Referrers with no referral in the window
    /// are not listed. All time, the cost MUST grow with `limit`, not with
    /// the number of users (keep the ranking ordered); with `since`, at most
    /// with the activations after it. `rewarded` is all time in both cases.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn leaderboard(
        &self,
        since: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<LeaderboardEntry>, StoreError>;

    /// All-time totals, and one row for each of the `days` dates ending with
    /// `today` (oldest first, exactly `days` rows, zeros where nothing
    /// happened), counting users, activations and conversions by the UTC
    /// date they were created on (a conversion by when it was recorded).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn stats(&self, today: NaiveDate, days: u16) -> Result<Stats, StoreError>;

    /// Up to `limit` activations after `after` (from the first when `None`),
    /// ordered by `(activated_at, referee id)` ascending; `next` is set
    /// exactly when more may follow. Seek, do not skip: the cost of a batch
    /// MUST NOT grow with its position, so an export pulls every row in
    /// batches without ever holding them all.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn export_referrals(
        &self,
        after: Option<ReferralCursor>,
        limit: usize,
    ) -> Result<ReferralExportBatch, StoreError>;

    /// Up to `limit` rewards (every kind and status) after `after` (from the
    /// first when `None`), ordered by `(created_at, id)` ascending, each
    /// with its owner's phone; `next` as in
    /// [`export_referrals`](Self::export_referrals).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn export_rewards(
        &self,
        after: Option<RewardCursor>,
        limit: usize,
    ) -> Result<RewardExportBatch, StoreError>;
}

macro_rules! forward_operator_store {
    ($($ptr:ident),*) => {$(
        #[async_trait]
        impl<T: OperatorStore + ?Sized> OperatorStore for $ptr<T> {
            async fn block_user(
                &self,
                user: UserId,
                reason: &Reason,
                by: UserId,
                now: DateTime<Utc>,
            ) -> Result<BlockOutcome, StoreError> {
                (**self).block_user(user, reason, by, now).await
            }

            async fn unblock_user(
                &self,
                user: UserId,
                by: UserId,
                now: DateTime<Utc>,
            ) -> Result<UnblockOutcome, StoreError> {
                (**self).unblock_user(user, by, now).await
            }

            async fn block(&self, user: UserId) -> Result<Option<Block>, StoreError> {
                (**self).block(user).await
            }

            async fn void_reward(
                &self,
                reward: RewardId,
                reason: &Reason,
                by: UserId,
                now: DateTime<Utc>,
            ) -> Result<VoidOutcome, StoreError> {
                (**self).void_reward(reward, reason, by, now).await
            }

            async fn user_detail(
                &self,
                user: UserId,
                referrals: usize,
            ) -> Result<Option<UserDetail>, StoreError> {
                (**self).user_detail(user, referrals).await
            }

            async fn search_users(
                &self,
                query: &UserQuery,
                after: Option<UserCursor>,
                limit: usize,
            ) -> Result<UserSearchPage, StoreError> {
                (**self).search_users(query, after, limit).await
            }

            async fn leaderboard(
                &self,
                since: Option<DateTime<Utc>>,
                limit: usize,
            ) -> Result<Vec<LeaderboardEntry>, StoreError> {
                (**self).leaderboard(since, limit).await
            }

            async fn stats(&self, today: NaiveDate, days: u16) -> Result<Stats, StoreError> {
                (**self).stats(today, days).await
            }

            async fn export_referrals(
                &self,
                after: Option<ReferralCursor>,
                limit: usize,
            ) -> Result<ReferralExportBatch, StoreError> {
                (**self).export_referrals(after, limit).await
            }

            async fn export_rewards(
                &self,
                after: Option<RewardCursor>,
                limit: usize,
            ) -> Result<RewardExportBatch, StoreError> {
                (**self).export_rewards(after, limit).await
            }
        }
    )*};
}

forward_operator_store!(Arc, Box);
