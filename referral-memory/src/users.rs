//! Users, the referral graph and the event outbox, behind one lock.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use referral_core::store::{
    ActivationOutcome, InvitePolicy, NewUser, ReferralStore, RegisterOutcome,
};
use referral_core::{
    Block, Event, EventId, EventKind, InviteCode, PhoneNumber, Profile, Referral, ReferralCursor,
    ReferralPage, StoreError, User, UserId,
};

use crate::MemoryStore;

/// Index of a user in [`Graph::users`].
pub(crate) type Ix = u32;

#[derive(Debug, Default)]
pub(crate) struct Graph {
    pub(crate) users: Vec<UserRec>,
    pub(crate) by_id: HashMap<UserId, Ix>,
    pub(crate) by_phone: HashMap<PhoneNumber, Ix>,
    pub(crate) by_code: HashMap<InviteCode, Ix>,
    /// Users by their phone's E.164 text: the operator search's order.
    pub(crate) by_phone_text: BTreeMap<String, Ix>,
    /// Referrers with at least one referral, best first: the all-time
    /// leaderboard, read in O(log n + limit).
    pub(crate) ranking: BTreeSet<RankKey>,
    /// Every activation by `(activated_at, referee id)`: the export's order
    /// and the leaderboard window.
    pub(crate) activations: BTreeSet<(DateTime<Utc>, UserId, Ix)>,
    /// What was created on each UTC date: `[users, activations, conversions]`.
    pub(crate) days: BTreeMap<NaiveDate, [u64; 3]>,
    /// Outbox; an event's id is its index + 1.
    events: Vec<EventRec>,
    /// Conversions and the reward ledger (see `rewards.rs`).
    pub(crate) ledger: crate::rewards::Ledger,
    /// Unknown invite codes tried, per user, oldest first.
    invite_failures: HashMap<Ix, VecDeque<DateTime<Utc>>>,
}

#[derive(Debug)]
pub(crate) struct UserRec {
    pub(crate) id: UserId,
    pub(crate) phone: PhoneNumber,
    pub(crate) code: InviteCode,
    pub(crate) created_at: DateTime<Utc>,
    /// The operator's block, while it lasts.
    pub(crate) block: Option<Block>,
    /// Whose code this user activated.
    pub(crate) referrer: Option<Ix>,
    /// When.
    pub(crate) activated_at: Option<DateTime<Utc>>,
    /// Who activated this user's code, sorted by `(activated_at, user id)`.
    /// Each entry carries what a profile or a page shows (40 bytes), so
    /// reading a long list copies one contiguous run instead of visiting a
    /// user record per referral.
    pub(crate) referrals: Vec<Referral>,
}

/// A referrer's place in [`Graph::ranking`]: more referrals first, then the
/// earlier latest activation, then the user id.
pub(crate) type RankKey = (Reverse<u64>, DateTime<Utc>, UserId, Ix);

/// Which count of a day.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DayField {
    Users = 0,
    Activations = 1,
    Conversions = 2,
}

/// Events keep indices, not copies: users never change phone or code, so the
/// full event is rebuilt exactly when read.
#[derive(Debug)]
struct EventRec {
    at: DateTime<Utc>,
    kind: EventRecKind,
}

#[derive(Debug)]
enum EventRecKind {
    Registered(Ix),
    Activated {
        user: Ix,
        referrer: Ix,
    },
    /// A reward event, kept whole (it names ids and amounts of its moment).
    Other(Box<EventKind>),
}

/// The order of a referral list (and of the keyset cursor).
fn referral_key(r: &Referral) -> (DateTime<Utc>, UserId) {
    (r.activated_at, r.user)
}

impl Graph {
    pub(crate) fn len(&self) -> usize {
        self.users.len()
    }

    /// Appends an event to the outbox.
    pub(crate) fn push_event(&mut self, at: DateTime<Utc>, kind: EventKind) {
        self.events.push(EventRec {
            at,
            kind: EventRecKind::Other(Box::new(kind)),
        });
    }

    /// Counts one creation on `at`'s UTC date.
    pub(crate) fn count_day(&mut self, at: DateTime<Utc>, field: DayField) {
        self.days.entry(at.date_naive()).or_default()[field as usize] += 1;
    }

    pub(crate) fn rec(&self, ix: Ix) -> &UserRec {
        &self.users[ix as usize]
    }

