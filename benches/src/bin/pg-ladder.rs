//! A ceiling ladder for issue 13: what each piece of an activation and of a
//! registration costs in throughput against the one-`INSERT` floor, through
//! the same Rust client (a sqlx pool of `clients` connections) as
//! `pg-writes`, at 16 and 64 clients, in interleaved rounds. The rungs are
//! the functions of `pgbench/ladder.sql` (each one plpgsql call per
//! transaction, writing what the real function writes for that piece):
//!
//! - the cheapest conceivable writes of the same rows: `lad_a0` (the
//!   activation row without foreign keys), `lad_b0` (+ the event without
//!   its check or id query), `lad_c0` (+ the count shard, no lock), `lad_n0`
//!   (`lad_a0` + the count shard, no event), `reg_b0`
//!   (the user row with one phone index + such an event);
//! - activation: `lad_a` (the activation row), `lad_b` (+ the event),
//!   `lad_c` (+ the count shard), `lad_d` (+ the leaderboard statement),
//!   `lad_f` (`referral_activate` without the leaderboard statement), and
//!   `PgStore::activate_invite` itself;
//! - registration: `reg_a` (the user row), `reg_c` (the same row in a table
//!   whose phone is `COLLATE "C"` with one phone index), `reg_b` (+ the
//!   event), and `PgStore::register` itself.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo run --release -p referral-benches --bin pg-ladder [-- SECONDS ROUNDS [CLIENTS]]
//! ```
//! Run it against a server with `fsync` and `synchronous_commit` on. It
//! creates one database `referral_bench_*` and drops it. Each figure is
//! operations per second over SECONDS (default 3) after 10 untimed calls
//! per task; each line gives its ratio to the floor of the same round and
//! client count. `pgbench/ladder.sh` runs the same rungs from pgbench.
#![allow(clippy::print_stdout)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use referral_benches::pg;
use referral_sqlx::{PgStore, PgStoreOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

/// Owners whose codes the activations spread over (as `pg-writes`).
const OWNERS: u64 = 1_000;
/// Fresh users inserted before each activation figure.
const FRESH: u64 = 80_000;
/// The client counts, unless the third argument names one.
const CLIENTS: [u32; 2] = [16, 64];
fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time")
}

async fn store(options: &PgConnectOptions, clients: u32) -> PgStore {
    PgStore::connect_with(
        PgStoreOptions::from_connect_options(options.clone()).max_connections(clients),
    )
    .await
    .expect("a store")
}

/// The rungs, in the order they run in each round.
#[derive(Clone, Copy, Debug)]
enum Rung {
    Floor,
    Act(&'static str),
    ActStore,
    Reg(&'static str),
    RegStore,
}

const RUNGS: [Rung; 16] = [
    Rung::Floor,
    Rung::Act("lad_a0"),
    Rung::Act("lad_b0"),
    Rung::Act("lad_n0"),
    Rung::Act("lad_c0"),
    Rung::Act("lad_a"),
    Rung::Act("lad_b"),
    Rung::Act("lad_c"),
    Rung::Act("lad_d"),
    Rung::Act("lad_f"),
    Rung::ActStore,
    Rung::Reg("reg_a"),
    Rung::Reg("reg_c"),
    Rung::Reg("reg_b0"),
    Rung::Reg("reg_b"),
    Rung::RegStore,
];

impl Rung {
    fn label(self) -> &'static str {
        match self {
            Self::Floor => "floor (1 INSERT)",
            Self::Act(f) | Self::Reg(f) => f,
            Self::ActStore => "PgStore::activate_invite",
            Self::RegStore => "PgStore::register",
        }
    }
}

struct Bench {
    options: PgConnectOptions,
    admin: PgPool,
    /// The next bench user number not yet used.
    next_user: AtomicU64,
}

impl Bench {
    async fn run(&self, rung: Rung, clients: u32, secs: Duration) -> f64 {
        match rung {
            Rung::Floor => pg::floor_rate(&self.options, clients, secs).await,
            Rung::Act(function) => {
                let first = self.fresh_users().await;
                let pool = pg::bench_pool(&self.options, clients).await;
                let p = pool.clone();
                let sql: &'static str =
                    Box::leak(pg::ladder_activation_call(function).into_boxed_str());
                let r = pg::rate(clients, secs, move |i| {
                    let pool = p.clone();
                    async move {
                        assert!(i < FRESH, "more activations than fresh users");
                        let owner = 1 + i % OWNERS;
                        let outcome: String = sqlx::query_scalar(sql)
                            .bind(pg::user_id(first + i).as_uuid())
                            .bind(pg::user_id(owner).as_uuid())
                            .bind(pg::invite_code(owner).as_str())
                            .bind(t0())
                            .fetch_one(&pool)
                            .await
                            .expect("activate");
                        assert_eq!(outcome, "activated");
                    }
                })
                .await;
                pool.close().await;
                r
            }
            Rung::ActStore => {
                let first = self.fresh_users().await;
                let store = store(&self.options, clients).await;
                pg::activation_rate(store, clients, secs, first, FRESH, OWNERS, t0()).await
            }
            Rung::Reg(function) => {
                let base = self.next_user.fetch_add(1_000_000, Ordering::SeqCst);
                let pool = pg::bench_pool(&self.options, clients).await;
                let p = pool.clone();
                let sql: &'static str =
                    Box::leak(format!("SELECT {function}($1, $2, $3, $4)").into_boxed_str());
                let r = pg::rate(clients, secs, move |i| {
                    let pool = p.clone();
                    async move {
                        let n = base + i;
                        let outcome: String = sqlx::query_scalar(sql)
                            .bind(pg::phone(n).to_e164())
                            .bind(pg::user_id(n).as_uuid())
                            .bind(t0())
                            .bind(vec![pg::invite_code(n).as_str().to_owned()])
                            .fetch_one(&pool)
                            .await
                            .expect("register");
                        assert_eq!(outcome, "created");
                    }
                })
                .await;
                pool.close().await;
                r
            }
            Rung::RegStore => {
                let base = self.next_user.fetch_add(1_000_000, Ordering::SeqCst);
                let store = store(&self.options, clients).await;
                pg::registration_rate(store, clients, secs, base, t0()).await
            }
        }
    }

