//! The reward use cases of [`ReferralService`]: conversions, reversals,
//! approval, payment, and what users see of their rewards.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{ReferralService, to_micros};
use crate::error::StoreError;
use crate::money::{Currency, Money};
use crate::reward::{
    Conversion, ConversionId, ConversionKind, ConversionUser, NewConversion, PayoutRef, ReversalId,
    Reward, RewardCursor, RewardId, RewardPage, RewardStatus,
};
use crate::store::{
    ApproveOutcome, NewRewardIds, PayOutcome, RecordOutcome, ReverseOutcome, RewardStore,
};
use crate::user::{PageLimit, UserId};

/// A conversion as the host reports it to
/// [`ReferralService::record_conversion`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordConversion {
    /// The host's id, unique per conversion.
    pub external_id: ConversionId,
    /// Whose conversion it is.
    pub user: ConversionUser,
    /// How much was spent, in minor units: 1 to [`Money::MAX_AMOUNT`].
    pub amount: i64,
    /// In what currency.
    pub currency: Currency,
    /// What kind (`purchase` by default).
    pub kind: ConversionKind,
    /// When it happened (default: when it is recorded).
    pub occurred_at: Option<DateTime<Utc>>,
}

impl RecordConversion {
    /// A `purchase` of `amount` minor units of `currency` by `user`,
    /// happening now.
    #[must_use]
    pub fn new(
        external_id: ConversionId,
        user: ConversionUser,
        amount: i64,
        currency: Currency,
    ) -> Self {
        Self {
            external_id,
            user,
            amount,
            currency,
            kind: ConversionKind::default(),
            occurred_at: None,
        }
    }

    /// Sets the kind.
    #[must_use]
    pub fn kind(mut self, kind: ConversionKind) -> Self {
        self.kind = kind;
        self
    }

    /// Sets when it happened.
    #[must_use]
    pub fn occurred_at(mut self, at: DateTime<Utc>) -> Self {
        self.occurred_at = Some(at);
        self
    }
}

/// A recorded conversion and its rewards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionRecorded {
    /// The conversion as stored.
    pub conversion: Conversion,
    /// The rewards its recording created (as they are now, on a repeat).
    pub rewards: Vec<Reward>,
    /// `false` when the same conversion had been recorded before (a safe
    /// retry): nothing changed.
    pub created: bool,
}

/// A reversal applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionReversed {
    /// The conversion after it.
    pub conversion: Conversion,
    /// The rewards it changed or added.
    pub rewards: Vec<Reward>,
    /// `true` when this reversal had been applied before (a safe retry):
    /// nothing changed.
    pub replayed: bool,
}

