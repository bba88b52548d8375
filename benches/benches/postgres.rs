//! `PgStore` against the same statements sent straight through sqlx, in the
//! same run, at 1, 16 and 64 concurrent clients: profile, activate invite,
//! verify code.
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
use referral_core::InvitePolicy;
use referral_core::otp::{OtpCode, OtpGuess, OtpKey, OtpLength, OtpPolicy};
use referral_core::store::{ActivationOutcome, OtpStore, ReferralStore, VerifyOutcome};
use referral_sqlx::{PgStore, PgStoreOptions};
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio::runtime::Runtime;

/// Users registered before measuring.
const POPULATION: u64 = 100_000;
/// Users 1..=OWNERS own the codes activated; each already has 5 referrals.
const OWNERS: u64 = 1_000;
const CLIENTS: [usize; 3] = [1, 16, 64];

/// The statement of `PgStore::profile` (referral-sqlx/src/users.rs).
const PROFILE: &str = "
SELECT u.id, u.phone, u.invite_code, u.created_at,
       (SELECT coalesce(sum(c.n), 0)::bigint
          FROM referral_count_shards c WHERE c.user_id = u.id) AS referral_count,
       r.invite_code AS activated_invite_code,
       ARRAY(SELECT i.phone
               FROM referral_activations a
               JOIN referral_users i ON i.id = a.invitee_id
              WHERE a.referrer_id = u.id
              ORDER BY a.activated_at, a.invitee_id
              LIMIT $2) AS referrals
  FROM referral_users u
  LEFT JOIN referral_activations me ON me.invitee_id = u.id
  LEFT JOIN referral_users r ON r.id = me.referrer_id
 WHERE u.id = $1";

/// The statement of `PgStore::activate_invite`.
const ACTIVATE: &str =
    "SELECT outcome, referrer, code, at FROM referral_activate($1, $2, $3, $4, $5)";

/// The statement of `PgStore::verify_otp` (referral-sqlx/src/otp.rs).
const VERIFY: &str =
    "SELECT outcome, at, attempts_left FROM referral_otp_verify($1, $2, $3, $4, $5, $6)";

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
