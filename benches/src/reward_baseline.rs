//! The floor for `RewardStore::record_conversion`: the same work as
//! `MemoryStore`, written inline over `HashMap`s and `Vec`s behind one
//! reader-writer lock, without ports, async or outcome enums. It does what
//! the store must do for a conversion: find the user, refuse a repeat id,
//! keep the conversion and an event, decide qualification, use the fixed
//! part up once per referee, take the percentage rounded down, sum the
//! referrer's rewards in the cap window and cut to the cap, create the
//! rewards (index, the user's time-ordered list, running balances, the cap
//! list, the pending set, events), and answer the conversion and its
//! rewards with the referee's phone.

use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;

use chrono::{DateTime, TimeDelta, Utc};
use referral_core::{
    ConversionId, ConversionKind, Money, PhoneNumber, RewardId, RewardPolicy, UserId,
};

#[derive(Debug)]
struct URow {
    phone: PhoneNumber,
    referrer: Option<u32>,
    activated_at: Option<DateTime<Utc>>,
    fixed_used: bool,
    rewards: Vec<(DateTime<Utc>, RewardId, u32)>,
    pending: i64,
    earned: Vec<(DateTime<Utc>, u32)>,
}

#[derive(Debug)]
struct RRow {
    amount: i64,
    voided: bool,
}

#[derive(Debug)]
struct CRow {
    user: u32,
    amount: Money,
    kind: ConversionKind,
    rewards: Vec<u32>,
}

#[derive(Debug, Default)]
struct Inner {
    users: Vec<URow>,
    by_id: HashMap<UserId, u32>,
    convs: Vec<CRow>,
    conv_by_id: HashMap<ConversionId, u32>,
    rewards: Vec<RRow>,
    reward_by_id: HashMap<RewardId, u32>,
    pending: BTreeSet<(DateTime<Utc>, RewardId, u32)>,
    events: Vec<(DateTime<Utc>, u8, u32)>,
}

/// A conversion's answer, as plain fields.
#[derive(Debug)]
pub struct BareRecorded {
    /// The conversion's id.
    pub id: ConversionId,
    /// Its amount.
    pub amount: Money,
    /// Its rewards: id, amount, the referee's phone.
    pub rewards: Vec<(RewardId, i64, PhoneNumber)>,
}

/// The baseline ledger.
#[derive(Debug, Default)]
pub struct RewardBaseline {
    inner: RwLock<Inner>,
}

impl RewardBaseline {
    /// Adds a user.
    ///
    /// # Panics
    /// When the lock is poisoned.
    pub fn add_user(&self, id: UserId, phone: PhoneNumber) {
        let mut g = self.inner.write().unwrap();
        let ix = g.users.len() as u32;
        g.users.push(URow {
            phone,
            referrer: None,
            activated_at: None,
            fixed_used: false,
            rewards: Vec::new(),
            pending: 0,
            earned: Vec::new(),
        });
        g.by_id.insert(id, ix);
    }

    /// `referee` activated `referrer`'s code at `at`.
    ///
    /// # Panics
    /// When a user is unknown or the lock is poisoned.
    pub fn refer(&self, referee: UserId, referrer: UserId, at: DateTime<Utc>) {
        let mut g = self.inner.write().unwrap();
        let r = g.by_id[&referrer];
        let e = g.by_id[&referee] as usize;
        g.users[e].referrer = Some(r);
        g.users[e].activated_at = Some(at);
    }

    /// Records a conversion, as `RewardStore::record_conversion` would;
    /// `None` for a repeated id (after comparing its fields, as the store
    /// does to tell a repeat from a conflict).
    ///
    /// # Panics
    /// When the user is unknown or the lock is poisoned.
    pub fn record(
        &self,
        (id, user, amount, kind): (&ConversionId, UserId, Money, &ConversionKind),
        ids: [RewardId; 2],
        policy: &RewardPolicy,
        now: DateTime<Utc>,
    ) -> Option<BareRecorded> {
        let mut g = self.inner.write().unwrap();
        let g = &mut *g;
        let u = g.by_id[&user];
        if let Some(&cx) = g.conv_by_id.get(id) {
            let c = &g.convs[cx as usize];
            let _same = c.user == u && c.amount == amount && c.kind == *kind;
            return None;
        }
        let cx = g.convs.len() as u32;
        g.convs.push(CRow {
            user: u,
            amount,
            kind: kind.clone(),
            rewards: Vec::new(),
        });
        g.conv_by_id.insert(id.clone(), cx);
        g.events.push((now, 0, cx));
        let mut out = BareRecorded {
            id: id.clone(),
            amount,
            rewards: Vec::new(),
        };
        let row = &g.users[u as usize];
        let (Some(referrer), Some(at)) = (row.referrer, row.activated_at) else {
            return Some(out);
        };
        let window = TimeDelta::from_std(policy.window).unwrap();
        if now < at || now - at > window || amount.amount() < policy.min_amount {
            return Some(out);
        }
        let phone = row.phone;
        let mut fixed = 0;
        if amount.currency() == policy.currency && !g.users[u as usize].fixed_used {
            g.users[u as usize].fixed_used = true;
            fixed = policy.referrer_fixed;
        }
        let mut percent = amount.percent_floor(policy.referrer_bp).amount();
        if let Some(max) = policy.max_per_referrer {
            let start = now - TimeDelta::from_std(policy.cap_window).unwrap();
            let list = &g.users[referrer as usize].earned;
            let from = list.partition_point(|(t, _)| *t <= start);
            let used: i64 = list[from..]
                .iter()
                .map(|&(_, rx)| &g.rewards[rx as usize])
                .filter(|r| !r.voided)
                .map(|r| r.amount)
                .sum();
            let mut left = (max - used).max(0);
            fixed = fixed.min(left);
            left -= fixed;
            percent = percent.min(left);
        }
        for (value, id) in [(fixed, ids[0]), (percent, ids[1])] {
            if value <= 0 {
                continue;
            }
            let rx = g.rewards.len() as u32;
            g.rewards.push(RRow {
                amount: value,
                voided: false,
            });
            g.reward_by_id.insert(id, rx);
            g.pending.insert((now, id, rx));
            let r = &mut g.users[referrer as usize];
            r.rewards.push((now, id, rx));
            r.pending += value;
            r.earned.push((now, rx));
            g.convs[cx as usize].rewards.push(rx);
            g.events.push((now, 1, rx));
            out.rewards.push((id, value, phone));
        }
        Some(out)
    }
}
