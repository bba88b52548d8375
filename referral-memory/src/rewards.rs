//! Conversions and the reward ledger, in the same lock as the referral graph
//! (a conversion reads who referred whom; an activation writes the welcome
//! reward).
//!
//! Costs: recording a conversion is O(log n) in the store's rewards plus the
//! referrer's rewards inside the cap window when a cap is set (they are
//! summed); a profile's balances are O(currencies) (running totals); a
//! rewards page is O(log n + page) (binary search in the user's
//! time-ordered list); an approval run is O(log n + approved) (an ordered
//! set of pending rewards).

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use referral_core::store::{
    ApproveOutcome, NewRewardIds, PayOutcome, RecordOutcome, ReverseOutcome, RewardStore,
    VoidOutcome, WelcomeReward,
};
use referral_core::{
    Balance, Conversion, ConversionId, ConversionKind, ConversionUser, Currency, EventKind, Money,
    NewConversion, PayoutRef, Reason, ReversalId, Reward, RewardCursor, RewardExportBatch,
    RewardExportRow, RewardId, RewardKind, RewardPage, RewardPolicy, RewardStatus, RewardTotals,
    StoreError, UserId,
};

use crate::MemoryStore;
use crate::users::{Graph, Ix};

/// Index of a reward in [`Ledger::rewards`].
type Rx = u32;
/// Index of a conversion in [`Ledger::conversions`].
type Cx = u32;

/// The reward side of the store.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    rewards: Vec<RewardRec>,
    reward_by_id: HashMap<RewardId, Rx>,
    conversions: Vec<ConvRec>,
    conversion_by_id: HashMap<ConversionId, Cx>,
    /// Per user: their rewards and totals, and what they did as a referee.
    users: HashMap<Ix, UserLedger>,
    /// Pending rewards by `(created_at, id)`: what an approval run walks.
    /// The pending rewards of a blocked user are taken out while the block
    /// lasts (parked), so a run never walks past them.
    pending: BTreeSet<(DateTime<Utc>, RewardId, Rx)>,
    /// Every reward by `(created_at, id)`: what the export walks.
    by_created: BTreeSet<(DateTime<Utc>, RewardId, Rx)>,
    /// Program totals per currency, sorted by currency.
    totals: Vec<RewardTotals>,
}

#[derive(Debug)]
struct RewardRec {
    id: RewardId,
    user: Ix,
    kind: RewardKind,
    currency: Currency,
    amount: i64,
    original: i64,
    /// Sum of this reward's clawbacks (≤ 0).
    clawed: i64,
    status: RewardStatus,
    conversion: Option<Cx>,
    referral: Option<Ix>,
    reverses: Option<Rx>,
    created_at: DateTime<Utc>,
    approved_at: Option<DateTime<Utc>>,
    paid_at: Option<DateTime<Utc>>,
    payout_ref: Option<PayoutRef>,
}

#[derive(Debug)]
struct ConvRec {
    id: ConversionId,
    user: Ix,
    amount: Money,
    kind: ConversionKind,
    occurred_at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
    reversed: i64,
    /// The rewards its recording created (fixed first).
    rewards: Vec<Rx>,
    reversals: Vec<ReversalRec>,
}

#[derive(Debug)]
struct ReversalRec {
    id: ReversalId,
    amount: i64,
    /// The rewards it changed or added.
    rewards: Vec<Rx>,
}

/// Referrer-side rewards in one currency, by creation time.
type Earned = Vec<(DateTime<Utc>, Rx)>;

#[derive(Debug, Default)]
struct UserLedger {
    /// The user's rewards, by `(created_at, id)` ascending.
    rewards: Vec<(DateTime<Utc>, RewardId, Rx)>,
    /// Totals per currency, sorted by currency, with the number of
    /// non-voided rewards behind each.
    balances: Vec<(Balance, u64)>,
    /// The user's referrer-side rewards per currency, by creation time:
    /// what the cap sums.
    earned: Vec<(Currency, Earned)>,
    /// As a referee: had a qualifying conversion.
    converted: bool,
    /// As a referee: had a qualifying conversion in the policy currency
    /// (the fixed part is used up).
    fixed_used: bool,
    /// Approved and paid referrer-side rewards (clawbacks included) per
    /// currency, sorted by currency: the leaderboard's `rewarded`.
    rewarded: Vec<(Currency, i64)>,
}

