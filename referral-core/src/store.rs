//! The storage ports: what a store MUST guarantee for the rules to hold.
//!
//! Every rule that must survive concurrent requests, several server processes
//! and retries is ONE store operation, atomic as a whole, returning an outcome
//! enum. The service never reads state and then writes based on it; the store
//! decides. A PostgreSQL store decides with a single statement or a constraint;
//! an in-memory store under one lock guard (never held across an `.await`).
//!
//! Stores never read the clock: every operation that depends on time takes
//! `now` from the caller, so a test clock drives expiry and rolling windows in
//! any store alike. A rolling window written `(now - window, now]` below
//! counts every entry later than `now - window`, including entries stamped
//! after `now` by a process whose clock runs ahead: with several processes,
//! a limit errs on the safe side. Rate-limit state lives in the store, so limits hold across
//! processes sharing it.
//!
//! The two traits are independent consistency domains (no operation spans
//! both), so a deployment may keep login codes and users in different stores.
//! The conformance kit (`testkit` feature) checks every contract below.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::client::ClientAddress;
use crate::error::StoreError;
use crate::event::Event;
use crate::event::EventId;
use crate::invite_code::InviteCode;
use crate::money::Money;
use crate::otp::{ChallengeId, OtpGuess, OtpHash, OtpLength, OtpPolicy};
use crate::phone::PhoneNumber;
use crate::reward::RewardId;
use crate::user::{Profile, ReferralCursor, ReferralPage, User, UserId};

mod operators;
mod rewards;
pub use operators::{BlockOutcome, OperatorStore, UnblockOutcome, VoidOutcome};
pub use rewards::{
    ApproveOutcome, MAX_NEW_REWARDS, NewRewardIds, PayOutcome, RecordOutcome, ReverseOutcome,
    RewardStore,
};

/// A freshly drawn login code, as the store keeps it: two candidate codes,
/// one of the policy's `length` and one of its `step_up_length`, of which the
/// store keeps the one the phone's state calls for (inside the same atomic
/// step that decides it) and the service sends that one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewChallenge {
    /// Its id.
    pub id: ChallengeId,
    /// The keyed hash of the code of `policy.length` digits.
    pub hash: OtpHash,
    /// The keyed hash of the code of `policy.step_up_length` digits, kept
    /// instead when the phone is stepped up.
    pub step_up_hash: OtpHash,
    /// When it was issued (the caller's `now`).
    pub issued_at: DateTime<Utc>,
    /// When it stops verifying.
    pub expires_at: DateTime<Utc>,
}

/// What [`OtpStore::issue_otp`] did.
#[must_use]
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueOutcome {
    /// The challenge replaced the phone's previous one and the send was
    /// charged. `next_send_at` is when the phone may have another code (the
    /// later of the cooldown's end and the send window freeing a place).
    Issued {
        /// When the next code may be sent.
        next_send_at: DateTime<Utc>,
        /// The digits of the code kept: `policy.length`, or
        /// `policy.step_up_length` for a stepped-up phone (whose
        /// [`NewChallenge::step_up_hash`] was kept).
        code_length: OtpLength,
    },
    /// The previous charged send is younger than the resend cooldown.
    Cooldown {
        /// When the cooldown ends.
        retry_at: DateTime<Utc>,
    },
    /// The phone had `max_sends_per_window` charged sends in the send window.
    TooManySends {
        /// When the oldest of them leaves the window.
        retry_at: DateTime<Utc>,
    },
    /// The client address had `max_sends_per_client_per_window` charged
    /// sends in the send window.
    ClientLimited {
        /// When the oldest of them leaves the window.
        retry_at: DateTime<Utc>,
    },
    /// All phones together had `max_global_sends_per_window` charged sends in
    /// the send window: the global budget is spent.
    BudgetSpent {
        /// When the oldest of them leaves the window.
        retry_at: DateTime<Utc>,
    },
}

