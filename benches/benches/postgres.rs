//! `PgStore` against the same statements sent straight through sqlx, in the
//! same run, at 1, 16 and 64 concurrent clients: profile, activate invite,
//! verify code, record conversion.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo bench -p referral-benches --bench postgres
//! ```
//! Without `DATABASE_URL` it prints that it skips. It creates a database
//! `referral_bench_*` on that server, fills it with `pgbench/setup.sql`'s
//! helpers and drops it at the end.
//!
//! Each group `pg/<operation>/<clients>` has `pgstore` (the store, as the
//! service calls it) and `raw` (the statements `PgStore` sends, through a bare
//! sqlx pool of the same size without the acquire ping, results not
//! decoded). The profile groups also have `pgstore-ping-before-acquire`, the
//! store on a pool configured as it was before the fix (sqlx's
//! `test_before_acquire`: one more round trip per call). A criterion "time" is wall time per operation with `clients`
//! operations in flight, so throughput is its inverse; the ratio of the
//! medians is the store's cost over the floor (target: ≥ 80 % of raw's
//! throughput).
//!
//! `REFERRAL_BENCH_RAW_FIRST=1` runs `raw` first in each group: running both
//! orders is how the cached sequential-scan plans fixed by referral-sqlx's
//! migration 4 showed up (PERFORMANCE.md).
#![allow(clippy::print_stdout, missing_docs)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use criterion::measurement::WallTime;
use criterion::{Bencher, BenchmarkGroup, Criterion};
use referral_benches::pg;
use referral_core::otp::{OtpCode, OtpGuess, OtpKey, OtpLength, OtpPolicy};
use referral_core::store::{
    ActivationOutcome, OtpStore, RecordOutcome, ReferralStore, RewardStore, VerifyOutcome,
};
use referral_core::{
    BasisPoints, ConversionId, ConversionKind, ConversionUser, Currency, InvitePolicy, Money,
    NewConversion, RewardId, RewardPolicy, UserId,
};
use referral_sqlx::{PgStore, PgStoreOptions};
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio::runtime::Runtime;

/// Users registered before measuring.
const POPULATION: u64 = 100_000;
/// Users 1..=OWNERS own the codes activated; each already has 5 referrals.
const OWNERS: u64 = 1_000;
const CLIENTS: [usize; 3] = [1, 16, 64];

/// The statement of `PgStore::profile` (referral-sqlx/src/users.rs; one
/// call of `referral_profile` since migration 20261130100002).
const PROFILE: &str = "SELECT * FROM referral_profile($1, $2)";

/// The statement of `PgStore::activate_invite`.
const ACTIVATE: &str =
    "SELECT outcome, referrer, code, at FROM referral_activate($1, $2, $3, $4, $5)";

/// The statement of `PgStore::verify_otp` (referral-sqlx/src/otp.rs).
const VERIFY: &str =
    "SELECT outcome, at, attempts_left FROM referral_otp_verify($1, $2, $3, $4, $5, $6, $7)";

/// The statement of `PgStore::record_conversion` (referral-sqlx/src/rewards.rs).
const RECORD: &str = "SELECT * FROM referral_record_conversion(
                 $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";

/// Whether `raw` runs before `pgstore` in each group (`REFERRAL_BENCH_RAW_FIRST=1`),
/// to see whether the order moves the ratio (the database grows as groups run).
fn raw_first() -> bool {
    std::env::var_os("REFERRAL_BENCH_RAW_FIRST").is_some_and(|v| v == "1")
}