impl UserLedger {
    fn balance(&mut self, currency: Currency) -> &mut (Balance, u64) {
        let i = match self
            .balances
            .binary_search_by(|(b, _)| b.currency.cmp(&currency))
        {
            Ok(i) => i,
            Err(i) => {
                self.balances.insert(i, (Balance::new(currency), 0));
                i
            }
        };
        &mut self.balances[i]
    }
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// What a new reward is.
#[derive(Clone, Copy)]
struct NewRec {
    id: RewardId,
    user: Ix,
    kind: RewardKind,
    money: Money,
    status: RewardStatus,
    conversion: Option<Cx>,
    referral: Option<Ix>,
    reverses: Option<Rx>,
}

impl Ledger {
    /// Moves `amount` into (or, negative, out of) the program totals of
    /// `status`, and the owner's `rewarded` for referrer-side rewards.
    fn tally(
        &mut self,
        user: Ix,
        kind: RewardKind,
        currency: Currency,
        status: RewardStatus,
        amount: i64,
    ) {
        let i = match self.totals.binary_search_by(|t| t.currency.cmp(&currency)) {
            Ok(i) => i,
            Err(i) => {
                self.totals.insert(
                    i,
                    RewardTotals {
                        currency,
                        pending: 0,
                        approved: 0,
                        paid: 0,
                        voided: 0,
                    },
                );
                i
            }
        };
        let t = &mut self.totals[i];
        let slot = match status {
            RewardStatus::Pending => &mut t.pending,
            RewardStatus::Approved => &mut t.approved,
            RewardStatus::Paid => &mut t.paid,
            _ => &mut t.voided,
        };
        *slot = slot.saturating_add(amount);
        if kind.is_referrer_side() && matches!(status, RewardStatus::Approved | RewardStatus::Paid)
        {
            let u = self.users.entry(user).or_default();
            let i = match u.rewarded.binary_search_by(|(c, _)| c.cmp(&currency)) {
                Ok(i) => i,
                Err(i) => {
                    u.rewarded.insert(i, (currency, 0));
                    i
                }
            };
            u.rewarded[i].1 = u.rewarded[i].1.saturating_add(amount);
        }
    }

    /// How many conversions were recorded.
    pub(crate) fn conversion_count(&self) -> usize {
        self.conversions.len()
    }

    /// The program's reward totals per currency.
    pub(crate) fn totals(&self) -> Vec<RewardTotals> {
        self.totals.clone()
    }

    /// A referrer's approved and paid referrer-side rewards per currency.
    pub(crate) fn rewarded(&self, user: Ix) -> Vec<Money> {
        self.users.get(&user).map_or_else(Vec::new, |u| {
            u.rewarded.iter().map(|&(c, a)| Money::new(a, c)).collect()
        })
    }
}

impl Graph {
    fn reward_of(&self, rx: Rx) -> Reward {
        let l = &self.ledger;
        let r = &l.rewards[rx as usize];
        Reward {
            id: r.id,
            user: self.rec(r.user).id,
            kind: r.kind,
            amount: Money::new(r.amount, r.currency),
            original_amount: Money::new(r.original, r.currency),
            status: r.status,
            conversion: r.conversion.map(|cx| l.conversions[cx as usize].id.clone()),
            referral: r.referral.map(|ix| self.rec(ix).id),
            referral_phone: r.referral.map(|ix| self.rec(ix).phone),
            reverses: r.reverses.map(|rx| l.rewards[rx as usize].id),
            created_at: r.created_at,
            approved_at: r.approved_at,
            paid_at: r.paid_at,
            payout_ref: r.payout_ref.clone(),
        }
    }

    fn rewards_of(&self, list: &[Rx]) -> Vec<Reward> {
        list.iter().map(|&rx| self.reward_of(rx)).collect()
    }