    /// Inserts [`FRESH`] users nobody referred yet; the first one's number.
    async fn fresh_users(&self) -> u64 {
        let first = self.next_user.fetch_add(FRESH, Ordering::SeqCst);
        pg::insert_users(&self.admin, first, first + FRESH - 1, t0())
            .await
            .expect("users");
        // The same rows in reg_c's table, so both user tables are the same size.
        sqlx::query("INSERT INTO ru_c SELECT * FROM referral_users WHERE id >= $1")
            .bind(pg::user_id(first).as_uuid())
            .execute(&self.admin)
            .await
            .expect("copy");
        sqlx::raw_sql("ANALYZE referral_users; ANALYZE ru_c")
            .execute(&self.admin)
            .await
            .expect("analyze");
        first
    }
}

#[tokio::main]
async fn main() {
    let Some(url) = pg::database_url("pg-ladder") else {
        return;
    };
    let mut args = std::env::args().skip(1);
    let secs = Duration::from_secs(args.next().and_then(|s| s.parse().ok()).unwrap_or(3));
    let rounds: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let clients: Vec<u32> = match args.next().and_then(|s| s.parse().ok()) {
        Some(c) => vec![c],
        None => CLIENTS.to_vec(),
    };
    let options = pg::fresh_database(&url).await.expect("a bench database");
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await
        .expect("admin");
    sqlx::raw_sql(pg::LADDER_SQL)
        .execute(&admin)
        .await
        .expect("the ladder's functions");
    sqlx::raw_sql(pg::FLOOR_TABLE_SQL)
        .execute(&admin)
        .await
        .expect("floor table");
    pg::insert_users(&admin, 1, OWNERS, t0())
        .await
        .expect("owners");
    let bench = Bench {
        options,
        admin,
        next_user: AtomicU64::new(OWNERS + 1),
    };
    let (fsync, sync_commit): (String, String) =
        sqlx::query_as("SELECT current_setting('fsync'), current_setting('synchronous_commit')")
            .fetch_one(&bench.admin)
            .await
            .expect("settings");
    println!(
        "fsync={fsync} synchronous_commit={sync_commit}, {} s per figure, {rounds} rounds, ops/s (ratio to the floor of the same round and clients)",
        secs.as_secs()
    );
    let mut all: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); RUNGS.len()]; clients.len()];
    for round in 1..=rounds {
        for (c, &clients) in clients.iter().enumerate() {
            let mut floor = f64::NAN;
            for (k, rung) in RUNGS.into_iter().enumerate() {
                let r = bench.run(rung, clients, secs).await;
                if matches!(rung, Rung::Floor) {
                    floor = r;
                }
                all[c][k].push(r / floor);
                println!(
                    "round {round} clients {clients:>2} {:<26} {r:>8.0} ({:.2})",
                    rung.label(),
                    r / floor
                );
            }
        }
    }
    println!("median ratio to the floor over {rounds} rounds:");
    for (c, &clients) in clients.iter().enumerate() {
        for (k, rung) in RUNGS.into_iter().enumerate() {
            let mut v = all[c][k].clone();
            v.sort_by(f64::total_cmp);
            println!(
                "clients {clients:>2} {:<26} {:.2}",
                rung.label(),
                v[v.len() / 2]
            );
        }
    }
    bench.admin.close().await;
    pg::drop_database(&url, &bench.options).await.expect("drop");
}