/// Benches `pgstore` and `raw` in the order [`raw_first`] picks.
fn pair(
    g: &mut BenchmarkGroup<'_, WallTime>,
    pgstore: impl FnMut(&mut Bencher<'_, WallTime>),
    raw: impl FnMut(&mut Bencher<'_, WallTime>),
) {
    if raw_first() {
        g.bench_function("raw", raw);
        g.bench_function("pgstore", pgstore);
    } else {
        g.bench_function("pgstore", pgstore);
        g.bench_function("raw", raw);
    }
}

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time")
}

struct World {
    store: PgStore,
    /// A store on a pool configured as `PgStore` was before the fix: sqlx's
    /// `test_before_acquire`, a ping round trip on every checkout.
    store_pinging: PgStore,
    raw: PgPool,
    admin: PgPool,
    key: OtpKey,
    code: OtpCode,
    /// The next bench user number not yet inserted.
    next_user: AtomicU64,
    /// The next conversion number not yet used.
    next_conversion: AtomicU64,
}

impl World {
    /// Inserts `count` fresh users (untimed) and returns the first number.
    async fn fresh_users(&self, count: u64) -> u64 {
        let from = self.next_user.fetch_add(count, Ordering::SeqCst);
        pg::insert_users(&self.admin, from, from + count - 1, t0())
            .await
            .expect("insert users");
        from
    }
}

/// Runs `op(i)` for `i` in `0..iters`, `clients` at a time; the wall time.
async fn run<F, Fut>(iters: u64, clients: usize, op: F) -> Duration
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (op, next) = (Arc::clone(&op), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= iters {
                        break;
                    }
                    op(i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a bench task panicked");
    }
    start.elapsed()
}

/// Times `op(world, n)` for `iters` fresh bench users `n`, `clients` at a
/// time; the users (and, with `codes`, their live login codes) are inserted
/// first, untimed.
fn time_fresh<F, Fut>(
    b: &mut Bencher<'_, WallTime>,
    rt: &Runtime,
    w: &Arc<World>,
    clients: usize,
    codes: bool,
    op: F,
) where
    F: Fn(Arc<World>, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    b.iter_custom(|iters| {
        let (w, op) = (Arc::clone(w), op.clone());
        rt.block_on(async move {
            let first = w.fresh_users(iters).await;
            if codes {
                pg::insert_codes(&w.admin, &w.key, first, iters, t0())
                    .await
                    .expect("codes");
            }
            run(iters, clients, move |i| op(Arc::clone(&w), first + i)).await
        })
    });
}

fn bench_profile(c: &mut Criterion, rt: &Runtime, w: &Arc<World>) {
    for clients in CLIENTS {
        let mut g = c.benchmark_group(format!("pg/profile/{clients}"));
        let pgstore = |b: &mut Bencher<'_, WallTime>| {
            b.iter_custom(|iters| {
                let w = Arc::clone(w);
                rt.block_on(run(iters, clients, move |i| {
                    let w = Arc::clone(&w);
                    async move {
                        let p = w.store.profile(pg::user_id(1 + i % OWNERS), 100).await;
                        assert!(p.expect("profile").is_some());
                    }
                }))
            });
        };
        g.bench_function("pgstore-ping-before-acquire", |b| {
            b.iter_custom(|iters| {
                let w = Arc::clone(w);
                rt.block_on(run(iters, clients, move |i| {
                    let w = Arc::clone(&w);
                    async move {
                        let p = w.store_pinging.profile(pg::user_id(1 + i % OWNERS), 100);
                        assert!(p.await.expect("profile").is_some());
                    }
                }))
            });
        });
        let raw = |b: &mut Bencher<'_, WallTime>| {
            b.iter_custom(|iters| {
                let w = Arc::clone(w);
                rt.block_on(run(iters, clients, move |i| {
                    let w = Arc::clone(&w);
                    async move {
                        let row = sqlx::query(PROFILE)
                            .bind(pg::user_id(1 + i % OWNERS).as_uuid())
                            .bind(100_i64)
                            .fetch_optional(&w.raw)
                            .await;
                        assert!(row.expect("profile").is_some());
                    }
                }))
            });
        };
        pair(&mut g, pgstore, raw);
        g.finish();
    }
}

fn bench_activate(c: &mut Criterion, rt: &Runtime, w: &Arc<World>) {
    let policy = InvitePolicy::default();
    let window = i64::try_from(policy.failure_window.as_micros()).unwrap_or(i64::MAX);
    let max = i32::try_from(policy.max_failures_per_window).unwrap_or(i32::MAX);
    for clients in CLIENTS {
        let mut g = c.benchmark_group(format!("pg/activate/{clients}"));
        let pgstore = |b: &mut Bencher<'_, WallTime>| {
            let policy = policy.clone();
            time_fresh(b, rt, w, clients, false, move |w, n| {
                let policy = policy.clone();
                async move {
                    let code = pg::invite_code(1 + n % OWNERS);
                    let out = w
                        .store
                        .activate_invite(pg::user_id(n), &code, &policy, t0());
                    let out = out.await.expect("activate");
                    assert!(
                        matches!(out, ActivationOutcome::Activated { .. }),
                        "{out:?}"
                    );
                }
            });
        };
        let raw = |b: &mut Bencher<'_, WallTime>| {
            time_fresh(b, rt, w, clients, false, move |w, n| async move {
                let code = pg::invite_code(1 + n % OWNERS);
                let row = sqlx::query(ACTIVATE)
                    .bind(pg::user_id(n).as_uuid())
                    .bind(code.as_str())
                    .bind(t0())
                    .bind(window)
                    .bind(max)
                    .fetch_one(&w.raw)
                    .await
                    .expect("activate");
                assert_eq!(row.get::<&str, _>(0), "activated");
            });
        };
        pair(&mut g, pgstore, raw);
        g.finish();
    }
}