    fn conversion_of(&self, cx: Cx) -> Conversion {
        let c = &self.ledger.conversions[cx as usize];
        Conversion {
            id: c.id.clone(),
            user: self.rec(c.user).id,
            amount: c.amount,
            kind: c.kind.clone(),
            occurred_at: c.occurred_at,
            recorded_at: c.recorded_at,
            reversed_amount: c.reversed,
        }
    }

    /// Fails, before anything is written, when `id` is taken or `amount`
    /// is not a positive reward.
    pub(crate) fn check_new_reward(&self, id: RewardId, amount: i64) -> Result<(), StoreError> {
        if self.ledger.reward_by_id.contains_key(&id) {
            return Err(StoreError::internal(format!("reward id {id} is taken")));
        }
        if amount <= 0 {
            return Err(StoreError::internal("a welcome reward must be positive"));
        }
        Ok(())
    }

    fn check_ids(&self, ids: &NewRewardIds) -> Result<(), StoreError> {
        if ids[0] == ids[1] {
            return Err(StoreError::internal("the new reward ids are not distinct"));
        }
        match ids
            .iter()
            .find(|id| self.ledger.reward_by_id.contains_key(id))
        {
            Some(id) => Err(StoreError::internal(format!("reward id {id} is taken"))),
            None => Ok(()),
        }
    }

    /// Creates a reward with its balance, index and events. Callers checked
    /// the id and the room for another index first.
    fn create(&mut self, new: NewRec, now: DateTime<Utc>) -> Rx {
        let l = &mut self.ledger;
        let rx = l.rewards.len() as Rx;
        let approved = new.status == RewardStatus::Approved;
        l.rewards.push(RewardRec {
            id: new.id,
            user: new.user,
            kind: new.kind,
            currency: new.money.currency(),
            amount: new.money.amount(),
            original: new.money.amount(),
            clawed: 0,
            status: new.status,
            conversion: new.conversion,
            referral: new.referral,
            reverses: new.reverses,
            created_at: now,
            approved_at: approved.then_some(now),
            paid_at: None,
            payout_ref: None,
        });
        l.reward_by_id.insert(new.id, rx);
        l.by_created.insert((now, new.id, rx));
        // A blocked user's pending rewards stay out of the approval set
        // (none is made for them today; this keeps it so if one ever is).
        if new.status == RewardStatus::Pending && self.users[new.user as usize].block.is_none() {
            l.pending.insert((now, new.id, rx));
        }
        l.tally(
            new.user,
            new.kind,
            new.money.currency(),
            new.status,
            new.money.amount(),
        );
        let u = l.users.entry(new.user).or_default();
        let key = (now, new.id, rx);
        // Rewards nearly always come in time order: append without a search.
        match u.rewards.last() {
            Some(last) if (last.0, last.1) > (now, new.id) => {
                let i = u.rewards.partition_point(|e| (e.0, e.1) <= (now, new.id));
                u.rewards.insert(i, key);
            }
            _ => u.rewards.push(key),
        }
        let (balance, live) = u.balance(new.money.currency());
        balance.add(new.status, new.money.amount());
        *live += 1;
        if new.kind.is_referrer_side() {
            let currency = new.money.currency();
            let i = match u.earned.iter().position(|(c, _)| *c == currency) {
                Some(i) => i,
                None => {
                    u.earned.push((currency, Vec::new()));
                    u.earned.len() - 1
                }
            };
            let list = &mut u.earned[i].1;
            let at = list.partition_point(|(t, _)| *t <= now);
            list.insert(at, (now, rx));
        }
        let user = self.rec(new.user).id;
        self.push_event(
            now,
            EventKind::RewardCreated {
                reward: new.id,
                user,
                kind: new.kind,
                amount: new.money,
            },
        );
        if approved {
            self.push_event(
                now,
                EventKind::RewardApproved {
                    reward: new.id,
                    user,
                },
            );
        }
        rx
    }

