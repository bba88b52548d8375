//! `MemoryStore` against the bare baseline, the same work in the same run.
//!
//! ```sh
//! cargo bench -p referral-benches --bench memory
//! ```
//! Each group has a `memory` and a `baseline` function; the ratio of their
//! medians is the store's overhead (target: ≤ 2× for every operation).

use std::cell::Cell;
use std::hint::black_box;

use chrono::{DateTime, TimeDelta, Utc};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use referral_benches::baseline::Baseline;
use referral_benches::{phone, ready};
use referral_core::otp::{ChallengeId, OtpGuess};
use referral_core::store::{NewChallenge, NewUser, OtpStore, ReferralStore};
use referral_core::{
    InviteCode, InvitePolicy, OtpCode, OtpKey, OtpPolicy, ReferralCursor, SeededRandom, UserId,
};
use referral_memory::MemoryStore;

/// Users registered before measuring, so maps have a realistic size.
const POPULATION: u64 = 100_000;
/// Owners whose codes the activation bench spreads over.
const OWNERS: u64 = 1_000;

struct World {
    store: MemoryStore,
    base: Baseline,
    rng: SeededRandom,
    key: OtpKey,
    t0: DateTime<Utc>,
    next_phone: Cell<u64>,
    ids: Vec<UserId>,
    codes: Vec<InviteCode>,
}

impl World {
    fn new() -> Self {
        let mut w = Self {
            store: MemoryStore::new(),
            base: Baseline::default(),
            rng: SeededRandom::new(7),
            key: OtpKey::from_bytes(&[1; 32]).unwrap(),
            t0: DateTime::from_timestamp(1_767_225_600, 0).unwrap(),
            next_phone: Cell::new(0),
            ids: Vec::new(),
            codes: Vec::new(),
        };
        for _ in 0..POPULATION {
            let (id, code) = w.register_both();
            w.ids.push(id);
            w.codes.push(code);
        }
        w
    }

    fn fresh_phone(&self) -> referral_core::PhoneNumber {
        let n = self.next_phone.get();
        self.next_phone.set(n + 1);
        phone(n)
    }

    /// Registers one fresh user in both stores (same id and code).
    fn register_both(&self) -> (UserId, InviteCode) {
        let p = self.fresh_phone();
        let id = UserId::generate(&self.rng);
        let code = InviteCode::generate(&self.rng);
        let new = NewUser {
            id,
            created_at: self.t0,
        };
        let _ = ready(self.store.register(&p, new, &[code])).unwrap();
        self.base.register(p, id, &[code], self.t0);
        (id, code)
    }

    fn challenge(&self, phone: &referral_core::PhoneNumber, code: &OtpCode) -> NewChallenge {
        let id = ChallengeId::generate(&self.rng);
        NewChallenge {
            id,
            hash: self.key.hash(phone, code),
            step_up_hash: self.key.hash(phone, code),
            issued_at: self.t0,
            expires_at: self.t0 + TimeDelta::seconds(300),
        }
    }
}

