//! Login codes, per-phone and per-client counters, sharded by key.
//!
//! # Bounded state
//!
//! Every phone and client record sits in a shard's map and, once, in the
//! shard's expiry heap (earliest deadline first). Each issue and verify pops
//! at most [`PRUNE_PER_CALL`] due entries from the phone's shard and as many
//! from the client shard of the same index: a record whose windows have all
//! passed is dropped, a record that was used since is pushed back with its
//! new deadline. A record is only created by a charged send (one per call),
//! so pruning several per call keeps up with any traffic, at a cost per call
//! that does not grow with the number of records; and maps and heaps give
//! their memory back as they empty.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use referral_core::otp::{ChallengeId, OtpGuess, OtpHash, OtpLength, OtpPolicy};
use referral_core::store::{IssueOutcome, NewChallenge, OtpStore, VerifyOutcome};
use referral_core::{ClientAddress, PhoneNumber, StoreError};

use crate::{MemoryStore, lock};

/// How many independently locked shards hold the per-phone state (and as
/// many the per-client state).
pub const OTP_SHARDS: usize = 16;

/// The most expiry-heap entries one call examines in each shard it locks.
pub const PRUNE_PER_CALL: usize = 8;

#[derive(Debug, Default)]
pub(crate) struct OtpShards {
    hasher: RandomState,
    phones: [Mutex<Shard<PhoneNumber, PhoneState>>; OTP_SHARDS],
    /// Locked after a phone's shard, never before.
    clients: [Mutex<Shard<ClientAddress, ClientState>>; OTP_SHARDS],
    /// Charged sends of all phones, oldest first, kept only while a global
    /// budget is configured. Locked after the phone's and the client's shards,
    /// never before.
    global: Mutex<VecDeque<(DateTime<Utc>, ChallengeId)>>,
}

impl OtpShards {
    fn index<K: Hash>(&self, key: &K) -> usize {
        // The shard count is a power of two and the hash is well mixed.
        self.hasher.hash_one(key) as usize % OTP_SHARDS
    }

    /// Locks the phone's shard, after pruning a few due records from it and
    /// from the client shard of the same index (so that calls of any kind
    /// keep both kinds of records bounded).
    fn phone(
        &self,
        phone: &PhoneNumber,
        policy: &OtpPolicy,
        now: DateTime<Utc>,
    ) -> MutexGuard<'_, Shard<PhoneNumber, PhoneState>> {
        let i = self.index(phone);
        let mut shard = lock(&self.phones[i]);
        shard.prune(policy, now);
        lock(&self.clients[i]).prune(policy, now);
        shard
    }

    fn client(&self, client: &ClientAddress) -> &Mutex<Shard<ClientAddress, ClientState>> {
        &self.clients[self.index(client)]
    }
}

/// Records that are no use once a deadline has passed.
trait Expiring {
    /// When no window of `policy` can count anything of the record any more.
    fn drop_at(&self, policy: &OtpPolicy) -> DateTime<Utc>;
}

/// A map of records with an expiry heap: each record has exactly one heap
/// entry, pushed when the record is created and moved on when popped early.
#[derive(Debug)]
struct Shard<K, V> {
    records: HashMap<K, V>,
    expiry: BinaryHeap<Reverse<(DateTime<Utc>, K)>>,
}

impl<K, V> Default for Shard<K, V> {
    fn default() -> Self {
        Self {
            records: HashMap::new(),
            expiry: BinaryHeap::new(),
        }
    }
}

impl<K: Hash + Eq + Ord + Copy, V: Expiring + Default> Shard<K, V> {
    /// Drops up to [`PRUNE_PER_CALL`] records whose deadline has passed.
    fn prune(&mut self, policy: &OtpPolicy, now: DateTime<Utc>) {
        let mut dropped = false;
        for _ in 0..PRUNE_PER_CALL {
            let Some(Reverse((due, key))) = self.expiry.peek().copied() else {
                break;
            };
            if due > now {
                break;
            }
            self.expiry.pop();
            match self.records.get(&key).map(|r| r.drop_at(policy)) {
                Some(at) if at > now => self.expiry.push(Reverse((at, key))),
                _ => {
                    self.records.remove(&key);
                    dropped = true;
                }
            }
        }
        if dropped {
            // Give memory back as the shard empties (amortised: a shrink
            // halves the capacity at most once per as many removals).
            if self.records.len() * 4 < self.records.capacity() {
                self.records.shrink_to(self.records.len() * 2);
            }
            if self.expiry.len() * 4 < self.expiry.capacity() {
                self.expiry.shrink_to(self.expiry.len() * 2);
            }
        }
    }

    /// Drops every record whose deadline has passed, with its heap entry,
    /// and gives the memory back.
    fn purge(&mut self, policy: &OtpPolicy, now: DateTime<Utc>) {
        let Self { records, expiry } = self;
        records.retain(|_, state| state.drop_at(policy) > now);
        expiry.retain(|Reverse((_, k))| records.contains_key(k));
        records.shrink_to_fit();
        expiry.shrink_to_fit();
    }