    /// The welcome reward of an activation (checked with
    /// [`Graph::check_new_reward`] before the activation wrote anything).
    pub(crate) fn welcome(
        &mut self,
        user: Ix,
        referrer: Ix,
        welcome: &WelcomeReward,
        now: DateTime<Utc>,
    ) {
        self.create(
            NewRec {
                id: welcome.id,
                user,
                kind: RewardKind::Welcome,
                money: welcome.amount,
                status: RewardStatus::Approved,
                conversion: None,
                referral: Some(referrer),
                reverses: None,
            },
            now,
        );
    }

    /// What the cap has used of the referrer's room in `currency` for a
    /// reward made at `now`: the most that the non-voided referrer-side
    /// rewards and clawbacks created after `now - window` sum to in any
    /// window that will also hold the new reward, that is over every
    /// suffix of them in time (all those created at or after some instant),
    /// and at least 0. Not just their whole sum: a clawback is created
    /// after the reward it claws, so once that reward has left a window the
    /// clawback alone would make room that later windows do not have.
    fn cap_used(
        &self,
        referrer: Ix,
        currency: Currency,
        window: Duration,
        now: DateTime<Utc>,
    ) -> i64 {
        let Some(u) = self.ledger.users.get(&referrer) else {
            return 0;
        };
        let Some((_, list)) = u.earned.iter().find(|(c, _)| *c == currency) else {
            return 0;
        };
        let start = now - delta(window);
        let in_window = &list[list.partition_point(|(t, _)| *t <= start)..];
        let (mut tail, mut most) = (0_i64, 0_i64);
        for (i, &(at, rx)) in in_window.iter().enumerate().rev() {
            let r = &self.ledger.rewards[rx as usize];
            if r.status != RewardStatus::Voided {
                tail = tail.saturating_add(r.amount);
            }
            // A window starts between instants: entries of one instant
            // enter and leave it together.
            if i == 0 || in_window[i - 1].0 != at {
                most = most.max(tail);
            }
        }
        most
    }

    /// Sets the status of a reward, moving its amount between totals and
    /// keeping the pending set.
    fn set_status(&mut self, rx: Rx, status: RewardStatus) {
        let l = &mut self.ledger;
        let r = &mut l.rewards[rx as usize];
        let old = r.status;
        r.status = status;
        let (amount, currency, user, kind, key) = (
            r.amount,
            r.currency,
            r.user,
            r.kind,
            (r.created_at, r.id, rx),
        );
        if old == RewardStatus::Pending {
            l.pending.remove(&key);
        }
        l.tally(user, kind, currency, old, -amount);
        l.tally(user, kind, currency, status, amount);
        let u = l.users.entry(user).or_default();
        let (balance, live) = u.balance(currency);
        balance.add(old, -amount);
        balance.add(status, amount);
        if status == RewardStatus::Voided {
            *live = live.saturating_sub(1);
        }
    }

