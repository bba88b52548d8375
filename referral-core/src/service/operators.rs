//! The operator use cases of [`ReferralService`]: blocks, voids, search, the
//! leaderboard, statistics and exports (see [`crate::operator`]).

use std::sync::Arc;

use chrono::TimeDelta;

use super::{PROFILE_REFERRALS, ReferralService};
use crate::error::StoreError;
use crate::operator::{
    Block, LeaderboardEntry, LeaderboardLimit, Reason, ReferralExportBatch, RewardExportBatch,
    Stats, StatsDays, UserCursor, UserDetail, UserQuery, UserSearchPage,
};
use crate::reward::{Reward, RewardCursor, RewardId, RewardStatus};
use crate::store::{BlockOutcome, OperatorStore, UnblockOutcome, VoidOutcome};
use crate::user::{PageLimit, ReferralCursor, UserId};

/// How many rows one export batch holds: large enough that a million rows
/// take a thousand store calls, small enough to stay a few hundred KiB.
pub const EXPORT_BATCH: usize = 1000;

/// Why [`ReferralService::block_user`] blocked nobody.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// The service was built without an operator store.
    #[error("operator actions are not enabled")]
    OperatorsDisabled,
    /// No user has this id.
    #[error("no such user")]
    UserNotFound,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why [`ReferralService::unblock_user`] unblocked nobody.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnblockError {
    /// The service was built without an operator store.
    #[error("operator actions are not enabled")]
    OperatorsDisabled,
    /// No user has this id.
    #[error("no such user")]
    UserNotFound,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why [`ReferralService::user_detail`] has no detail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserDetailError {
    /// The service was built without an operator store.
    #[error("operator actions are not enabled")]
    OperatorsDisabled,
    /// No user has this id.
    #[error("no such user")]
    UserNotFound,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why [`ReferralService::void_reward`] voided nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VoidRewardError {
    /// The service was built without an operator store.
    #[error("operator actions are not enabled")]
    OperatorsDisabled,
    /// No reward has this id.
    #[error("no such reward")]
    RewardNotFound,
    /// The reward is paid, is a clawback, or has a paid clawback.
    #[error("the reward cannot be voided")]
    NotVoidable {
        /// Its status.
        status: RewardStatus,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why an operator read ([`ReferralService::search_users`],
/// [`leaderboard`](ReferralService::leaderboard),
/// [`stats`](ReferralService::stats), the exports) has no answer. Their
/// inputs are parsed types, so only these two remain.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorReadError {
    /// The service was built without an operator store.
    #[error("operator actions are not enabled")]
    OperatorsDisabled,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ReferralService {
    /// Whether the service was built with an operator store.
    #[must_use]
    pub fn operators_enabled(&self) -> bool {
        self.operators.is_some()
    }

    fn operator_store(&self) -> Option<&Arc<dyn OperatorStore>> {
        self.operators.as_ref()
    }

    /// The user's block while they are blocked; `None` otherwise, for an
    /// unknown user, and when operators are off. What an HTTP layer checks
    /// on each request with a user's token.
    ///
    /// # Errors
    /// The store's.
    pub async fn block_of(&self, user: UserId) -> Result<Option<Block>, StoreError> {
        match self.operator_store() {
            Some(store) => store.block(user).await,
            None => Ok(None),
        }
    }

    /// The user as an operator sees them: profile (with balances),
    /// referrer and block.
    ///
    /// # Errors
    /// [`UserDetailError`]: operators off, an unknown user, or the store.
    pub async fn user_detail(&self, user: UserId) -> Result<UserDetail, UserDetailError> {
        let store = self
            .operator_store()
            .ok_or(UserDetailError::OperatorsDisabled)?;
        let mut detail = store
            .user_detail(user, PROFILE_REFERRALS)
            .await?
            .ok_or(UserDetailError::UserNotFound)?;
        self.fill_balances(&mut detail.profile).await?;
        Ok(detail)
    }

    /// Blocks `user` for `reason`, as `operator` (see [`crate::operator`]
    /// for what a block does). Blocking a blocked user changes nothing and
    /// answers the same detail (with the first block).
    ///
    /// # Errors
    /// [`BlockError`]: operators off, an unknown user, or the store.
    pub async fn block_user(
        &self,
        operator: UserId,
        user: UserId,
        reason: &Reason,
    ) -> Result<UserDetail, BlockError> {
        let store = self.operator_store().ok_or(BlockError::OperatorsDisabled)?;
        match store.block_user(user, reason, operator, self.now()).await? {
            BlockOutcome::Blocked(_) | BlockOutcome::AlreadyBlocked(_) => {}
            BlockOutcome::UserNotFound => return Err(BlockError::UserNotFound),
        }
        self.user_detail(user).await.map_err(|e| match e {
            UserDetailError::OperatorsDisabled => BlockError::OperatorsDisabled,
            UserDetailError::UserNotFound => BlockError::UserNotFound,
            UserDetailError::Store(e) => BlockError::Store(e),
        })
    }

    /// Unblocks `user`, as `operator`. Unblocking a user who is not blocked
    /// changes nothing.
    ///
    /// # Errors
    /// [`UnblockError`]: operators off, an unknown user, or the store.
    pub async fn unblock_user(
        &self,
        operator: UserId,
        user: UserId,
    ) -> Result<UserDetail, UnblockError> {
        let store = self
            .operator_store()
            .ok_or(UnblockError::OperatorsDisabled)?;
        match store.unblock_user(user, operator, self.now()).await? {
            UnblockOutcome::Unblocked(_) | UnblockOutcome::NotBlocked => {}
            UnblockOutcome::UserNotFound => return Err(UnblockError::UserNotFound),
        }
        self.user_detail(user).await.map_err(|e| match e {
            UserDetailError::OperatorsDisabled => UnblockError::OperatorsDisabled,
            UserDetailError::UserNotFound => UnblockError::UserNotFound,
            UserDetailError::Store(e) => UnblockError::Store(e),
        })
    }

    /// Voids a `pending` or `approved` reward, as `operator`, for `reason`
    /// (with its clawbacks: see [`OperatorStore::void_reward`]). A voided
    /// reward again answers it unchanged.
    ///
    /// # Errors
    /// [`VoidRewardError`]: operators off, an unknown reward, a paid reward
    /// or a clawback, or the store.
    pub async fn void_reward(
        &self,
        operator: UserId,
        reward: RewardId,
        reason: &Reason,
    ) -> Result<Reward, VoidRewardError> {
        let store = self
            .operator_store()
            .ok_or(VoidRewardError::OperatorsDisabled)?;
        match store
            .void_reward(reward, reason, operator, self.now())
            .await?
        {
            VoidOutcome::Voided(r) | VoidOutcome::AlreadyVoided(r) => Ok(r),
            VoidOutcome::NotVoidable(r) => Err(VoidRewardError::NotVoidable { status: r.status }),
            VoidOutcome::NotFound => Err(VoidRewardError::RewardNotFound),
        }
    }

    /// A page of users matching `query`, ordered by phone.
    ///
    /// # Errors
    /// [`OperatorReadError`]: operators off, or the store.
    pub async fn search_users(
        &self,
        query: &UserQuery,
        after: Option<UserCursor>,
        limit: PageLimit,
    ) -> Result<UserSearchPage, OperatorReadError> {
        let store = self
            .operator_store()
            .ok_or(OperatorReadError::OperatorsDisabled)?;
        Ok(store.search_users(query, after, limit.get()).await?)
    }

    /// The top referrers: by referrals activated in the last `days` days
    /// (`days × 24 h` back from now), or all time when `None`.
    ///
    /// # Errors
    /// [`OperatorReadError`]: operators off, or the store.
    pub async fn leaderboard(
        &self,
        limit: LeaderboardLimit,
        days: Option<StatsDays>,
    ) -> Result<Vec<LeaderboardEntry>, OperatorReadError> {
        let store = self
            .operator_store()
            .ok_or(OperatorReadError::OperatorsDisabled)?;
        let since = days.map(|d| self.now() - TimeDelta::days(i64::from(d.get())));
        Ok(store.leaderboard(since, limit.get()).await?)
    }

    /// Program totals and one row per day for the last `days` UTC dates,
    /// today last.
    ///
    /// # Errors
    /// [`OperatorReadError`]: operators off, or the store.
    pub async fn stats(&self, days: StatsDays) -> Result<Stats, OperatorReadError> {
        let store = self
            .operator_store()
            .ok_or(OperatorReadError::OperatorsDisabled)?;
        let today = self.now().date_naive();
        Ok(store.stats(today, days.get()).await?)
    }

    /// The next batch (at most [`EXPORT_BATCH`] rows) of the referrals
    /// export, after `after` (from the first when `None`). Pull batches
    /// until `next` is `None`: memory stays one batch whatever the size.
    ///
    /// # Errors
    /// [`OperatorReadError`]: operators off, or the store.
    pub async fn export_referrals(
        &self,
        after: Option<ReferralCursor>,
    ) -> Result<ReferralExportBatch, OperatorReadError> {
        let store = self
            .operator_store()
            .ok_or(OperatorReadError::OperatorsDisabled)?;
        Ok(store.export_referrals(after, EXPORT_BATCH).await?)
    }

    /// The next batch (at most [`EXPORT_BATCH`] rows) of the rewards export;
    /// see [`export_referrals`](Self::export_referrals).
    ///
    /// # Errors
    /// [`OperatorReadError`]: operators off, or the store.
    pub async fn export_rewards(
        &self,
        after: Option<RewardCursor>,
    ) -> Result<RewardExportBatch, OperatorReadError> {
        let store = self
            .operator_store()
            .ok_or(OperatorReadError::OperatorsDisabled)?;
        Ok(store.export_rewards(after, EXPORT_BATCH).await?)
    }
}
