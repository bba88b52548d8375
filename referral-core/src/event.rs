//! The outbox of domain events, for reward systems and other consumers.
//!
//! A store records an event in the same atomic operation that makes the
//! change it describes, so a consumer reading with
//! [`ReferralStore::events_after`](crate::store::ReferralStore::events_after)
//! never sees an event for a change that did not happen, nor misses one that did.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::invite_code::InviteCode;
use crate::money::Money;
use crate::operator::Reason;
use crate::phone::PhoneNumber;
use crate::reward::{ConversionId, PayoutRef, ReversalId, RewardId, RewardKind};
use crate::user::UserId;

/// An event's position in the outbox: increasing in the order events become
/// readable. Pass the last one seen to `events_after` to continue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub u64);

/// A recorded domain event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Its position in the outbox.
    pub id: EventId,
    /// When the change happened.
    pub at: DateTime<Utc>,
    /// What happened.
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A phone logged in for the first time and became a user.
    UserRegistered {
        /// The new user.
        user: UserId,
        /// Their phone.
        phone: PhoneNumber,
        /// Their invite code.
        invite_code: InviteCode,
    },
    /// A user activated another user's invite code.
    InviteActivated {
        /// The user who activated the code (the referred user).
        user: UserId,
        /// The owner of the code (the referrer).
        referrer: UserId,
        /// The code activated.
        invite_code: InviteCode,
    },
    /// The host reported a conversion.
    ConversionRecorded {
        /// The host's id of it.
        conversion: ConversionId,
        /// Whose it is.
        user: UserId,
        /// How much was spent.
        amount: Money,
    },
    /// The host reversed (refunded) part or all of a conversion.
    ConversionReversed {
        /// The conversion.
        conversion: ConversionId,
        /// The host's id of the reversal.
        reversal: ReversalId,
        /// How much was reversed, in minor units.
        amount: i64,
    },
    /// A reward was made (a clawback too).
    RewardCreated {
        /// The reward.
        reward: RewardId,
        /// Who earns it.
        user: UserId,
        /// Why.
        kind: RewardKind,
        /// Its amount (negative for a clawback).
        amount: Money,
    },
    /// A pending reward was reduced by a reversal.
    RewardAdjusted {
        /// The reward.
        reward: RewardId,
        /// Who earns it.
        user: UserId,
        /// Its new amount.
        amount: Money,
    },
    /// A reward was approved (its hold ended, or at once for welcome rewards
    /// and clawbacks).
    RewardApproved {
        /// The reward.
        reward: RewardId,
        /// Who earns it.
        user: UserId,
    },
    /// A reward was voided; it counts nowhere from now on.
    RewardVoided {
        /// The reward.
        reward: RewardId,
        /// Who would have earned it.
        user: UserId,
    },
    /// The host paid a reward out.
    RewardPaid {
        /// The reward.
        reward: RewardId,
        /// Who was paid.
        user: UserId,
        /// The host's payout reference.
        payout_ref: PayoutRef,
    },
    /// An operator blocked a user.
    UserBlocked {
        /// The user blocked.
        user: UserId,
        /// The operator.
        operator: UserId,
        /// Why.
        reason: Reason,
    },
    /// An operator unblocked a user.
    UserUnblocked {
        /// The user unblocked.
        user: UserId,
        /// The operator.
        operator: UserId,
    },
    /// An operator voided a reward (recorded with the reward's
    /// [`EventKind::RewardVoided`], and those of its clawbacks).
    RewardVoidedByOperator {
        /// The reward.
        reward: RewardId,
        /// Who would have earned it.
        user: UserId,
        /// The operator.
        operator: UserId,
        /// Why.
        reason: Reason,
    },
}