    fn record(
        &mut self,
        new: &NewConversion,
        ids: NewRewardIds,
        policy: &RewardPolicy,
        now: DateTime<Utc>,
    ) -> Result<RecordOutcome, StoreError> {
        let user = match new.user {
            ConversionUser::Id(id) => self.by_id.get(&id),
            ConversionUser::Phone(phone) => self.by_phone.get(&phone),
        };
        let Some(&user) = user else {
            return Ok(RecordOutcome::UserNotFound);
        };
        if let Some(&cx) = self.ledger.conversion_by_id.get(&new.id) {
            let c = &self.ledger.conversions[cx as usize];
            let same = c.user == user
                && c.amount == new.amount
                && c.kind == new.kind
                && new.occurred_at.is_none_or(|at| at == c.occurred_at);
            return Ok(if same {
                RecordOutcome::Existing {
                    conversion: self.conversion_of(cx),
                    rewards: self.rewards_of(&c.rewards),
                }
            } else {
                RecordOutcome::Conflict {
                    existing: self.conversion_of(cx),
                }
            });
        }
        self.check_ids(&ids)?;
        let cx = Cx::try_from(self.ledger.conversions.len())
            .map_err(|_| StoreError::internal("the memory store holds 2^32 conversions"))?;
        if self.ledger.rewards.len() > (Rx::MAX - 2) as usize {
            return Err(StoreError::internal("the memory store holds 2^32 rewards"));
        }
        let occurred_at = new.occurred_at.unwrap_or(now);
        let amount = new.amount;
        self.ledger.conversions.push(ConvRec {
            id: new.id.clone(),
            user,
            amount,
            kind: new.kind.clone(),
            occurred_at,
            recorded_at: now,
            reversed: 0,
            rewards: Vec::new(),
            reversals: Vec::new(),
        });
        self.ledger.conversion_by_id.insert(new.id.clone(), cx);
        self.count_day(now, crate::users::DayField::Conversions);
        self.push_event(
            now,
            EventKind::ConversionRecorded {
                conversion: new.id.clone(),
                user: self.rec(user).id,
                amount,
            },
        );
        // Qualification: a blocked referee or referrer earns nothing (the
        // block is read under this same lock guard).
        let rec = self.rec(user);
        let (Some(referrer), Some(activated_at)) = (rec.referrer, rec.activated_at) else {
            return Ok(self.recorded(cx));
        };
        let qualifies = rec.block.is_none()
            && self.rec(referrer).block.is_none()
            && occurred_at >= activated_at
            && occurred_at - activated_at <= delta(policy.window)
            && amount.amount() >= policy.min_amount;
        if !qualifies {
            return Ok(self.recorded(cx));
        }
        self.mark_converted(user, referrer);
        let referee = self.ledger.users.entry(user).or_default();
        let mut fixed = 0;
        if amount.currency() == policy.currency && !referee.fixed_used {
            referee.fixed_used = true;
            fixed = policy.referrer_fixed;
        }
        let mut percent = amount.percent_floor(policy.referrer_bp).amount();
        if let Some(max) = policy.max_per_referrer {
            let used = self.cap_used(referrer, amount.currency(), policy.cap_window, now);
            let mut left = max.saturating_sub(used).max(0);
            fixed = fixed.min(left);
            left -= fixed;
            percent = percent.min(left);
        }
        let mut ids = ids.into_iter();
        for (kind, value) in [
            (RewardKind::ReferrerFixed, fixed),
            (RewardKind::ReferrerPercent, percent),
        ] {
            if value <= 0 {
                continue;
            }
            let Some(id) = ids.next() else { break };
            let rx = self.create(
                NewRec {
                    id,
                    user: referrer,
                    kind,
                    money: Money::new(value, amount.currency()),
                    status: RewardStatus::Pending,
                    conversion: Some(cx),
                    referral: Some(user),
                    reverses: None,
                },
                now,
            );
            self.ledger.conversions[cx as usize].rewards.push(rx);
        }
        Ok(self.recorded(cx))
    }

    fn recorded(&self, cx: Cx) -> RecordOutcome {
        RecordOutcome::Recorded {
            conversion: self.conversion_of(cx),
            rewards: self.rewards_of(&self.ledger.conversions[cx as usize].rewards),
        }
    }

    /// Marks the referee's referral converted (in its own ledger and in the
    /// referrer's referral list).
    fn mark_converted(&mut self, referee: Ix, referrer: Ix) {
        let u = self.ledger.users.entry(referee).or_default();
        if u.converted {
            return;
        }
        u.converted = true;
        let rec = self.rec(referee);
        let (id, at) = (rec.id, rec.activated_at);
        let Some(at) = at else { return };
        let list = &mut self.users[referrer as usize].referrals;
        let i = list.partition_point(|r| (r.activated_at, r.user) < (at, id));
        if let Some(entry) = list.get_mut(i).filter(|r| r.user == id) {
            entry.converted = true;
        }
    }

