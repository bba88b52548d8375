//! The floor: the same work as `MemoryStore`, written inline over `HashMap`s
//! behind the same lock discipline (one mutex around per-phone state, one
//! reader-writer lock around users), without ports, async, outcome enums or
//! an event outbox rebuilt on read. Each method does what the matching store
//! operation must do for the benchmarked case, and no less.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use chrono::{DateTime, TimeDelta, Utc};
use referral_core::otp::{ChallengeId, OtpGuess, OtpHash};
use referral_core::store::NewChallenge;
use referral_core::{InviteCode, PhoneNumber, UserId};

/// Per-phone login-code state.
#[derive(Debug, Default)]
struct Otp {
    live: Option<(ChallengeId, OtpHash, DateTime<Utc>, u32)>,
    sends: Vec<DateTime<Utc>>,
    failures: Vec<DateTime<Utc>>,
}

/// A user row.
#[derive(Debug)]
struct Row {
    id: UserId,
    phone: PhoneNumber,
    code: InviteCode,
    created_at: DateTime<Utc>,
    referrer: Option<u32>,
    referrals: Vec<(DateTime<Utc>, u32)>,
}

/// Users and their indexes.
#[derive(Debug, Default)]
struct Users {
    rows: Vec<Row>,
    by_id: HashMap<UserId, u32>,
    by_phone: HashMap<PhoneNumber, u32>,
    by_code: HashMap<InviteCode, u32>,
    events: Vec<(DateTime<Utc>, u32, u32)>,
}

/// What a profile holds, as plain fields.
#[derive(Debug)]
pub struct BareProfile {
    /// The user's id.
    pub id: UserId,
    /// The user's phone.
    pub phone: PhoneNumber,
    /// The user's code.
    pub code: InviteCode,
    /// When the user was created.
    pub created_at: DateTime<Utc>,
    /// The code the user activated.
    pub activated: Option<InviteCode>,
    /// How many referrals.
    pub count: usize,
    /// The first referrals' phones.
    pub referrals: Vec<PhoneNumber>,
}

/// The baseline store.
#[derive(Debug, Default)]
pub struct Baseline {
    otp: Mutex<HashMap<PhoneNumber, Otp>>,
    users: RwLock<Users>,
}

const COOLDOWN: TimeDelta = TimeDelta::seconds(60);
const HOUR: TimeDelta = TimeDelta::hours(1);
const DAY: TimeDelta = TimeDelta::hours(24);

impl Baseline {
    /// Stores a challenge if cooldown, hourly cap and lock allow.
    ///
    /// # Panics
    /// When a lock is poisoned.
    pub fn issue(&self, phone: PhoneNumber, c: &NewChallenge, now: DateTime<Utc>) -> bool {
        let mut map = self.otp.lock().unwrap();
        let s = map.entry(phone).or_default();
        if s.failures.iter().filter(|t| **t > now - DAY).count() >= 10
            || s.sends.last().is_some_and(|t| *t > now - COOLDOWN)
            || s.sends.iter().filter(|t| **t > now - HOUR).count() >= 5
        {
            return false;
        }
        s.sends.push(now);
        s.live = Some((c.id, c.hash, c.expires_at, 0));
        true
    }

    /// Checks a guess against the live challenge, consuming or counting.
    ///
    /// # Panics
    /// When a lock is poisoned.
    pub fn verify(&self, phone: PhoneNumber, guess: &OtpGuess, now: DateTime<Utc>) -> bool {
        let mut map = self.otp.lock().unwrap();
        let Some(s) = map.get_mut(&phone) else {
            return false;
        };
        if s.failures.iter().filter(|t| **t > now - DAY).count() >= 10 {
            return false;
        }
        let Some((_, hash, expires_at, wrong)) = s.live.as_mut() else {
            return false;
        };
        if *wrong >= 5 || now >= *expires_at {
            return false;
        }
        if guess.matches(hash) {
            s.live = None;
            return true;
        }
        *wrong += 1;
        s.failures.push(now);
        false
    }

    /// Creates the phone's user with the first free code, or finds it.
    ///
    /// # Panics
    /// When a lock is poisoned.
    pub fn register(
        &self,
        phone: PhoneNumber,
        id: UserId,
        codes: &[InviteCode],
        now: DateTime<Utc>,
    ) -> Option<UserId> {
        let mut u = self.users.write().unwrap();
        if let Some(&ix) = u.by_phone.get(&phone) {
            return Some(u.rows[ix as usize].id);
        }
        let code = *codes.iter().find(|c| !u.by_code.contains_key(c))?;
        let ix = u.rows.len() as u32;
        u.rows.push(Row {
            id,
            phone,
            code,
            created_at: now,
            referrer: None,
            referrals: Vec::new(),
        });
        u.by_id.insert(id, ix);
        u.by_phone.insert(phone, ix);
        u.by_code.insert(code, ix);
        u.events.push((now, ix, ix));
        Some(id)
    }

    /// Activates `code` for `user` if the one-invite rule allows.
    ///
    /// # Panics
    /// When a lock is poisoned.
    pub fn activate(&self, user: UserId, code: &InviteCode, now: DateTime<Utc>) -> bool {
        let mut u = self.users.write().unwrap();
        let Some(&ix) = u.by_id.get(&user) else {
            return false;
        };
        if u.rows[ix as usize].referrer.is_some() {
            return false;
        }
        let Some(&owner) = u.by_code.get(code) else {
            return false;
        };
        if owner == ix {
            return false;
        }
        let mut up = owner;
        while let Some(next) = u.rows[up as usize].referrer {
            if next == ix {
                return false;
            }
            up = next;
        }
        u.rows[owner as usize].referrals.push((now, ix));
        u.rows[ix as usize].referrer = Some(owner);
        u.events.push((now, ix, owner));
        true
    }

    /// The profile's fields: code, activated code, count, first `n` phones.
    ///
    /// # Panics
    /// When a lock is poisoned.
    pub fn profile(&self, user: UserId, n: usize) -> Option<BareProfile> {
        let u = self.users.read().unwrap();
        let row = &u.rows[*u.by_id.get(&user)? as usize];
        Some(BareProfile {
            id: row.id,
            phone: row.phone,
            code: row.code,
            created_at: row.created_at,
            activated: row.referrer.map(|r| u.rows[r as usize].code),
            count: row.referrals.len(),
            referrals: row
                .referrals
                .iter()
                .take(n)
                .map(|&(_, r)| u.rows[r as usize].phone)
                .collect(),
        })
    }

    /// `limit` referrals after the `(at, id)` key, oldest first.
    ///
    /// # Panics
    /// When a lock is poisoned.
    pub fn referrals(
        &self,
        user: UserId,
        after: Option<(DateTime<Utc>, UserId)>,
        limit: usize,
    ) -> Option<Vec<(UserId, PhoneNumber, DateTime<Utc>)>> {
        let u = self.users.read().unwrap();
        let list = &u.rows[*u.by_id.get(&user)? as usize].referrals;
        let start = after.map_or(0, |k| {
            list.partition_point(|&(at, r)| (at, u.rows[r as usize].id) <= k)
        });
        Some(
            list[start..(start + limit).min(list.len())]
                .iter()
                .map(|&(at, r)| (u.rows[r as usize].id, u.rows[r as usize].phone, at))
                .collect(),
        )
    }
}