    pub(crate) fn user(&self, ix: Ix) -> User {
        let r = self.rec(ix);
        User {
            id: r.id,
            phone: r.phone,
            invite_code: r.code,
            created_at: r.created_at,
        }
    }

    /// The profile of `ix` with its first `referrals` referrals' phones
    /// (balances are filled in by the service from `RewardStore::balances`).
    pub(crate) fn profile(&self, ix: Ix, referrals: usize) -> Profile {
        let rec = self.rec(ix);
        Profile {
            user: self.user(ix),
            activated_invite_code: rec.referrer.map(|r| self.rec(r).code),
            referral_count: rec.referrals.len() as u64,
            referrals: rec
                .referrals
                .iter()
                .take(referrals)
                .map(|r| r.phone)
                .collect(),
            rewards: Vec::new(),
        }
    }

    fn event(&self, i: usize) -> Event {
        let rec = &self.events[i];
        let kind = match &rec.kind {
            &EventRecKind::Registered(ix) => {
                let u = self.rec(ix);
                EventKind::UserRegistered {
                    user: u.id,
                    phone: u.phone,
                    invite_code: u.code,
                }
            }
            &EventRecKind::Activated { user, referrer } => {
                let r = self.rec(referrer);
                EventKind::InviteActivated {
                    user: self.rec(user).id,
                    referrer: r.id,
                    invite_code: r.code,
                }
            }
            EventRecKind::Other(kind) => (**kind).clone(),
        };
        Event {
            id: EventId(i as u64 + 1),
            at: rec.at,
            kind,
        }
    }

    /// Moves `owner` to its place in the ranking after it gained a referral
    /// (its list already holds it; `old_latest` is when its latest referral
    /// activated before that one). A list is sorted by activation time, so
    /// its last entry is the latest referral.
    fn rank(&mut self, owner: Ix, old_latest: Option<DateTime<Utc>>) {
        let rec = &self.users[owner as usize];
        let count = rec.referrals.len() as u64;
        if let Some(old) = old_latest {
            self.ranking
                .remove(&(Reverse(count - 1), old, rec.id, owner));
        }
        if let Some(latest) = rec.referrals.last().map(|r| r.activated_at) {
            self.ranking.insert((Reverse(count), latest, rec.id, owner));
        }
    }

    /// Whether `ancestor` referred `ix`, directly or through a chain.
    fn referred_by(&self, mut ix: Ix, ancestor: Ix) -> bool {
        // The graph is acyclic (that is what this check keeps), so the walk ends.
        while let Some(up) = self.rec(ix).referrer {
            if up == ancestor {
                return true;
            }
            ix = up;
        }
        false
    }
}