    fn reverse(
        &mut self,
        conversion: &ConversionId,
        reversal: &ReversalId,
        amount: Option<i64>,
        ids: NewRewardIds,
        now: DateTime<Utc>,
    ) -> Result<ReverseOutcome, StoreError> {
        let Some(&cx) = self.ledger.conversion_by_id.get(conversion) else {
            return Ok(ReverseOutcome::ConversionNotFound);
        };
        let c = &self.ledger.conversions[cx as usize];
        if let Some(done) = c.reversals.iter().find(|r| r.id == *reversal) {
            return Ok(if amount.is_none_or(|a| a == done.amount) {
                ReverseOutcome::Existing {
                    conversion: self.conversion_of(cx),
                    rewards: self.rewards_of(&done.rewards),
                }
            } else {
                ReverseOutcome::Conflict {
                    amount: done.amount,
                }
            });
        }
        let total = c.amount.amount();
        let remaining = total - c.reversed;
        let amount = amount.unwrap_or(remaining);
        if amount <= 0 || amount > remaining {
            return Ok(ReverseOutcome::ExceedsRemaining { remaining });
        }
        self.check_ids(&ids)?;
        if self.ledger.rewards.len() > (Rx::MAX - 2) as usize {
            return Err(StoreError::internal("the memory store holds 2^32 rewards"));
        }
        let left = remaining - amount;
        let originals = c.rewards.clone();
        self.ledger.conversions[cx as usize].reversed += amount;
        self.push_event(
            now,
            EventKind::ConversionReversed {
                conversion: conversion.clone(),
                reversal: reversal.clone(),
                amount,
            },
        );
        let mut ids = ids.into_iter();
        let mut changed = Vec::with_capacity(originals.len());
        for rx in originals {
            let r = &self.ledger.rewards[rx as usize];
            let target = Money::new(r.original, r.currency)
                .scale_floor(left, total)
                .map_or(0, |m| m.amount());
            let (id, user) = (r.id, self.rec(r.user).id);
            match r.status {
                RewardStatus::Pending if target <= 0 => {
                    self.set_status(rx, RewardStatus::Voided);
                    self.push_event(now, EventKind::RewardVoided { reward: id, user });
                    changed.push(rx);
                }
                RewardStatus::Pending if target < r.amount => {
                    let (old, currency, owner, kind) = (r.amount, r.currency, r.user, r.kind);
                    self.ledger.rewards[rx as usize].amount = target;
                    self.ledger
                        .tally(owner, kind, currency, RewardStatus::Pending, target - old);
                    let u = self.ledger.users.entry(owner).or_default();
                    u.balance(currency)
                        .0
                        .add(RewardStatus::Pending, target - old);
                    self.push_event(
                        now,
                        EventKind::RewardAdjusted {
                            reward: id,
                            user,
                            amount: Money::new(target, currency),
                        },
                    );
                    changed.push(rx);
                }
                RewardStatus::Approved | RewardStatus::Paid if target < r.amount + r.clawed => {
                    let diff = target - (r.amount + r.clawed);
                    let (owner, currency, referral) = (r.user, r.currency, r.referral);
                    let Some(new_id) = ids.next() else { break };
                    self.ledger.rewards[rx as usize].clawed += diff;
                    let claw = self.create(
                        NewRec {
                            id: new_id,
                            user: owner,
                            kind: RewardKind::Clawback,
                            money: Money::new(diff, currency),
                            status: RewardStatus::Approved,
                            conversion: Some(cx),
                            referral,
                            reverses: Some(rx),
                        },
                        now,
                    );
                    changed.push(claw);
                }
                _ => {}
            }
        }
        self.ledger.conversions[cx as usize]
            .reversals
            .push(ReversalRec {
                id: reversal.clone(),
                amount,
                rewards: changed.clone(),
            });
        Ok(ReverseOutcome::Reversed {
            conversion: self.conversion_of(cx),
            rewards: self.rewards_of(&changed),
        })
    }

    fn pay(&mut self, id: RewardId, payout_ref: &PayoutRef, now: DateTime<Utc>) -> PayOutcome {
        let Some(&rx) = self.ledger.reward_by_id.get(&id) else {
            return PayOutcome::NotFound;
        };
        let r = &self.ledger.rewards[rx as usize];
        match r.status {
            RewardStatus::Approved => {
                let user = self.rec(r.user).id;
                self.set_status(rx, RewardStatus::Paid);
                let r = &mut self.ledger.rewards[rx as usize];
                r.paid_at = Some(now);
                r.payout_ref = Some(payout_ref.clone());
                self.push_event(
                    now,
                    EventKind::RewardPaid {
                        reward: id,
                        user,
                        payout_ref: payout_ref.clone(),
                    },
                );
                PayOutcome::Paid(self.reward_of(rx))
            }
            RewardStatus::Paid if r.payout_ref.as_ref() == Some(payout_ref) => {
                PayOutcome::AlreadyPaid(self.reward_of(rx))
            }
            _ => PayOutcome::NotPayable(self.reward_of(rx)),
        }
    }