/// What [`OtpStore::verify_otp`] did.
#[must_use]
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// The guess was right; the challenge is consumed and verifies never again.
    Verified,
    /// The guess was wrong; it was counted against the challenge and the phone.
    /// At 0 attempts left the challenge is burned (also when this guess
    /// stepped the phone up).
    Mismatch {
        /// Wrong guesses the challenge still takes before it burns.
        attempts_left: u32,
    },
    /// The challenge already took `max_attempts` wrong guesses; nothing counted.
    Burned {
        /// When the burned challenge was issued.
        issued_at: DateTime<Utc>,
    },
    /// The challenge is past `expires_at`; nothing counted.
    Expired,
    /// The phone has no challenge, or it was consumed or revoked; nothing counted.
    NoChallenge,
}

/// Stores login-code challenges and the per-phone and per-client counters
/// that limit them.
///
/// Implementations MUST make each method one atomic step with respect to every
/// other call on the same phone (and, for [`issue_otp`](Self::issue_otp), the
/// same client), from any process sharing the store.
///
/// A phone is *stepped up* while its wrong guesses in
/// `(now - failure_window, now]` are at least `max_failures_per_window`.
///
/// **Bounded state**: a store MUST NOT keep a phone's or a client's records
/// for ever. Once every window of the policy has passed over them (the live
/// code expired at least `send_window` ago, no send in the send window or the
/// cooldown, no wrong guess in the failure window), they MUST be dropped
/// without waiting for the phone or client to come back, at a cost per call
/// that does not grow with the number of records (no full scan on the request
/// path). A dropped phone's verify answers [`VerifyOutcome::NoChallenge`]
/// where it would have answered [`VerifyOutcome::Expired`].
#[async_trait]
pub trait OtpStore: Send + Sync + 'static {
    /// Stores `challenge` as the phone's only live code, if the phone's and
    /// the client's limits allow one more send; charges the send when it does.
    ///
    /// In one atomic step, checking in this order:
    /// 1. the latest charged send is after `now - resend_cooldown` →
    ///    [`IssueOutcome::Cooldown`];
    /// 2. charged sends in `(now - send_window, now]` ≥ `max_sends_per_window`
    ///    → [`IssueOutcome::TooManySends`];
    /// 3. if `client` is given and `max_sends_per_client_per_window` is set:
    ///    charged sends of that client (any phones) in
    ///    `(now - send_window, now]` ≥ it → [`IssueOutcome::ClientLimited`]
    ///    (concurrent calls for different phones MUST NOT pass it);
    /// 4. if `max_global_sends_per_window` is set: charged sends of ALL phones
    ///    in `(now - send_window, now]` ≥ it → [`IssueOutcome::BudgetSpent`]
    ///    (concurrent calls for different phones MUST NOT overspend it);
    /// 5. otherwise record a charged send for `challenge.id` at `now` (for the
    ///    phone, the client and the budget), make the challenge the phone's
    ///    live code (the previous one stops verifying) with 0 wrong guesses,
    ///    keeping [`NewChallenge::step_up_hash`] if the phone is stepped up
    ///    and [`NewChallenge::hash`] otherwise, and return
    ///    [`IssueOutcome::Issued`] with that code's length.
    ///
    /// Nothing changes on the first four outcomes.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; nothing may have changed then.
    async fn issue_otp(
        &self,
        phone: &PhoneNumber,
        challenge: &NewChallenge,
        client: Option<&ClientAddress>,
        policy: &OtpPolicy,
        now: DateTime<Utc>,
    ) -> Result<IssueOutcome, StoreError>;

    /// Undoes the send of `challenge` after the SMS could not be sent: if it is
    /// still the phone's live code it stops verifying, and its send is no
    /// longer charged (neither cooldown, send window nor global budget count
    /// it, nor the client's limit). Idempotent;
    /// a no-op for an unknown or replaced challenge (except that its send is
    /// uncharged).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn revoke_otp(
        &self,
        phone: &PhoneNumber,
        challenge: ChallengeId,
    ) -> Result<(), StoreError>;

    /// Checks `guess` against the phone's live code and counts the result, in
    /// one atomic step, checking in this order:
    /// 1. no live challenge (none, consumed, revoked) →
    ///    [`VerifyOutcome::NoChallenge`];
    /// 2. `max_attempts` wrong guesses taken, or the phone is stepped up and
    ///    the challenge is shorter than `step_up_length` →
    ///    [`VerifyOutcome::Burned`];
    /// 3. `now >= expires_at` → [`VerifyOutcome::Expired`];
    /// 4. `guess.matches(hash)` → consume the challenge,
    ///    [`VerifyOutcome::Verified`];
    /// 5. otherwise count one wrong guess on the challenge and one for the
    ///    phone at `now`; if that steps the phone up, burn the challenge (it
    ///    takes no more guesses, right or wrong);
    ///    [`VerifyOutcome::Mismatch`].
    ///
    /// Of any number of concurrent calls with the right code, exactly one
    /// returns `Verified`. No wrong guess may go uncounted under concurrency,
    /// and no code shorter than `step_up_length` verifies once the phone is
    /// stepped up.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn verify_otp(
        &self,
        phone: &PhoneNumber,
        guess: &OtpGuess,
        policy: &OtpPolicy,
        now: DateTime<Utc>,
    ) -> Result<VerifyOutcome, StoreError>;

    /// Whether the store answers.
    ///
    /// # Errors
    /// [`StoreError`] when it does not.
    async fn health(&self) -> Result<(), StoreError>;
}