fn delta(d: std::time::Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

#[async_trait]
impl ReferralStore for MemoryStore {
    async fn register(
        &self,
        phone: &PhoneNumber,
        user: NewUser,
        invite_codes: &[InviteCode],
    ) -> Result<RegisterOutcome, StoreError> {
        let mut g = self.users_write();
        if let Some(&ix) = g.by_phone.get(phone) {
            return Ok(if g.rec(ix).block.is_some() {
                RegisterOutcome::Blocked(g.user(ix))
            } else {
                RegisterOutcome::Existing(g.user(ix))
            });
        }
        let Some(&code) = invite_codes.iter().find(|c| !g.by_code.contains_key(c)) else {
            return Ok(RegisterOutcome::CodesExhausted);
        };
        if g.by_id.contains_key(&user.id) {
            return Err(StoreError::internal(format!(
                "user id {} is taken",
                user.id
            )));
        }
        let ix = Ix::try_from(g.users.len())
            .map_err(|_| StoreError::internal("the memory store holds 2^32 users"))?;
        g.users.push(UserRec {
            id: user.id,
            phone: *phone,
            code,
            created_at: user.created_at,
            referrer: None,
            activated_at: None,
            referrals: Vec::new(),
            block: None,
        });
        g.by_phone_text.insert(phone.to_e164(), ix);
        g.count_day(user.created_at, DayField::Users);
        g.by_id.insert(user.id, ix);
        g.by_phone.insert(*phone, ix);
        g.by_code.insert(code, ix);
        g.events.push(EventRec {
            at: user.created_at,
            kind: EventRecKind::Registered(ix),
        });
        Ok(RegisterOutcome::Created(g.user(ix)))
    }

    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let g = self.users_read();
        Ok(g.by_id.get(&id).map(|&ix| g.user(ix)))
    }

    async fn profile(&self, id: UserId, referrals: usize) -> Result<Option<Profile>, StoreError> {
        let g = self.users_read();
        let Some(&ix) = g.by_id.get(&id) else {
            return Ok(None);
        };
        Ok(Some(g.profile(ix, referrals)))
    }

    async fn activate_invite(
        &self,
        user: UserId,
        code: &InviteCode,
        policy: &InvitePolicy,
        now: DateTime<Utc>,
    ) -> Result<ActivationOutcome, StoreError> {
        let mut g = self.users_write();
        let Some(&ix) = g.by_id.get(&user) else {
            return Ok(ActivationOutcome::UserNotFound);
        };
        if g.rec(ix).block.is_some() {
            return Ok(ActivationOutcome::Blocked);
        }
        if let Some(referrer) = g.rec(ix).referrer {
            let r = g.rec(referrer);
            return Ok(if r.code == *code {
                ActivationOutcome::AlreadyActive { referrer: r.id }
            } else {
                ActivationOutcome::AlreadyActivated { code: r.code }
            });
        }
        let window = delta(policy.failure_window);
        let max = policy.max_failures_per_window as usize;
        if let Some(failures) = g.invite_failures.get_mut(&ix) {
            while failures.front().is_some_and(|at| *at <= now - window) {
                failures.pop_front();
            }
            if failures.len() >= max {
                let retry_at = failures[failures.len() - max] + window;
                return Ok(ActivationOutcome::RateLimited { retry_at });
            }
        }
        let Some(&owner) = g.by_code.get(code) else {
            let failures = g.invite_failures.entry(ix).or_default();
            let i = failures.partition_point(|at| *at <= now);
            failures.insert(i, now);
            return Ok(ActivationOutcome::UnknownCode);
        };
        if owner == ix {
            return Ok(ActivationOutcome::SelfReferral);
        }
        if g.referred_by(owner, ix) {
            return Ok(ActivationOutcome::Cycle);
        }
        if let Some(welcome) = &policy.welcome {
            // Checked before anything is written.
            g.check_new_reward(welcome.id, welcome.amount.amount())?;
        }
        let key = (now, user);
        let owner_rec = g.rec(owner);
        let list = &owner_rec.referrals;
        // Activations nearly always come in time order: append without a search.
        let pos = match list.last() {
            Some(last) if referral_key(last) > key => {
                list.partition_point(|e| referral_key(e) <= key)
            }
            _ => list.len(),
        };
        let referrer = owner_rec.id;
        let old_latest = list.last().map(|r| r.activated_at);
        let entry = Referral {
            user,
            phone: g.rec(ix).phone,
            activated_at: now,
            converted: false,
        };
        g.users[owner as usize].referrals.insert(pos, entry);
        g.rank(owner, old_latest);
        g.activations.insert((now, user, ix));
        g.count_day(now, DayField::Activations);
        g.users[ix as usize].referrer = Some(owner);
        g.users[ix as usize].activated_at = Some(now);
        g.invite_failures.remove(&ix);
        g.events.push(EventRec {
            at: now,
            kind: EventRecKind::Activated {
                user: ix,
                referrer: owner,
            },
        });
        if let Some(welcome) = &policy.welcome {
            g.welcome(ix, owner, welcome, now);
        }
        Ok(ActivationOutcome::Activated { referrer })
    }

    async fn referrals(
        &self,
        user: UserId,
        after: Option<ReferralCursor>,
        limit: usize,
    ) -> Result<Option<ReferralPage>, StoreError> {
        let g = self.users_read();
        let Some(&ix) = g.by_id.get(&user) else {
            return Ok(None);
        };
        let list = &g.rec(ix).referrals;
        let start = after.map_or(0, |c| {
            let key = (c.activated_at(), c.user());
            list.partition_point(|e| referral_key(e) <= key)
        });
        let end = start.saturating_add(limit).min(list.len());
        let items = list[start..end].to_vec();
        let next = if end < list.len() {
            items.last().map(ReferralCursor::after)
        } else {
            None
        };
        Ok(Some(ReferralPage { items, next }))
    }

    async fn events_after(
        &self,
        after: Option<EventId>,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let g = self.users_read();
        let start = after.map_or(0, |EventId(id)| usize::try_from(id).unwrap_or(usize::MAX));
        let end = start.saturating_add(limit).min(g.events.len());
        Ok((start.min(end)..end).map(|i| g.event(i)).collect())
    }

    async fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