fn benches(c: &mut Criterion) {
    let w = World::new();
    let policy = OtpPolicy::default();
    let invite = InvitePolicy::default();
    let code = OtpCode::parse("1234", Default::default()).unwrap();

    let mut g = c.benchmark_group("request_code");
    g.bench_function("memory", |b| {
        b.iter_batched(
            || {
                let p = w.fresh_phone();
                (p, w.challenge(&p, &code))
            },
            |(p, ch)| black_box(ready(w.store.issue_otp(&p, &ch, None, &policy, w.t0)).unwrap()),
            BatchSize::SmallInput,
        );
    });
    g.bench_function("baseline", |b| {
        b.iter_batched(
            || {
                let p = w.fresh_phone();
                (p, w.challenge(&p, &code))
            },
            |(p, ch)| black_box(w.base.issue(p, &ch, w.t0)),
            BatchSize::SmallInput,
        );
    });
    g.finish();

    let mut g = c.benchmark_group("verify_code");
    g.bench_function("memory", |b| {
        b.iter_batched(
            || {
                let p = w.fresh_phone();
                let _ = ready(
                    w.store
                        .issue_otp(&p, &w.challenge(&p, &code), None, &policy, w.t0),
                )
                .unwrap();
                p
            },
            |p| {
                let guess = OtpGuess::new(&w.key, &p, &code);
                black_box(ready(w.store.verify_otp(&p, &guess, &policy, w.t0)).unwrap())
            },
            BatchSize::SmallInput,
        );
    });
    g.bench_function("baseline", |b| {
        b.iter_batched(
            || {
                let p = w.fresh_phone();
                w.base.issue(p, &w.challenge(&p, &code), w.t0);
                p
            },
            |p| {
                let guess = OtpGuess::new(&w.key, &p, &code);
                black_box(w.base.verify(p, &guess, w.t0))
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();

    let mut g = c.benchmark_group("first_login");
    let setup = || {
        let codes: Vec<InviteCode> = (0..8).map(|_| InviteCode::generate(&w.rng)).collect();
        (w.fresh_phone(), UserId::generate(&w.rng), codes)
    };
    g.bench_function("memory", |b| {
        b.iter_batched(
            setup,
            |(p, id, codes)| {
                let new = NewUser {
                    id,
                    created_at: w.t0,
                };
                black_box(ready(w.store.register(&p, new, &codes)).unwrap())
            },
            BatchSize::SmallInput,
        );
    });
    g.bench_function("baseline", |b| {
        b.iter_batched(
            setup,
            |(p, id, codes)| black_box(w.base.register(p, id, &codes, w.t0)),
            BatchSize::SmallInput,
        );
    });
    g.finish();

    let mut g = c.benchmark_group("activate_invite");
    let owner = Cell::new(0usize);
    // Each activation a microsecond after the last, as on a real clock: a
    // store keeps each referral list in (time, id) order, and equal times
    // would make it sort where the baseline only appends.
    let tick = Cell::new(0i64);
    let setup = || {
        let (id, _) = w.register_both();
        let o = owner.get();
        owner.set((o + 1) % OWNERS as usize);
        tick.set(tick.get() + 1);
        (id, w.codes[o], w.t0 + TimeDelta::microseconds(tick.get()))
    };
    g.bench_function("memory", |b| {
        b.iter_batched(
            setup,
            |(id, code, at)| {
                black_box(ready(w.store.activate_invite(id, &code, &invite, at)).unwrap())
            },
            BatchSize::SmallInput,
        );
    });
    g.bench_function("baseline", |b| {
        b.iter_batched(
            setup,
            |(id, code, at)| black_box(w.base.activate(id, &code, at)),
            BatchSize::SmallInput,
        );
    });
    g.finish();

    // A user with exactly 100 referrals (the profile lists the first 100) and
    // one with 10 000 for the page.
    let listed = w.ids[OWNERS as usize];
    let paged = w.ids[OWNERS as usize + 1];
    for (owner, n) in [(listed, 100), (paged, 10_000)] {
        let code = w.codes[w.ids.iter().position(|i| *i == owner).unwrap()];
        for i in 0..n {
            let (id, _) = w.register_both();
            let at = w.t0 + TimeDelta::milliseconds(i);
            let _ = ready(w.store.activate_invite(id, &code, &invite, at)).unwrap();
            w.base.activate(id, &code, at);
        }
    }

    let mut g = c.benchmark_group("profile");
    g.bench_function("memory", |b| {
        b.iter(|| black_box(ready(w.store.profile(listed, 100)).unwrap()))
    });
    g.bench_function("baseline", |b| {
        b.iter(|| black_box(w.base.profile(listed, 100)))
    });
    g.finish();

    let middle = ready(w.store.referrals(paged, None, 5_000))
        .unwrap()
        .unwrap()
        .items;
    let last = middle.last().unwrap();
    let cursor = ReferralCursor::after(last);
    let mut g = c.benchmark_group("referrals_page_50");
    g.bench_function("memory", |b| {
        b.iter(|| black_box(ready(w.store.referrals(paged, Some(cursor), 50)).unwrap()));
    });
    g.bench_function("baseline", |b| {
        b.iter(|| {
            black_box(
                w.base
                    .referrals(paged, Some((last.activated_at, last.user)), 50),
            )
        });
    });
    g.finish();
}

criterion_group!(memory, benches);
criterion_main!(memory);