    fn approve(&mut self, hold: Duration, now: DateTime<Utc>, limit: usize) -> Vec<Reward> {
        let cutoff = now - delta(hold);
        // Blocked users' pending rewards are parked out of `pending` (see
        // `park`), so they are skipped without being walked.
        let due: Vec<Rx> = self
            .ledger
            .pending
            .iter()
            .take_while(|(at, _, _)| *at <= cutoff)
            .take(limit)
            .map(|&(_, _, rx)| rx)
            .collect();
        for &rx in &due {
            self.set_status(rx, RewardStatus::Approved);
            let r = &mut self.ledger.rewards[rx as usize];
            r.approved_at = Some(now);
            let (reward, user) = (r.id, r.user);
            let user = self.rec(user).id;
            self.push_event(now, EventKind::RewardApproved { reward, user });
        }
        self.rewards_of(&due)
    }

    fn page(&self, user: UserId, after: Option<RewardCursor>, limit: usize) -> Option<RewardPage> {
        let &ix = self.by_id.get(&user)?;
        let Some(u) = self.ledger.users.get(&ix) else {
            return Some(RewardPage::default());
        };
        let list = &u.rewards;
        let end = after.map_or(list.len(), |c| {
            let key = (c.created_at(), c.id());
            list.partition_point(|e| (e.0, e.1) < key)
        });
        let start = end.saturating_sub(limit);
        let items: Vec<Reward> = list[start..end]
            .iter()
            .rev()
            .map(|&(_, _, rx)| self.reward_of(rx))
            .collect();
        let next = if start > 0 {
            items.last().map(RewardCursor::after)
        } else {
            None
        };
        Some(RewardPage { items, next })
    }

    fn balances(&self, user: UserId) -> Option<Vec<Balance>> {
        let &ix = self.by_id.get(&user)?;
        Some(self.ledger.users.get(&ix).map_or_else(Vec::new, |u| {
            u.balances
                .iter()
                .filter(|(_, live)| *live > 0)
                .map(|(b, _)| *b)
                .collect()
        }))
    }
}

/// The operator side of the ledger.
impl Graph {
    /// Takes the user's pending rewards out of the approval set (on block),
    /// or puts them back (on unblock). O(the user's rewards).
    pub(crate) fn park(&mut self, user: Ix, parked: bool) {
        let l = &mut self.ledger;
        let Some(u) = l.users.get(&user) else { return };
        for &(at, id, rx) in &u.rewards {
            if l.rewards[rx as usize].status == RewardStatus::Pending {
                if parked {
                    l.pending.remove(&(at, id, rx));
                } else {
                    l.pending.insert((at, id, rx));
                }
            }
        }
    }

    /// The operator's void (see `OperatorStore::void_reward`).
    pub(crate) fn void(
        &mut self,
        id: RewardId,
        reason: &Reason,
        by: UserId,
        now: DateTime<Utc>,
    ) -> VoidOutcome {
        let Some(&rx) = self.ledger.reward_by_id.get(&id) else {
            return VoidOutcome::NotFound;
        };
        let r = &self.ledger.rewards[rx as usize];
        match r.status {
            RewardStatus::Voided => return VoidOutcome::AlreadyVoided(self.reward_of(rx)),
            RewardStatus::Paid => return VoidOutcome::NotVoidable(self.reward_of(rx)),
            _ if r.kind == RewardKind::Clawback => {
                return VoidOutcome::NotVoidable(self.reward_of(rx));
            }
            _ => {}
        }
        // Its clawbacks live in the reversals of its conversion.
        let clawbacks: Vec<Rx> = match (r.clawed, r.conversion) {
            (0, _) | (_, None) => Vec::new(),
            (_, Some(cx)) => self.ledger.conversions[cx as usize]
                .reversals
                .iter()
                .flat_map(|rev| rev.rewards.iter().copied())
                .filter(|&c| self.ledger.rewards[c as usize].reverses == Some(rx))
                .collect(),
        };
        if clawbacks
            .iter()
            .any(|&c| self.ledger.rewards[c as usize].status == RewardStatus::Paid)
        {
            return VoidOutcome::NotVoidable(self.reward_of(rx));
        }
        let user = self.rec(r.user).id;
        for v in std::iter::once(rx).chain(clawbacks) {
            if self.ledger.rewards[v as usize].status == RewardStatus::Voided {
                continue;
            }
            self.set_status(v, RewardStatus::Voided);
            let reward = self.ledger.rewards[v as usize].id;
            self.push_event(now, EventKind::RewardVoided { reward, user });
        }
        self.push_event(
            now,
            EventKind::RewardVoidedByOperator {
                reward: id,
                user,
                operator: by,
                reason: reason.clone(),
            },
        );
        VoidOutcome::Voided(self.reward_of(rx))
    }