    /// The record of `key`, created (and put on the expiry heap) if absent.
    fn record(&mut self, key: K, now: DateTime<Utc>) -> &mut V {
        if !self.records.contains_key(&key) {
            // A fresh record's deadline is `now`: the first pop after it
            // moves the entry to the record's real deadline.
            self.expiry.push(Reverse((now, key)));
        }
        self.records.entry(key).or_default()
    }
}

#[derive(Debug, Default)]
struct PhoneState {
    live: Option<Live>,
    /// Charged sends, oldest first, with the client each was charged to.
    sends: VecDeque<(DateTime<Utc>, ChallengeId, Option<ClientAddress>)>,
    /// Wrong guesses, oldest first.
    failures: VecDeque<DateTime<Utc>>,
}

#[derive(Debug)]
struct Live {
    id: ChallengeId,
    hash: OtpHash,
    length: OtpLength,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    wrong: u32,
}

#[derive(Debug, Default)]
struct ClientState {
    /// Charged sends of this client, oldest first.
    sends: VecDeque<(DateTime<Utc>, ChallengeId)>,
}

fn delta(d: std::time::Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// Index of the entry that must leave a window holding `count` entries for
/// fewer than `max` to remain: `count - max`.
fn freeing(count: usize, max: u32) -> usize {
    count.saturating_sub(max as usize)
}

impl Expiring for PhoneState {
    fn drop_at(&self, policy: &OtpPolicy) -> DateTime<Utc> {
        let send_span = delta(policy.send_window.max(policy.resend_cooldown));
        let live = self
            .live
            .as_ref()
            .map(|l| l.expires_at + delta(policy.send_window));
        let send = self.sends.back().map(|(at, _, _)| *at + send_span);
        let failure = self
            .failures
            .back()
            .map(|at| *at + delta(policy.failure_window));
        [live, send, failure]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

impl Expiring for ClientState {
    fn drop_at(&self, policy: &OtpPolicy) -> DateTime<Utc> {
        self.sends
            .back()
            .map_or(DateTime::<Utc>::MIN_UTC, |(at, _)| {
                *at + delta(policy.send_window)
            })
    }
}

impl PhoneState {
    /// Drops what no window of `policy` can count any more.
    fn prune(&mut self, policy: &OtpPolicy, now: DateTime<Utc>) {
        let send_horizon = now - delta(policy.send_window.max(policy.resend_cooldown));
        while self
            .sends
            .front()
            .is_some_and(|(at, _, _)| *at <= send_horizon)
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

    /// Whether the phone has spent its failure budget (after [`Self::prune`]).
    fn stepped_up(&self, policy: &OtpPolicy) -> bool {
        self.failures.len() >= policy.max_failures_per_window as usize
    }
}

/// Inserts keeping the deque sorted; `now` almost always goes last.
fn insert_sorted<T: Copy>(deque: &mut VecDeque<T>, item: T, key: impl Fn(&T) -> DateTime<Utc>) {
    let at = key(&item);
    let i = deque.partition_point(|e| key(e) <= at);
    deque.insert(i, item);
}

/// When a window holding the sorted times `ats` (all inside it) frees a
/// place, if it holds `max` or more.
fn full_until(
    ats: impl ExactSizeIterator<Item = DateTime<Utc>>,
    max: u32,
    window: TimeDelta,
) -> Option<DateTime<Utc>> {
    let count = ats.len();
    if count < max as usize {
        return None;
    }
    ats.into_iter()
        .nth(freeing(count, max))
        .map(|oldest| oldest + window)
}

#[async_trait]
impl OtpStore for MemoryStore {
    async fn issue_otp(
        &self,
        phone: &PhoneNumber,
        challenge: &NewChallenge,
        client: Option<&ClientAddress>,
        policy: &OtpPolicy,
        now: DateTime<Utc>,
    ) -> Result<IssueOutcome, StoreError> {
        let mut shard = self.otp.phone(phone, policy, now);
        let cooldown = delta(policy.resend_cooldown);
        let window = delta(policy.send_window);
        let mut in_window: Vec<DateTime<Utc>> = Vec::new();
        let mut stepped_up = false;
        if let Some(state) = shard.records.get_mut(phone) {
            state.prune(policy, now);
            if let Some((last, _, _)) = state.sends.back()
                && *last > now - cooldown
            {
                return Ok(IssueOutcome::Cooldown {
                    retry_at: *last + cooldown,
                });
            }
            in_window = state
                .sends
                .iter()
                .map(|(at, _, _)| *at)
                .filter(|at| *at > now - window)
                .collect();
            if let Some(retry_at) = full_until(
                in_window.iter().copied(),
                policy.max_sends_per_window,
                window,
            ) {
                return Ok(IssueOutcome::TooManySends { retry_at });
            }
            stepped_up = state.stepped_up(policy);
        }
        let mut client_shard = match (client, policy.max_sends_per_client_per_window) {
            (Some(client), Some(max)) => {
                let mut cs = lock(self.otp.client(client));
                cs.prune(policy, now);
                if let Some(state) = cs.records.get(client) {
                    let ats = state
                        .sends
                        .iter()
                        .map(|(at, _)| *at)
                        .filter(|at| *at > now - window);
                    if let Some(retry_at) =
                        full_until(ats.collect::<Vec<_>>().into_iter(), max, window)
                    {
                        return Ok(IssueOutcome::ClientLimited { retry_at });
                    }
                }
                Some((cs, *client))
            }
            _ => None,
        };
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
        let charged_client = match client_shard.as_mut() {
            Some((cs, client)) => {
                let state = cs.record(*client, now);
                let window = delta(policy.send_window);
                while state
                    .sends
                    .front()
                    .is_some_and(|(at, _)| *at <= now - window)
                {
                    state.sends.pop_front();
                }
                insert_sorted(&mut state.sends, (now, challenge.id), |(at, _)| *at);
                Some(*client)
            }
            None => None,
        };
        drop(client_shard);
        let (hash, length) = if stepped_up {
            (challenge.step_up_hash, policy.step_up_length)
        } else {
            (challenge.hash, policy.length)
        };
        let state = shard.record(*phone, now);
        insert_sorted(
            &mut state.sends,
            (now, challenge.id, charged_client),
            |(at, _, _)| *at,
        );
        state.live = Some(Live {
            id: challenge.id,
            hash,
            length,
            issued_at: challenge.issued_at,
            expires_at: challenge.expires_at,
            wrong: 0,
        });
        in_window.push(now);
        in_window.sort_unstable();
        let mut next_send_at = now + cooldown;
        if let Some(frees) = full_until(in_window.into_iter(), policy.max_sends_per_window, window)
        {
            next_send_at = next_send_at.max(frees);
        }
        Ok(IssueOutcome::Issued {
            next_send_at,
            code_length: length,
        })
    }

    async fn revoke_otp(
        &self,
        phone: &PhoneNumber,
        challenge: ChallengeId,
    ) -> Result<(), StoreError> {
        let mut shard = lock(&self.otp.phones[self.otp.index(phone)]);
        if let Some(state) = shard.records.get_mut(phone) {
            if state.live.as_ref().is_some_and(|l| l.id == challenge) {
                state.live = None;
            }
            let charged: Vec<ClientAddress> = state
                .sends
                .iter()
                .filter(|(_, id, _)| *id == challenge)
                .filter_map(|(_, _, client)| *client)
                .collect();
            state.sends.retain(|(_, id, _)| *id != challenge);
            // An emptied record stays until its heap entry comes due.
            for client in charged {
                let mut cs = lock(self.otp.client(&client));
                if let Some(cstate) = cs.records.get_mut(&client) {
                    cstate.sends.retain(|(_, id)| *id != challenge);
                }
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
        let mut shard = self.otp.phone(phone, policy, now);
        let Some(state) = shard.records.get_mut(phone) else {
            return Ok(VerifyOutcome::NoChallenge);
        };
        state.prune(policy, now);
        let stepped_up = state.stepped_up(policy);
        let Some(live) = state.live.as_mut() else {
            return Ok(VerifyOutcome::NoChallenge);
        };
        if live.wrong >= policy.max_attempts || (stepped_up && live.length < policy.step_up_length)
        {
            return Ok(VerifyOutcome::Burned {
                issued_at: live.issued_at,
            });
        }
        if now >= live.expires_at {
            return Ok(VerifyOutcome::Expired);
        }
        if guess.matches(&live.hash) {
            state.live = None;
            return Ok(VerifyOutcome::Verified);
        }
        live.wrong += 1;
        insert_sorted(&mut state.failures, now, |at| *at);
        if !stepped_up && state.stepped_up(policy) {
            // This guess spent the phone's failure budget: the live code
            // dies with it, whatever attempts it had left.
            if let Some(live) = state.live.as_mut() {
                live.wrong = policy.max_attempts;
            }
        }
        let wrong = state.live.as_ref().map_or(policy.max_attempts, |l| l.wrong);
        Ok(VerifyOutcome::Mismatch {
            attempts_left: policy.max_attempts.saturating_sub(wrong),
        })
    }

    async fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl MemoryStore {
    /// Forgets, in one pass over every shard, per-phone and per-client state
    /// that no rule of `policy` can use any more at `now`. Not needed for
    /// bounded memory (every call prunes a few due records, see the module
    /// docs); useful to free everything at once after a burst.
    pub fn purge_otp(&self, policy: &OtpPolicy, now: DateTime<Utc>) {
        for shard in &self.otp.phones {
            lock(shard).purge(policy, now);
        }
        for shard in &self.otp.clients {
            lock(shard).purge(policy, now);
        }
    }

    /// How many phones have per-phone state (codes, counters) kept.
    #[must_use]
    pub fn otp_phone_count(&self) -> usize {
        self.otp.phones.iter().map(|s| lock(s).records.len()).sum()
    }

    /// How many client addresses have per-client state kept.
    #[must_use]
    pub fn otp_client_count(&self) -> usize {
        self.otp.clients.iter().map(|s| lock(s).records.len()).sum()
    }
}