/// Why [`ReferralService::record_conversion`] recorded nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordConversionError {
    /// The service was built without a reward store.
    #[error("rewards are not enabled")]
    RewardsDisabled,
    /// The amount is not in 1 ..= 10¹⁵ minor units.
    #[error("the amount must be an integer from 1 to 10^15 minor units")]
    InvalidAmount,
    /// No user has this id or phone.
    #[error("no such user")]
    UserNotFound,
    /// A conversion with this id but other fields was recorded before.
    #[error("another conversion has this id")]
    Conflict {
        /// The conversion holding the id.
        existing: Box<Conversion>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why [`ReferralService::reverse_conversion`] reversed nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReverseConversionError {
    /// The service was built without a reward store.
    #[error("rewards are not enabled")]
    RewardsDisabled,
    /// The amount is not positive.
    #[error("the amount must be a positive integer")]
    InvalidAmount,
    /// The amount is more than what is left to reverse.
    #[error("the amount is more than what is left to reverse ({remaining})")]
    ExceedsRemaining {
        /// What is left to reverse, in minor units.
        remaining: i64,
    },
    /// No conversion has this id.
    #[error("no such conversion")]
    ConversionNotFound,
    /// This reversal id was used on this conversion with another amount.
    #[error("this reversal was made with another amount")]
    Conflict {
        /// The amount it was made with.
        amount: i64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why [`ReferralService::mark_reward_paid`] marked nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MarkPaidError {
    /// The service was built without a reward store.
    #[error("rewards are not enabled")]
    RewardsDisabled,
    /// No reward has this id.
    #[error("no such reward")]
    RewardNotFound,
    /// The reward is pending, voided, or paid under another reference.
    #[error("the reward cannot be paid")]
    NotPayable {
        /// Its status.
        status: RewardStatus,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why [`ReferralService::approve_due_rewards`] approved nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApproveError {
    /// The service was built without a reward store.
    #[error("rewards are not enabled")]
    RewardsDisabled,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why [`ReferralService::rewards`] has no page.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RewardsError {
    /// No user has this id.
    #[error("no such user")]
    UserNotFound,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ReferralService {
    fn reward_store(&self) -> Option<&Arc<dyn RewardStore>> {
        self.rewards.as_ref()
    }

    /// Whether the service was built with a reward store.
    #[must_use]
    pub fn rewards_enabled(&self) -> bool {
        self.rewards.is_some()
    }

    fn new_reward_ids(&self) -> NewRewardIds {
        [
            RewardId::generate(self.random.as_ref()),
            RewardId::generate(self.random.as_ref()),
        ]
    }

    /// Records a conversion the host reports, and the rewards it earns under
    /// [`Config::rewards`](super::Config::rewards). Reporting the same
    /// conversion again changes nothing and answers the same
    /// (`created: false`), also when the calls race.
    ///
    /// # Errors
    /// [`RecordConversionError`]: rewards off, a bad amount, an unknown
    /// user, another conversion under this id, or the store.
    pub async fn record_conversion(
        &self,
        input: RecordConversion,
    ) -> Result<ConversionRecorded, RecordConversionError> {
        let store = self
            .reward_store()
            .ok_or(RecordConversionError::RewardsDisabled)?;
        if !(1..=Money::MAX_AMOUNT).contains(&input.amount) {
            return Err(RecordConversionError::InvalidAmount);
        }
        let conversion = NewConversion {
            id: input.external_id,
            user: input.user,
            amount: Money::new(input.amount, input.currency),
            kind: input.kind,
            // Stores keep microseconds; compare like with like on a repeat.
            occurred_at: input.occurred_at.map(to_micros),
        };
        let now = self.now();
        match store
            .record_conversion(
                &conversion,
                self.new_reward_ids(),
                &self.config.rewards,
                now,
            )
            .await?
        {
            RecordOutcome::Recorded {
                conversion,
                rewards,
            } => Ok(ConversionRecorded {
                conversion,
                rewards,
                created: true,
            }),
            RecordOutcome::Existing {
                conversion,
                rewards,
            } => Ok(ConversionRecorded {
                conversion,
                rewards,
                created: false,
            }),
            RecordOutcome::Conflict { existing } => Err(RecordConversionError::Conflict {
                existing: Box::new(existing),
            }),
            RecordOutcome::UserNotFound => Err(RecordConversionError::UserNotFound),
        }
    }

    /// Reverses (refunds) `amount` minor units of a conversion, or all that
    /// is left when `None`. Pending rewards shrink in proportion (voided at
    /// 0); approved and paid ones get a negative clawback. Applying the same
    /// reversal id again changes nothing (`replayed: true`).
    ///
    /// # Errors
    /// [`ReverseConversionError`]: rewards off, a bad or too large amount,
    /// an unknown conversion, the reversal id used with another amount, or
    /// the store.
    pub async fn reverse_conversion(
        &self,
        conversion: &ConversionId,
        reversal: &ReversalId,
        amount: Option<i64>,
    ) -> Result<ConversionReversed, ReverseConversionError> {
        let store = self
            .reward_store()
            .ok_or(ReverseConversionError::RewardsDisabled)?;
        if amount.is_some_and(|a| a <= 0) {
            return Err(ReverseConversionError::InvalidAmount);
        }
        let now = self.now();
        match store
            .reverse_conversion(conversion, reversal, amount, self.new_reward_ids(), now)
            .await?
        {
            ReverseOutcome::Reversed {
                conversion,
                rewards,
            } => Ok(ConversionReversed {
                conversion,
                rewards,
                replayed: false,
            }),
            ReverseOutcome::Existing {
                conversion,
                rewards,
            } => Ok(ConversionReversed {
                conversion,
                rewards,
                replayed: true,
            }),
            ReverseOutcome::Conflict { amount } => Err(ReverseConversionError::Conflict { amount }),
            ReverseOutcome::ExceedsRemaining { remaining } => {
                Err(ReverseConversionError::ExceedsRemaining { remaining })
            }
            ReverseOutcome::ConversionNotFound => Err(ReverseConversionError::ConversionNotFound),
        }
    }

    /// Marks an approved reward paid under the host's payout reference.
    /// Marking it again with the same reference answers the same reward.
    ///
    /// # Errors
    /// [`MarkPaidError`]: rewards off, an unknown reward, one that is not
    /// approved (or paid under another reference), or the store.
    pub async fn mark_reward_paid(
        &self,
        reward: RewardId,
        payout_ref: &PayoutRef,
    ) -> Result<Reward, MarkPaidError> {
        let store = self.reward_store().ok_or(MarkPaidError::RewardsDisabled)?;
        let now = self.now();
        match store.mark_reward_paid(reward, payout_ref, now).await? {
            PayOutcome::Paid(r) | PayOutcome::AlreadyPaid(r) => Ok(r),
            PayOutcome::NotPayable(r) => Err(MarkPaidError::NotPayable { status: r.status }),
            PayOutcome::NotFound => Err(MarkPaidError::RewardNotFound),
        }
    }

    /// Approves up to `limit` pending rewards whose hold
    /// ([`RewardPolicy::hold`](crate::RewardPolicy::hold)) has ended by
    /// `now`, oldest first, and returns them. Safe to run from many
    /// processes at once: each reward is approved once. Run it periodically
    /// (and again at once while it returns `limit` rewards).
    ///
    /// # Errors
    /// [`ApproveError`]: rewards off, or the store.
    pub async fn approve_due_rewards(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Reward>, ApproveError> {
        let store = self.reward_store().ok_or(ApproveError::RewardsDisabled)?;
        let now = to_micros(now);
        match store
            .approve_due_rewards(self.config.rewards.hold, now, limit)
            .await?
        {
            ApproveOutcome::Approved(rewards) => Ok(rewards),
        }
    }

    /// A page of the user's rewards, newest first. With rewards off, every
    /// user has an empty list.
    ///
    /// # Errors
    /// [`RewardsError::UserNotFound`] for an unknown id, or the store.
    pub async fn rewards(
        &self,
        user: UserId,
        after: Option<RewardCursor>,
        limit: PageLimit,
    ) -> Result<RewardPage, RewardsError> {
        match self.reward_store() {
            Some(store) => store
                .rewards(user, after, limit.get())
                .await?
                .ok_or(RewardsError::UserNotFound),
            None => match self.users.user(user).await? {
                Some(_) => Ok(RewardPage::default()),
                None => Err(RewardsError::UserNotFound),
            },
        }
    }

    /// The reward with this id (`None` with rewards off).
    ///
    /// # Errors
    /// The store's.
    pub async fn reward(&self, id: RewardId) -> Result<Option<Reward>, StoreError> {
        match self.reward_store() {
            Some(store) => store.reward(id).await,
            None => Ok(None),
        }
    }

    /// The conversion with this id (`None` with rewards off).
    ///
    /// # Errors
    /// The store's.
    pub async fn conversion(&self, id: &ConversionId) -> Result<Option<Conversion>, StoreError> {
        match self.reward_store() {
            Some(store) => store.conversion(id).await,
            None => Ok(None),
        }
    }
}
