//! Login codes and per-phone counters, sharded by phone.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use referral_core::otp::{ChallengeId, OtpGuess, OtpHash, OtpPolicy};
use referral_core::store::{IssueOutcome, NewChallenge, OtpStore, VerifyOutcome};
use referral_core::{PhoneNumber, StoreError};

use crate::{MemoryStore, lock};

/// How many independently locked shards hold the per-phone state.
pub const OTP_SHARDS: usize = 16;

#[derive(Debug, Default)]
pub(crate) struct OtpShards {
    hasher: RandomState,
    shards: [Mutex<HashMap<PhoneNumber, PhoneState>>; OTP_SHARDS],
    /// Charged sends of all phones, oldest first, kept only while a global
    /// budget is configured. Locked after a shard, never before.
    global: Mutex<VecDeque<(DateTime<Utc>, ChallengeId)>>,
}

impl OtpShards {
    fn shard(&self, phone: &PhoneNumber) -> &Mutex<HashMap<PhoneNumber, PhoneState>> {
        // The shard count is a power of two and the hash is well mixed.
        let i = self.hasher.hash_one(phone) as usize % OTP_SHARDS;
        &self.shards[i]
    }
}

#[derive(Debug, Default)]
struct PhoneState {
    live: Option<Live>,
    /// Charged sends, oldest first.
    sends: VecDeque<(DateTime<Utc>, ChallengeId)>,
    /// Wrong guesses, oldest first.
    failures: VecDeque<DateTime<Utc>>,
}

#[derive(Debug)]
struct Live {
    id: ChallengeId,
    hash: OtpHash,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    wrong: u32,
}