fn bench_verify(c: &mut Criterion, rt: &Runtime, w: &Arc<World>) {
    let policy = OtpPolicy::default();
    let window = i64::try_from(policy.failure_window.as_micros()).unwrap_or(i64::MAX);
    let max_failures = i32::try_from(policy.max_failures_per_window).unwrap_or(i32::MAX);
    let max_attempts = i32::try_from(policy.max_attempts).unwrap_or(i32::MAX);
    let step_up_length = i32::from(policy.step_up_length.get());
    for clients in CLIENTS {
        let mut g = c.benchmark_group(format!("pg/verify/{clients}"));
        let pgstore = |b: &mut Bencher<'_, WallTime>| {
            let policy = policy.clone();
            time_fresh(b, rt, w, clients, true, move |w, n| {
                let policy = policy.clone();
                async move {
                    let phone = pg::phone(n);
                    let guess = OtpGuess::new(&w.key, &phone, &w.code);
                    let out = w.store.verify_otp(&phone, &guess, &policy, t0());
                    assert_eq!(out.await.expect("verify"), VerifyOutcome::Verified);
                }
            });
        };
        let raw = |b: &mut Bencher<'_, WallTime>| {
            time_fresh(b, rt, w, clients, true, move |w, n| async move {
                let phone = pg::phone(n);
                let guess = OtpGuess::new(&w.key, &phone, &w.code);
                let row = sqlx::query(VERIFY)
                    .bind(phone.to_e164())
                    .bind(&guess.hash().as_bytes()[..])
                    .bind(t0())
                    .bind(max_attempts)
                    .bind(window)
                    .bind(max_failures)
                    .bind(step_up_length)
                    .fetch_one(&w.raw)
                    .await
                    .expect("verify");
                assert_eq!(row.get::<&str, _>(0), "verified");
            });
        };
        pair(&mut g, pgstore, raw);
        g.finish();
    }
}

/// The policy of the conversion bench: the worked example's amounts with a
/// cap that is checked (summed under the referrer's lock) but never reached,
/// so every call makes both rewards.
fn record_policy() -> RewardPolicy {
    let mut policy = RewardPolicy::default();
    policy.referrer_fixed = 1000;
    policy.referrer_bp = BasisPoints::new(500).expect("500 bp");
    policy.max_per_referrer = Some(1_000_000_000_000);
    policy
}

/// The referee of conversion `n`: one of the 5 × OWNERS users who activated
/// an owner's code, in turn (so 64 clients rarely share a referrer).
fn referee(n: u64) -> UserId {
    pg::user_id(OWNERS + 1 + n % (5 * OWNERS))
}

