//! Parallel writes on PostgreSQL: `PgStore::register` and
//! `PgStore::activate_invite` at 1, 16 and 64 clients against a floor of one
//! `INSERT` per transaction, in the same run, on the schema before
//! referral-sqlx's migration 20261130110001 (the work of each call as after
//! 20261130090001) and after it (the same rules and locks in fewer
//! statements per call); and 1 000 concurrent activations of one code.
//! `PG_WRITES_BEFORE` picks another "before" (the last migration it
//! includes, say `20261130080001` for the schema before 20261130090001, or
//! `20261123000004` for the schema with the cluster-wide writer lock). Then `PgStore::issue_otp`
//! with and without a global send budget (never reached) at 1, 16 and 64
//! clients, on the schema before migration 20261130060001 (one advisory lock
//! held to commit by every issue while a budget is set) and after it (the
//! budget in 16 shards).
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo run --release -p referral-benches --bin pg-writes [-- SECONDS]
//! ```
//! Run it against a server with `fsync` and `synchronous_commit` on (the
//! point is the commit's WAL flush). It creates databases `referral_bench_*`
//! and drops them. Each figure is operations per second over SECONDS
//! (default 3) with `clients` tasks each calling in a loop, on a pool of
//! `clients` connections, after 10 untimed calls per task (every connection
//! has compiled the functions and settled its plans, as a server's pooled
//! connections have); the floor is a bare sqlx pool of the same size
//! inserting one row per transaction into a table of its own, warmed the
//! same way. The 1 000 activations of one code start on connections that
//! are open but have run nothing yet.
#![allow(clippy::print_stdout)]

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use referral_benches::pg;
use referral_core::InvitePolicy;
use referral_core::otp::{ChallengeId, OtpHash, OtpPolicy};
use referral_core::store::{
    ActivationOutcome, IssueOutcome, NewChallenge, OtpStore, ReferralStore,
};
use referral_sqlx::{MIGRATOR, PgStore, PgStoreOptions};
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};

/// The "before" of the register and activate figures: every migration
/// below 20261130110001 (fewer statements per call), unless
/// `PG_WRITES_BEFORE` names another last migration.
const BEFORE: i64 = 20_261_130_110_000;
/// The last migration before the sharded send budget.
const BEFORE_SHARDED_BUDGET: i64 = 20_261_130_050_001;
/// Owners whose codes the activations spread over.
const OWNERS: u64 = 1_000;
const CLIENTS: [u32; 3] = [1, 16, 64];

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time")
}

/// referral-sqlx's migrations up to a version, as a migration source.
#[derive(Debug)]
struct UpTo(i64);

impl<'s> MigrationSource<'s> for UpTo {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        let up_to: Vec<Migration> = MIGRATOR
            .iter()
            .filter(|m| m.version <= self.0)
            .cloned()
            .collect();
        Box::pin(async move { Ok(up_to) })
    }
}