    /// A batch of the rewards export.
    pub(crate) fn export_rewards(
        &self,
        after: Option<RewardCursor>,
        limit: usize,
    ) -> RewardExportBatch {
        // Every entry after the cursor's `(created_at, id)`, whatever its index.
        let from = after.map_or(Bound::Unbounded, |c| {
            Bound::Excluded((c.created_at(), c.id(), Rx::MAX))
        });
        let mut iter = self.ledger.by_created.range((from, Bound::Unbounded));
        let rows: Vec<RewardExportRow> = iter
            .by_ref()
            .take(limit)
            .map(|&(_, _, rx)| {
                let reward = self.reward_of(rx);
                let phone = self.rec(self.ledger.rewards[rx as usize].user).phone;
                RewardExportRow { reward, phone }
            })
            .collect();
        let next = if rows.len() == limit && iter.next().is_some() {
            rows.last().map(RewardExportRow::cursor)
        } else {
            None
        };
        RewardExportBatch { rows, next }
    }
}

#[async_trait]
impl RewardStore for MemoryStore {
    async fn record_conversion(
        &self,
        conversion: &NewConversion,
        ids: NewRewardIds,
        policy: &RewardPolicy,
        now: DateTime<Utc>,
    ) -> Result<RecordOutcome, StoreError> {
        self.users_write().record(conversion, ids, policy, now)
    }

    async fn reverse_conversion(
        &self,
        conversion: &ConversionId,
        reversal: &ReversalId,
        amount: Option<i64>,
        ids: NewRewardIds,
        now: DateTime<Utc>,
    ) -> Result<ReverseOutcome, StoreError> {
        self.users_write()
            .reverse(conversion, reversal, amount, ids, now)
    }

    async fn mark_reward_paid(
        &self,
        reward: RewardId,
        payout_ref: &PayoutRef,
        now: DateTime<Utc>,
    ) -> Result<PayOutcome, StoreError> {
        Ok(self.users_write().pay(reward, payout_ref, now))
    }

    async fn approve_due_rewards(
        &self,
        hold: Duration,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<ApproveOutcome, StoreError> {
        Ok(ApproveOutcome::Approved(
            self.users_write().approve(hold, now, limit),
        ))
    }

    async fn rewards(
        &self,
        user: UserId,
        after: Option<RewardCursor>,
        limit: usize,
    ) -> Result<Option<RewardPage>, StoreError> {
        Ok(self.users_read().page(user, after, limit))
    }

    async fn balances(&self, user: UserId) -> Result<Option<Vec<Balance>>, StoreError> {
        Ok(self.users_read().balances(user))
    }

    async fn reward(&self, id: RewardId) -> Result<Option<Reward>, StoreError> {
        let g = self.users_read();
        Ok(g.ledger.reward_by_id.get(&id).map(|&rx| g.reward_of(rx)))
    }

    async fn conversion(&self, id: &ConversionId) -> Result<Option<Conversion>, StoreError> {
        let g = self.users_read();
        Ok(g.ledger
            .conversion_by_id
            .get(id)
            .map(|&cx| g.conversion_of(cx)))
    }
}
