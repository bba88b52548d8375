//! Rewards on `MemoryStore`: `record_conversion` against the bare baseline
//! doing the same work in the same run, and what a referrer with 1 000 000
//! rewards costs to show next to one with 10.
//!
//! ```sh
//! cargo bench -p referral-benches --bench rewards
//! ```
//! - `record_conversion/{memory,baseline}`: the ratio of the medians is the
//!   store's overhead (target ≤ 2×). 100 000 users, 99 000 of them referred
//!   by 1 000 referrers; each conversion is a fresh order of the next referee
//!   (the fixed part on a referee's first, the percentage always), a cap set
//!   (so the referrer's rewards in the cap window are summed: about 10 each).
//! - `rewards_scale/{profile,page_10,deep_page_10}_{10,1m}`: profile (the
//!   referral profile and the balances, as `ReferralService::profile` reads
//!   them) and a page of 10 rewards, for a referrer with 10 rewards and one
//!   with 1 000 000 (target: within 1.5×).

use std::cell::Cell;
use std::hint::black_box;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use referral_benches::reward_baseline::RewardBaseline;
use referral_benches::{phone, ready};
use referral_core::store::{NewUser, ReferralStore, RewardStore};
use referral_core::{
    BasisPoints, ConversionId, ConversionKind, ConversionUser, Currency, InviteCode, InvitePolicy,
    Money, NewConversion, RewardCursor, RewardId, RewardPolicy, SeededRandom, UserId,
};
use referral_memory::MemoryStore;

const POPULATION: usize = 100_000;
const REFERRERS: usize = 1_000;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).unwrap()
}

fn policy(cap: Option<i64>) -> RewardPolicy {
    let mut p = RewardPolicy::default();
    p.referrer_fixed = 1_000;
    p.referrer_bp = BasisPoints::new(500).unwrap();
    p.max_per_referrer = cap;
    p.cap_window = Duration::from_secs(10);
    p
}

/// Registers `n` users in `store` and returns their ids and codes.
fn users(
    store: &MemoryStore,
    rng: &SeededRandom,
    first: u64,
    n: usize,
) -> Vec<(UserId, InviteCode)> {
    (0..n as u64)
        .map(|i| {
            let id = UserId::generate(rng);
            let code = InviteCode::generate(rng);
            let new = NewUser {
                id,
                created_at: t0(),
            };
            let _ = ready(store.register(&phone(first + i), new, &[code])).unwrap();
            (id, code)
        })
        .collect()
}

fn record_conversion(c: &mut Criterion) {
    let store = MemoryStore::new();
    let base = RewardBaseline::default();
    let rng = SeededRandom::new(11);
    let people = users(&store, &rng, 0, POPULATION);
    for (i, (id, _)) in people.iter().enumerate() {
        base.add_user(*id, phone(i as u64));
    }
    let invite = InvitePolicy::default();
    for (i, (id, _)) in people.iter().enumerate().skip(REFERRERS) {
        let (referrer, code) = people[i % REFERRERS];
        let _ = ready(store.activate_invite(*id, &code, &invite, t0())).unwrap();
        base.refer(*id, referrer, t0());
    }
    let referees: Vec<UserId> = people[REFERRERS..].iter().map(|(id, _)| *id).collect();
    let policy = policy(Some(1_000_000_000_000));
    let kind = ConversionKind::default();
    let next = Cell::new(0u64);
    // One millisecond between conversions, as on a real clock: with 1 000
    // referrers and a 10-second cap window, ~10 rewards each in the window.
    let setup = || {
        let n = next.get();
        next.set(n + 1);
        let user = referees[n as usize % referees.len()];
        let id: ConversionId = format!("order-{n}").parse().unwrap();
        let ids = [RewardId::generate(&rng), RewardId::generate(&rng)];
        let at = t0() + TimeDelta::milliseconds(n as i64 + 1);
        (id, user, ids, at)
    };
    let mut g = c.benchmark_group("record_conversion");
    g.bench_function("memory", |b| {
        b.iter_batched(
            || {
                let (id, user, ids, at) = setup();
                let conversion = NewConversion {
                    id,
                    user: ConversionUser::Id(user),
                    amount: Money::new(150_000, Currency::RUB),
                    kind: kind.clone(),
                    occurred_at: None,
                };
                (conversion, ids, at)
            },
            |(conversion, ids, at)| {
                black_box(ready(store.record_conversion(&conversion, ids, &policy, at)).unwrap())
            },
            BatchSize::SmallInput,
        );
    });
    g.bench_function("baseline", |b| {
        b.iter_batched(
            || {
                let (id, user, ids, at) = setup();
                (id, user, kind.clone(), ids, at)
            },
            |(id, user, kind, ids, at)| {
                black_box(base.record(
                    (&id, user, Money::new(150_000, Currency::RUB), &kind),
                    ids,
                    &policy,
                    at,
                ))
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

fn rewards_scale(c: &mut Criterion) {
    let store = MemoryStore::new();
    let rng = SeededRandom::new(12);
    let people = users(&store, &rng, 0, 4);
    let invite = InvitePolicy::default();
    // small ← a, big ← b: each referee converts; percentage only after the first.
    let (small, big) = (people[0], people[1]);
    let _ = ready(store.activate_invite(people[2].0, &small.1, &invite, t0())).unwrap();
    let _ = ready(store.activate_invite(people[3].0, &big.1, &invite, t0())).unwrap();
    let policy = {
        let mut p = policy(None);
        p.referrer_fixed = 0;
        p
    };
    let mut n = 0u64;
    let mut convert = |referee: UserId, count: u64| {
        for _ in 0..count {
            n += 1;
            let conversion = NewConversion {
                id: format!("o{n}").parse().unwrap(),
                user: ConversionUser::Id(referee),
                amount: Money::new(10_000, Currency::RUB),
                kind: ConversionKind::default(),
                occurred_at: None,
            };
            let ids = [RewardId::generate(&rng), RewardId::generate(&rng)];
            let at = t0() + TimeDelta::microseconds(n as i64);
            let _ = ready(store.record_conversion(&conversion, ids, &policy, at)).unwrap();
        }
    };
    convert(people[2].0, 10);
    convert(people[3].0, 1_000_000);
    let middle = ready(store.rewards(big.0, None, 500_000))
        .unwrap()
        .unwrap()
        .next
        .map(|c: RewardCursor| c)
        .unwrap();

    let mut g = c.benchmark_group("rewards_scale");
    for (name, user) in [("10", small.0), ("1m", big.0)] {
        g.bench_function(format!("profile_{name}"), |b| {
            b.iter(|| {
                black_box((
                    ready(store.profile(user, 100)).unwrap(),
                    ready(store.balances(user)).unwrap(),
                ))
            })
        });
        g.bench_function(format!("page_10_{name}"), |b| {
            b.iter(|| black_box(ready(store.rewards(user, None, 10)).unwrap()))
        });
    }
    g.bench_function("deep_page_10_1m", |b| {
        b.iter(|| black_box(ready(store.rewards(big.0, Some(middle), 10)).unwrap()))
    });
    g.finish();
}

criterion_group!(rewards, record_conversion, rewards_scale);
criterion_main!(rewards);