/// The user a first login would create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewUser {
    /// The new user's id.
    pub id: UserId,
    /// The moment of the first login.
    pub created_at: DateTime<Utc>,
}

/// What [`ReferralStore::register`] did.
#[must_use]
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// The phone had no user; this one was created.
    Created(User),
    /// The phone already had this user; nothing changed.
    Existing(User),
    /// Every candidate invite code was taken; nothing changed.
    CodesExhausted,
    /// The phone's user is blocked by an operator (see
    /// [`crate::operator`]); nothing changed.
    Blocked(User),
}

/// Limits of invite activation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InvitePolicy {
    /// Activations of unknown codes by one user within any
    /// [`failure_window`](Self::failure_window) before the user must wait (10).
    pub max_failures_per_window: u32,
    /// The rolling window of `max_failures_per_window` (1 hour).
    pub failure_window: std::time::Duration,
    /// The welcome reward this activation gives the user (`None`: none).
    /// [`ReferralService`](crate::ReferralService) sets it on each call from
    /// [`RewardPolicy::welcome`](crate::RewardPolicy::welcome) with a fresh id;
    /// a value in [`Config::invite`](crate::Config::invite) is replaced.
    pub welcome: Option<WelcomeReward>,
}

/// A welcome reward to create with an activation, in the same atomic step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WelcomeReward {
    /// The reward's id.
    pub id: RewardId,
    /// Its amount (positive).
    pub amount: Money,
}

impl Default for InvitePolicy {
    fn default() -> Self {
        Self {
            max_failures_per_window: 10,
            failure_window: std::time::Duration::from_secs(3600),
            welcome: None,
        }
    }
}

/// What [`ReferralStore::activate_invite`] did: the one-invite rule.
#[must_use]
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationOutcome {
    /// The user now has `referrer`'s code activated.
    Activated {
        /// The code's owner.
        referrer: UserId,
    },
    /// The user had already activated this very code; nothing changed (a safe
    /// retry).
    AlreadyActive {
        /// The code's owner.
        referrer: UserId,
    },
    /// The user activated another code before; nothing changed.
    AlreadyActivated {
        /// The code the user activated.
        code: InviteCode,
    },
    /// No user has this code; one failure was counted for the user.
    UnknownCode,
    /// The code is the user's own; nothing changed.
    SelfReferral,
    /// The code's owner is referred by the user, directly or through a chain;
    /// activating would close a cycle. Nothing changed.
    Cycle,
    /// The user had too many unknown codes in the failure window; nothing
    /// changed, the code was not even looked up.
    RateLimited {
        /// When enough failures leave the window.
        retry_at: DateTime<Utc>,
    },
    /// No user has this id.
    UserNotFound,
    /// The user is blocked by an operator (see [`crate::operator`]); nothing
    /// changed, the code was not even looked up.
    Blocked,
}