/// A database on the server of `url` migrated up to `up_to` (all when
/// `None`), with the bench helpers and a floor table.
async fn database(url: &str, name: &str, up_to: Option<i64>) -> PgConnectOptions {
    let server = PgConnectOptions::from_str(url).expect("a PostgreSQL URL");
    let mut admin = PgConnection::connect_with(&server).await.expect("connect");
    for sql in [
        format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#),
        format!(r#"CREATE DATABASE "{name}""#),
    ] {
        sqlx::query(&sql).execute(&mut admin).await.expect("create");
    }
    admin.close().await.ok();
    let options = server.database(name);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await
        .expect("connect");
    let migrator = Migrator::new(UpTo(up_to.unwrap_or(i64::MAX)))
        .await
        .expect("migrations");
    migrator.run(&pool).await.expect("migrate");
    sqlx::raw_sql(pg::SETUP_SQL)
        .execute(&pool)
        .await
        .expect("setup");
    sqlx::raw_sql(pg::FLOOR_TABLE_SQL)
        .execute(&pool)
        .await
        .expect("floor table");
    pool.close().await;
    options
}

async fn drop_database(url: &str, name: &str) {
    let server = PgConnectOptions::from_str(url).expect("a PostgreSQL URL");
    let mut admin = PgConnection::connect_with(&server).await.expect("connect");
    sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#))
        .execute(&mut admin)
        .await
        .expect("drop");
    admin.close().await.ok();
}

/// Users `from..=to` (ids, phones and codes of `pgbench/setup.sql`), plain
/// rows without events, so the same statement serves both schemas.
async fn bulk_users(pool: &PgPool, from: u64, to: u64) {
    sqlx::query(
        "INSERT INTO referral_users (id, phone, invite_code, created_at)
         SELECT referral_bench_id(n), referral_bench_phone(n), referral_bench_code(n), $3
           FROM generate_series($1::bigint, $2::bigint) AS n",
    )
    .bind(i64::try_from(from).expect("small"))
    .bind(i64::try_from(to).expect("small"))
    .bind(t0())
    .execute(pool)
    .await
    .expect("users");
    sqlx::query("ANALYZE referral_users")
        .execute(pool)
        .await
        .expect("analyze");
}

struct Db {
    label: &'static str,
    options: PgConnectOptions,
    admin: PgPool,
    /// The next bench user number not yet used.
    next_user: AtomicU64,
}

async fn store(options: &PgConnectOptions, clients: u32) -> PgStore {
    PgStore::connect_with(
        PgStoreOptions::from_connect_options(options.clone())
            .max_connections(clients)
            // The viral run queues 1 000 calls on the pool.
            .acquire_timeout(Duration::from_secs(120)),
    )
    .await
    .expect("a store")
}

async fn register(db: &Db, clients: u32, secs: Duration) -> f64 {
    let store = store(&db.options, clients).await;
    let base = db.next_user.fetch_add(1_000_000, Ordering::SeqCst);
    pg::registration_rate(store, clients, secs, base, t0()).await
}

async fn activate(db: &Db, clients: u32, secs: Duration, fresh: u64) -> f64 {
    let first = db.next_user.fetch_add(fresh, Ordering::SeqCst);
    bulk_users(&db.admin, first, first + fresh - 1).await;
    let store = store(&db.options, clients).await;
    pg::activation_rate(store, clients, secs, first, fresh, OWNERS, t0()).await
}

/// Code issues for fresh phones from `clients` tasks, with a global budget
/// of `budget` sends per window (never reached) or none: operations per
/// second.
async fn issue(db: &Db, clients: u32, secs: Duration, budget: Option<u32>) -> f64 {
    let store = Arc::new(store(&db.options, clients).await);
    let base = db.next_user.fetch_add(1_000_000, Ordering::SeqCst);
    let mut policy = OtpPolicy::default();
    policy.max_global_sends_per_window = budget;
    // Every send of the run stays in the window: the budget counts them all.
    let policy = Arc::new(policy);
    let r = {
        let store = Arc::clone(&store);
        pg::rate(clients, secs, move |i| {
            let (store, policy) = (Arc::clone(&store), Arc::clone(&policy));
            async move {
                let n = base + i;
                let challenge = NewChallenge {
                    id: ChallengeId::from_uuid(uuid::Uuid::from_u128(u128::from(n))),
                    hash: OtpHash::from_bytes([7; 32]),
                    step_up_hash: OtpHash::from_bytes([8; 32]),
                    issued_at: t0(),
                    expires_at: t0() + chrono::TimeDelta::minutes(5),
                };
                let out = store
                    .issue_otp(&pg::phone(n), &challenge, None, &policy, t0())
                    .await
                    .expect("issue");
                assert!(matches!(out, IssueOutcome::Issued { .. }), "{out:?}");
            }
        })
        .await
    };
    store.pool().close().await;
    r
}

/// `n` activations of owner 1's code, all started at once, on a pool of
/// `connections`: the wall time.
async fn viral(db: &Db, n: u64, connections: u32) -> Duration {
    let first = db.next_user.fetch_add(n, Ordering::SeqCst);
    bulk_users(&db.admin, first, first + n - 1).await;
    let store = Arc::new(store(&db.options, connections).await);
    // Open the connections first, so the timing is the activations'.
    let warm: Vec<_> = (0..connections)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { ReferralStore::health(&*store).await.expect("health") })
        })
        .collect();
    for w in warm {
        w.await.expect("warm");
    }
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let out = store
                    .activate_invite(
                        pg::user_id(first + i),
                        &pg::invite_code(1),
                        &InvitePolicy::default(),
                        t0(),
                    )
                    .await
                    .expect("activate");
                assert!(
                    matches!(out, ActivationOutcome::Activated { .. }),
                    "{out:?}"
                );
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("an activation panicked");
    }
    let took = started.elapsed();
    store.pool().close().await;
    took
}