fn bench_record(c: &mut Criterion, rt: &Runtime, w: &Arc<World>) {
    let policy = Arc::new(record_policy());
    let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    let (window, cap_window) = (micros(policy.window), micros(policy.cap_window));
    for clients in CLIENTS {
        let mut g = c.benchmark_group(format!("pg/record_conversion/{clients}"));
        let pgstore = |b: &mut Bencher<'_, WallTime>| {
            b.iter_custom(|iters| {
                let (w, policy) = (Arc::clone(w), Arc::clone(&policy));
                let first = w.next_conversion.fetch_add(iters, Ordering::SeqCst);
                rt.block_on(run(iters, clients, move |i| {
                    let (w, policy) = (Arc::clone(&w), Arc::clone(&policy));
                    async move {
                        let n = first + i;
                        let conversion = NewConversion {
                            id: ConversionId::parse(&format!("c{n}")).expect("an id"),
                            user: ConversionUser::Id(referee(n)),
                            amount: Money::new(150_000, Currency::RUB),
                            kind: ConversionKind::default(),
                            occurred_at: None,
                        };
                        let ids = [reward_id(2 * n), reward_id(2 * n + 1)];
                        let out =
                            w.store
                                .record_conversion(&conversion, ids, &policy, conversion_time());
                        match out.await.expect("record") {
                            RecordOutcome::Recorded { rewards, .. } => assert_eq!(rewards.len(), 2),
                            other => panic!("{other:?}"),
                        }
                    }
                }))
            });
        };
        let raw = |b: &mut Bencher<'_, WallTime>| {
            b.iter_custom(|iters| {
                let (w, policy) = (Arc::clone(w), Arc::clone(&policy));
                let first = w.next_conversion.fetch_add(iters, Ordering::SeqCst);
                rt.block_on(run(iters, clients, move |i| {
                    let (w, policy) = (Arc::clone(&w), Arc::clone(&policy));
                    async move {
                        let n = first + i;
                        let ids = [reward_id(2 * n).as_uuid(), reward_id(2 * n + 1).as_uuid()];
                        let rows = sqlx::query(RECORD)
                            .bind(format!("c{n}"))
                            .bind(Some(referee(n).as_uuid()))
                            .bind(None::<String>)
                            .bind(150_000_i64)
                            .bind("RUB")
                            .bind("purchase")
                            .bind(None::<DateTime<Utc>>)
                            .bind(conversion_time())
                            .bind(&ids[..])
                            .bind(policy.referrer_fixed)
                            .bind(i32::from(policy.referrer_bp.get()))
                            .bind(window)
                            .bind(policy.min_amount)
                            .bind(policy.currency.as_str())
                            .bind(policy.max_per_referrer)
                            .bind(cap_window)
                            .fetch_all(&w.raw)
                            .await
                            .expect("record");
                        assert_eq!(rows.len(), 2);
                        assert_eq!(rows[0].get::<&str, _>(0), "recorded");
                    }
                }))
            });
        };
        pair(&mut g, pgstore, raw);
        g.finish();
    }
}

/// When the bench's conversions happen: a day after the bench activations
/// (stamped `t0` plus a microsecond each), inside the policy's window.
fn conversion_time() -> DateTime<Utc> {
    t0() + chrono::TimeDelta::days(1)
}

/// Reward id number `n` (the bench draws no randomness).
fn reward_id(n: u64) -> RewardId {
    RewardId::from_uuid(uuid::Uuid::from_u64_pair(0x5245_5744, n))
}

fn main() {
    let Some(url) = pg::database_url("postgres bench") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (options, world) = rt.block_on(async {
        let options = pg::fresh_database(&url).await.expect("a bench database");
        let size = PgStoreOptions::DEFAULT_MAX_CONNECTIONS;
        let store = PgStore::connect_with(PgStoreOptions::from_connect_options(options.clone()))
            .await
            .expect("a store");
        let raw = PgPoolOptions::new()
            .max_connections(size)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .expect("a raw pool");
        let store_pinging = PgStore::from_pool(
            PgPoolOptions::new()
                .max_connections(size)
                .test_before_acquire(true)
                .connect_with(options.clone())
                .await
                .expect("a pinging pool"),
        );
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .expect("an admin pool");
        pg::insert_users(&admin, 1, POPULATION, t0())
            .await
            .expect("users");
        // Owners 1..=OWNERS get 5 referrals each, from the users after them.
        for owner in 1..=OWNERS {
            let from = OWNERS + 1 + (owner - 1) * 5;
            pg::insert_activations(&admin, owner, from, from + 4, t0())
                .await
                .expect("activations");
        }
        sqlx::query("ANALYZE")
            .execute(&admin)
            .await
            .expect("analyze");
        let world = World {
            store,
            store_pinging,
            raw,
            admin,
            key: OtpKey::from_bytes(&[7; 32]).expect("a key"),
            code: OtpCode::parse(pg::BENCH_OTP, OtpLength::default()).expect("a code"),
            next_user: AtomicU64::new(POPULATION + 1),
            next_conversion: AtomicU64::new(0),
        };
        (options, Arc::new(world))
    });
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench_profile(&mut c, &rt, &world);
    bench_activate(&mut c, &rt, &world);
    bench_verify(&mut c, &rt, &world);
    bench_record(&mut c, &rt, &world);
    c.final_summary();
    rt.block_on(async {
        world.store.pool().close().await;
        world.store_pinging.pool().close().await;
        world.raw.close().await;
        world.admin.close().await;
        pg::drop_database(&url, &options)
            .await
            .expect("drop the bench database");
    });
}