/// Stores users, the referral graph and the event outbox.
///
/// Implementations MUST make each method one atomic step with respect to every
/// other call, from any process sharing the store.
#[async_trait]
pub trait ReferralStore: Send + Sync + 'static {
    /// The phone's user, creating it on the first call.
    ///
    /// In one atomic step: if `phone` has a user, return
    /// [`RegisterOutcome::Blocked`] when an operator blocked them (a store
    /// that implements [`OperatorStore`]; see [`crate::operator`]), else
    /// [`RegisterOutcome::Existing`]. Otherwise create `user` with the first of
    /// `invite_codes` no other user holds (codes compare as stored: upper
    /// case), record [`EventKind::UserRegistered`](crate::EventKind) in the
    /// outbox, and return [`RegisterOutcome::Created`]; if every candidate is
    /// taken, [`RegisterOutcome::CodesExhausted`]. Collisions MUST be decided
    /// by the store (a unique index or the same lock), never by a check
    /// followed by an insert. Of concurrent calls for one phone exactly one
    /// creates; the others return `Existing` with the same user.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn register(
        &self,
        phone: &PhoneNumber,
        user: NewUser,
        invite_codes: &[InviteCode],
    ) -> Result<RegisterOutcome, StoreError>;

    /// The user with this id.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError>;

    /// The user's profile with the phones of the first `referrals` referrals
    /// (oldest activation first). Its cost MUST NOT grow with the number of
    /// referrals beyond the `referrals` asked for (keep a counter).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn profile(&self, id: UserId, referrals: usize) -> Result<Option<Profile>, StoreError>;

    /// Activates `code` for `user`: the one-invite rule, in one atomic step,
    /// checking in this order:
    /// 1. no such user → [`ActivationOutcome::UserNotFound`];
    ///    the user is blocked (a store that implements [`OperatorStore`])
    ///    → [`ActivationOutcome::Blocked`];
    /// 2. the user activated a code before: the same code →
    ///    [`ActivationOutcome::AlreadyActive`], another →
    ///    [`ActivationOutcome::AlreadyActivated`];
    /// 3. unknown codes by this user in `(now - failure_window, now]` ≥
    ///    `max_failures_per_window` → [`ActivationOutcome::RateLimited`];
    /// 4. no user holds `code` → count a failure for the user at `now`,
    ///    [`ActivationOutcome::UnknownCode`];
    /// 5. the code is the user's own → [`ActivationOutcome::SelfReferral`];
    /// 6. the user is the code owner's referrer, or its referrer's, and so
    ///    on → [`ActivationOutcome::Cycle`];
    /// 7. otherwise record the activation at `now` (the owner's referral count
    ///    and list grow by one), record
    ///    [`EventKind::InviteActivated`](crate::EventKind) in the outbox; if
    ///    `policy.welcome` is set, create that welcome reward for the user
    ///    (kind `welcome`, `approved` at `now`, `referral` = the code's
    ///    owner, no conversion) with its `RewardCreated` and `RewardApproved`
    ///    events; and return [`ActivationOutcome::Activated`]. A store that
    ///    cannot keep rewards MUST fail with [`StoreError`] when
    ///    `policy.welcome` is set, never drop it.
    ///
    /// However many calls race, a user ends with at most one activated code,
    /// the graph never holds a cycle (also when two users activate each
    /// other's codes at the same instant), and referral counts are exact.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn activate_invite(
        &self,
        user: UserId,
        code: &InviteCode,
        policy: &InvitePolicy,
        now: DateTime<Utc>,
    ) -> Result<ActivationOutcome, StoreError>;

    /// Up to `limit` referrals of `user` after `after` (from the first when
    /// `None`), oldest activation first, ordered by `(activated_at, user id)`;
    /// `next` is set exactly when more follow. `converted` says whether the
    /// referee has had a qualifying conversion (see [`RewardStore`]; always
    /// `false` in a store without one). `None` when no such user. The
    /// cost MUST NOT grow with the number of referrals (seek, do not skip).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn referrals(
        &self,
        user: UserId,
        after: Option<ReferralCursor>,
        limit: usize,
    ) -> Result<Option<ReferralPage>, StoreError>;

    /// Up to `limit` outbox events after `after` (from the first when `None`),
    /// in id order. An event becomes readable only with the change it
    /// records, and never after a later id has been returned: a consumer that
    /// passes the last id it saw misses nothing. A store may hold an event
    /// back while a write that began before it is still running (that is how
    /// the order is kept), but once no write of the store is running, every
    /// event of a finished operation is readable: the conformance kit reads
    /// the events of what it just did.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    async fn events_after(
        &self,
        after: Option<EventId>,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError>;

    /// Whether the store answers.
    ///
    /// # Errors
    /// [`StoreError`] when it does not.
    async fn health(&self) -> Result<(), StoreError>;
}