#[tokio::main]
async fn main() {
    let Some(url) = pg::database_url("pg-writes") else {
        return;
    };
    let secs = Duration::from_secs(
        std::env::args()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(3),
    );
    let pid = std::process::id();
    let before = std::env::var("PG_WRITES_BEFORE")
        .ok()
        .map(|v| {
            v.parse::<i64>()
                .expect("PG_WRITES_BEFORE: a migration version")
        })
        .unwrap_or(BEFORE);
    let mut dbs = Vec::new();
    for (label, up_to) in [("before", Some(before)), ("after", None)] {
        let name = format!("referral_bench_w{label}_{pid}");
        let options = database(&url, &name, up_to).await;
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .expect("admin");
        // The owners whose codes the activations use.
        bulk_users(&admin, 1, OWNERS).await;
        dbs.push((
            name,
            Db {
                label,
                options,
                admin,
                next_user: AtomicU64::new(OWNERS + 1),
            },
        ));
    }
    let (fsync, sync_commit): (String, String) =
        sqlx::query_as("SELECT current_setting('fsync'), current_setting('synchronous_commit')")
            .fetch_one(&dbs[0].1.admin)
            .await
            .expect("settings");
    println!(
        "fsync={fsync} synchronous_commit={sync_commit}, {} s per figure, ops/s (ratio to the floor of the same database and clients)",
        secs.as_secs()
    );
    println!("before: migrations up to {before}; after: every migration");
    println!(
        "{:<7} {:>7} {:>9} {:>16} {:>16}",
        "schema", "clients", "floor", "register", "activate"
    );
    for clients in CLIENTS {
        for (_, db) in &dbs {
            let f = pg::floor_rate(&db.options, clients, secs).await;
            let r = register(db, clients, secs).await;
            let a = activate(db, clients, secs, 100_000).await;
            println!(
                "{:<7} {:>7} {:>9.0} {:>9.0} ({:.2}) {:>9.0} ({:.2})",
                db.label,
                clients,
                f,
                r,
                r / f,
                a,
                a / f
            );
        }
    }
    for connections in [16, 64] {
        for (_, db) in &dbs {
            let took = viral(db, 1_000, connections).await;
            println!(
                "{:<7} 1000 concurrent activations of one code, pool of {connections}: {:.0} ms ({:.0}/s)",
                db.label,
                took.as_secs_f64() * 1e3,
                1_000.0 / took.as_secs_f64()
            );
        }
    }
    for (name, db) in dbs {
        db.admin.close().await;
        drop_database(&url, &name).await;
    }

    // The global send budget: one lock before migration 20261130060001,
    // 16 shards after.
    let mut dbs = Vec::new();
    for (label, up_to) in [("before", Some(BEFORE_SHARDED_BUDGET)), ("after", None)] {
        let name = format!("referral_bench_b{label}_{pid}");
        let options = database(&url, &name, up_to).await;
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .expect("admin");
        dbs.push((
            name,
            Db {
                label,
                options,
                admin,
                next_user: AtomicU64::new(1),
            },
        ));
    }
    println!(
        "issue_otp, fresh phones: ops/s (ratio to the floor), without a budget and with one never reached"
    );
    println!(
        "{:<7} {:>7} {:>9} {:>16} {:>16}",
        "schema", "clients", "floor", "no budget", "budget"
    );
    for clients in CLIENTS {
        for (_, db) in &dbs {
            let f = pg::floor_rate(&db.options, clients, secs).await;
            let plain = issue(db, clients, secs, None).await;
            let budget = issue(db, clients, secs, Some(1_000_000_000)).await;
            println!(
                "{:<7} {:>7} {:>9.0} {:>9.0} ({:.2}) {:>9.0} ({:.2})",
                db.label,
                clients,
                f,
                plain,
                plain / f,
                budget,
                budget / f
            );
        }
    }
    for (name, db) in dbs {
        db.admin.close().await;
        drop_database(&url, &name).await;
    }
}