fn delta(d: std::time::Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// Index of the entry that must leave a window holding `count` entries for
/// fewer than `max` to remain: `count - max`.
fn freeing(count: usize, max: u32) -> usize {
    count.saturating_sub(max as usize)
}

impl PhoneState {
    /// Drops what no window of `policy` can count any more.
    fn prune(&mut self, policy: &OtpPolicy, now: DateTime<Utc>) {
        let send_horizon = now - delta(policy.send_window.max(policy.resend_cooldown));
        while self
            .sends
            .front()
            .is_some_and(|(at, _)| *at <= send_horizon)
        {
            self.sends.pop_front();
        }
        let failure_horizon = now - delta(policy.failure_window);
        while self
            .failures
            .front()
            .is_some_and(|at| *at <= failure_horizon)
        {
            self.failures.pop_front();
        }
    }

    /// `Some(retry_at)` when the phone is locked by wrong guesses.
    fn locked(&self, policy: &OtpPolicy) -> Option<DateTime<Utc>> {
        let count = self.failures.len();
        (count >= policy.max_failures_per_window as usize).then(|| {
            self.failures[freeing(count, policy.max_failures_per_window)]
                + delta(policy.failure_window)
        })
    }

    fn is_empty(&self) -> bool {
        self.live.is_none() && self.sends.is_empty() && self.failures.is_empty()
    }
}

/// Inserts keeping the deque sorted; `now` almost always goes last.
fn insert_sorted<T: Copy>(deque: &mut VecDeque<T>, item: T, key: impl Fn(&T) -> DateTime<Utc>) {
    let at = key(&item);
    let i = deque.partition_point(|e| key(e) <= at);
    deque.insert(i, item);
}

#[async_trait]
impl OtpStore for MemoryStore {
    async fn issue_otp(
        &self,
        phone: &PhoneNumber,
        challenge: &NewChallenge,
        policy: &OtpPolicy,
        now: DateTime<Utc>,
    ) -> Result<IssueOutcome, StoreError> {
        let mut shard = lock(self.otp.shard(phone));
        let state = shard.entry(*phone).or_default();
        state.prune(policy, now);
        if let Some(retry_at) = state.locked(policy) {
            return Ok(IssueOutcome::Locked { retry_at });
        }
        let cooldown = delta(policy.resend_cooldown);
        if let Some((last, _)) = state.sends.back()
            && *last > now - cooldown
        {
            return Ok(IssueOutcome::Cooldown {
                retry_at: *last + cooldown,
            });
        }
        let window = delta(policy.send_window);
        let in_window = state.sends.partition_point(|(at, _)| *at <= now - window);
        let count = state.sends.len() - in_window;
        if count >= policy.max_sends_per_window as usize {
            let oldest = state.sends[in_window + freeing(count, policy.max_sends_per_window)].0;
            return Ok(IssueOutcome::TooManySends {
                retry_at: oldest + window,
            });
        }
        if let Some(max) = policy.max_global_sends_per_window {
            let mut global = lock(&self.otp.global);
            while global.front().is_some_and(|(at, _)| *at <= now - window) {
                global.pop_front();
            }
            if global.len() >= max as usize {
                let oldest = global[freeing(global.len(), max)].0;
                return Ok(IssueOutcome::BudgetSpent {
                    retry_at: oldest + window,
                });
            }
            insert_sorted(&mut global, (now, challenge.id), |(at, _)| *at);
        }
        insert_sorted(&mut state.sends, (now, challenge.id), |(at, _)| *at);
        state.live = Some(Live {
            id: challenge.id,
            hash: challenge.hash,
            issued_at: challenge.issued_at,
            expires_at: challenge.expires_at,
            wrong: 0,
        });
        let mut next_send_at = now + cooldown;
        let count = count + 1;
        if count >= policy.max_sends_per_window as usize {
            let frees = state.sends[in_window + freeing(count, policy.max_sends_per_window)].0;
            next_send_at = next_send_at.max(frees + window);
        }
        Ok(IssueOutcome::Issued { next_send_at })
    }

    async fn revoke_otp(
        &self,
        phone: &PhoneNumber,
        challenge: ChallengeId,
    ) -> Result<(), StoreError> {
        let mut shard = lock(self.otp.shard(phone));
        if let Some(state) = shard.get_mut(phone) {
            if state.live.as_ref().is_some_and(|l| l.id == challenge) {
                state.live = None;
            }
            state.sends.retain(|(_, id)| *id != challenge);
            if state.is_empty() {
                shard.remove(phone);
            }
        }
        lock(&self.otp.global).retain(|(_, id)| *id != challenge);
        Ok(())
    }

    async fn verify_otp(
        &self,
        phone: &PhoneNumber,
        guess: &OtpGuess,
        policy: &OtpPolicy,
        now: DateTime<Utc>,
    ) -> Result<VerifyOutcome, StoreError> {
        let mut shard = lock(self.otp.shard(phone));
        let Some(state) = shard.get_mut(phone) else {
            return Ok(VerifyOutcome::NoChallenge);
        };
        state.prune(policy, now);
        if let Some(retry_at) = state.locked(policy) {
            return Ok(VerifyOutcome::Locked { retry_at });
        }
        let Some(live) = state.live.as_mut() else {
            return Ok(VerifyOutcome::NoChallenge);
        };
        if live.wrong >= policy.max_attempts {
            return Ok(VerifyOutcome::Burned {
                issued_at: live.issued_at,
            });
        }
        if now >= live.expires_at {
            return Ok(VerifyOutcome::Expired);
        }
        if guess.matches(&live.hash) {
            state.live = None;
            if state.is_empty() {
                shard.remove(phone);
            }
            return Ok(VerifyOutcome::Verified);
        }
        live.wrong += 1;
        let attempts_left = policy.max_attempts - live.wrong;
        insert_sorted(&mut state.failures, now, |at| *at);
        Ok(VerifyOutcome::Mismatch { attempts_left })
    }

    async fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl MemoryStore {
    /// Forgets per-phone state that no rule of `policy` can use any more at
    /// `now`: expired or used codes of phones with no recent sends or wrong
    /// guesses. Call it now and then (say hourly) in a long-running process;
    /// the store also forgets such state whenever the phone is seen again.
    pub fn purge_otp(&self, policy: &OtpPolicy, now: DateTime<Utc>) {
        for shard in &self.otp.shards {
            lock(shard).retain(|_, state| {
                state.prune(policy, now);
                if state.live.as_ref().is_some_and(|l| l.expires_at <= now) {
                    state.live = None;
                }
                !state.is_empty()
            });
        }
    }

    /// How many phones have per-phone state (codes, counters) kept.
    #[must_use]
    pub fn otp_phone_count(&self) -> usize {
        self.otp.shards.iter().map(|s| lock(s).len()).sum()
    }
}