macro_rules! forward_stores {
    ($($ptr:ident),*) => {$(
        #[async_trait]
        impl<T: OtpStore + ?Sized> OtpStore for $ptr<T> {
            async fn issue_otp(
                &self,
                phone: &PhoneNumber,
                challenge: &NewChallenge,
                client: Option<&ClientAddress>,
                policy: &OtpPolicy,
                now: DateTime<Utc>,
            ) -> Result<IssueOutcome, StoreError> {
                (**self).issue_otp(phone, challenge, client, policy, now).await
            }

            async fn revoke_otp(
                &self,
                phone: &PhoneNumber,
                challenge: ChallengeId,
            ) -> Result<(), StoreError> {
                (**self).revoke_otp(phone, challenge).await
            }

            async fn verify_otp(
                &self,
                phone: &PhoneNumber,
                guess: &OtpGuess,
                policy: &OtpPolicy,
                now: DateTime<Utc>,
            ) -> Result<VerifyOutcome, StoreError> {
                (**self).verify_otp(phone, guess, policy, now).await
            }

            async fn health(&self) -> Result<(), StoreError> {
                (**self).health().await
            }
        }

        #[async_trait]
        impl<T: ReferralStore + ?Sized> ReferralStore for $ptr<T> {
            async fn register(
                &self,
                phone: &PhoneNumber,
                user: NewUser,
                invite_codes: &[InviteCode],
            ) -> Result<RegisterOutcome, StoreError> {
                (**self).register(phone, user, invite_codes).await
            }

            async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
                (**self).user(id).await
            }

            async fn profile(
                &self,
                id: UserId,
                referrals: usize,
            ) -> Result<Option<Profile>, StoreError> {
                (**self).profile(id, referrals).await
            }

            async fn activate_invite(
                &self,
                user: UserId,
                code: &InviteCode,
                policy: &InvitePolicy,
                now: DateTime<Utc>,
            ) -> Result<ActivationOutcome, StoreError> {
                (**self).activate_invite(user, code, policy, now).await
            }

            async fn referrals(
                &self,
                user: UserId,
                after: Option<ReferralCursor>,
                limit: usize,
            ) -> Result<Option<ReferralPage>, StoreError> {
                (**self).referrals(user, after, limit).await
            }

            async fn events_after(
                &self,
                after: Option<EventId>,
                limit: usize,
            ) -> Result<Vec<Event>, StoreError> {
                (**self).events_after(after, limit).await
            }

            async fn health(&self) -> Result<(), StoreError> {
                (**self).health().await
            }
        }
    )*};
}

forward_stores!(Arc, Box);
