//! PostgreSQL helpers of the benches: a fresh bench database on the server of
//! `DATABASE_URL`, bulk set-up of bench users (see `pgbench/setup.sql`), and
//! what `pg-writes` and `pg-ladder` share: the throughput of an operation
//! from many tasks ([`rate`]) and the one-`INSERT` floor it is measured
//! against ([`floor_rate`]).

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use referral_core::otp::{ChallengeId, OtpCode, OtpKey, OtpLength};
use referral_core::store::{ActivationOutcome, NewUser, ReferralStore, RegisterOutcome};
use referral_core::{InviteCode, InvitePolicy, PhoneNumber, UserId};
use referral_sqlx::PgStore;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// The helper functions of `pgbench/setup.sql`.
pub const SETUP_SQL: &str = include_str!("../pgbench/setup.sql");

/// The rungs of the ceiling ladder (`pgbench/ladder.sql`): functions that
/// each write one piece of an activation or a registration (bin
/// `pg-ladder`, `pgbench/ladder.sh`).
pub const LADDER_SQL: &str = include_str!("../pgbench/ladder.sql");

/// The floor's table: one `INSERT` per transaction into it is what
/// `pg-writes` and `pg-ladder` compare every write with ([`floor_rate`]).
pub const FLOOR_TABLE_SQL: &str =
    "CREATE TABLE bench_floor (id bigserial PRIMARY KEY, v text NOT NULL)";

/// The code every bench login code is (so a verify with it succeeds).
pub const BENCH_OTP: &str = "1234";

/// `DATABASE_URL`, or `None` after printing that `what` skips.
#[must_use]
pub fn database_url(what: &str) -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("{what}: DATABASE_URL is not set: skipping the PostgreSQL measurements");
            None
        }
    }
}

/// `DATABASE_URL` for a test that needs PostgreSQL: `None` after printing
/// that `what` skips, except when `CI` is set, where a test that needs
/// PostgreSQL fails rather than skips.
///
/// # Panics
/// When `CI` is set and `DATABASE_URL` is not.
#[must_use]
pub fn test_database_url(what: &str) -> Option<String> {
    let in_ci = std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"));
    let has_url = std::env::var("DATABASE_URL").is_ok_and(|url| !url.is_empty());
    assert!(
        has_url || !in_ci,
        "{what}: DATABASE_URL is not set and CI is: this test needs PostgreSQL"
    );
    database_url(what)
}

/// Creates an empty database `referral_bench_<pid>_<n>` on the server of
/// `url`, runs referral-sqlx's migrations and `setup.sql` in it, and returns
/// options pointing at it (drop it with [`drop_database`]).
///
/// # Errors
/// When the server cannot be reached or refuses.
pub async fn fresh_database(url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let server = PgConnectOptions::from_str(url)?;
    let name = format!(
        "referral_bench_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = PgConnection::connect_with(&server).await?;
    sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{name}""#))
        .execute(&mut admin)
        .await?;
    sqlx::query(&format!(r#"CREATE DATABASE "{name}""#))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let options = server.database(&name);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await?;
    referral_sqlx::MIGRATOR.run(&pool).await?;
    sqlx::raw_sql(SETUP_SQL).execute(&pool).await?;
    pool.close().await;
    Ok(options)
}

/// Drops a database made by [`fresh_database`].
///
/// # Errors
/// When the server cannot be reached or refuses.
pub async fn drop_database(url: &str, options: &PgConnectOptions) -> Result<(), sqlx::Error> {
    let server = PgConnectOptions::from_str(url)?;
    let Some(name) = options.get_database() else {
        return Ok(());
    };
    let mut admin = PgConnection::connect_with(&server).await?;
    sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#))
        .execute(&mut admin)
        .await?;
    admin.close().await
}

/// The id of bench user `n` (as `referral_bench_id(n)`).
#[must_use]
pub fn user_id(n: u64) -> UserId {
    UserId::from_uuid(Uuid::from_u128(u128::from(n)))
}

/// The challenge id of bench phone `n`'s login code.
#[must_use]
pub fn challenge_id(n: u64) -> ChallengeId {
    ChallengeId::from_uuid(Uuid::from_u128(u128::from(n)))
}

/// The invite code of bench user `n` (as `referral_bench_code(n)`).
///
/// # Panics
/// Never for `n` below 31⁶.
#[must_use]
pub fn invite_code(n: u64) -> InviteCode {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
    let mut out = [0u8; 6];
    let mut rest = n;
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[usize::try_from(rest % 31).unwrap_or(0)];
        rest /= 31;
    }
    InviteCode::parse(std::str::from_utf8(&out).unwrap_or_default()).expect("a valid code")
}

/// Bulk inserts write at most this many users (and events) per transaction:
/// one transaction's event ids leave room for 65 536.
const CHUNK: u64 = 50_000;

/// Inserts bench users `from..=to` as `ReferralStore::register` would, in
/// transactions of at most 50 000.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn insert_users(
    pool: &PgPool,
    from: u64,
    to: u64,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let mut first = from;
    while first <= to {
        let last = to.min(first + CHUNK - 1);
        sqlx::query("SELECT referral_bench_users($1, $2, $3)")
            .bind(big(first))
            .bind(big(last))
            .bind(at)
            .execute(pool)
            .await?;
        first = last + 1;
    }
    Ok(())
}

/// Records users `from..=to` activating `referrer`'s code, one microsecond
/// apart from `at`, as `ReferralStore::activate_invite` would, in
/// transactions of at most 50 000.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn insert_activations(
    pool: &PgPool,
    referrer: u64,
    from: u64,
    to: u64,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let mut first = from;
    while first <= to {
        let last = to.min(first + CHUNK - 1);
        let offset = i64::try_from(first - from).unwrap_or(i64::MAX);
        sqlx::query("SELECT referral_bench_activations($1, $2, $3, $4)")
            .bind(big(referrer))
            .bind(big(first))
            .bind(big(last))
            .bind(at + chrono::TimeDelta::microseconds(offset))
            .execute(pool)
            .await?;
        first = last + 1;
    }
    Ok(())
}

/// Gives the phones of bench users `from..from + count` a live login code
/// [`BENCH_OTP`], as `OtpStore::issue_otp` would, hashed with `key`.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn insert_codes(
    pool: &PgPool,
    key: &OtpKey,
    from: u64,
    count: u64,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let code = OtpCode::parse(BENCH_OTP, OtpLength::default()).expect("a valid code");
    let hashes: Vec<Vec<u8>> = (from..from + count)
        .map(|n| key.hash(&crate::phone(n), &code).as_bytes().to_vec())
        .collect();
    sqlx::query("SELECT referral_bench_codes($1, $2, $3)")
        .bind(big(from))
        .bind(&hashes)
        .bind(at)
        .execute(pool)
        .await
        .map(drop)
}

/// The phone of bench user `n`.
#[must_use]
pub fn phone(n: u64) -> PhoneNumber {
    crate::phone(n)
}

fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Calls each task of [`rate`] makes before the clock starts: more than the
/// five custom plans PostgreSQL makes of each statement of a plpgsql
/// function in a session before it keeps a generic one, so every connection
/// of the pool has compiled the functions and settled its plans, as a
/// server's pooled connections have (they live 30 min by default).
pub const WARM_UP: u64 = 10;

/// Calls `op(i)` with increasing `i` from `clients` tasks for `secs`, after
/// [`WARM_UP`] calls per task that are not timed; operations per second.
///
/// # Panics
/// When a call panics.
pub async fn rate<F, Fut>(clients: u32, secs: Duration, op: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let warm = Arc::new(tokio::sync::Barrier::new(clients as usize + 1));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (op, next, stop, warm) = (
                Arc::clone(&op),
                Arc::clone(&next),
                Arc::clone(&stop),
                Arc::clone(&warm),
            );
            tokio::spawn(async move {
                for _ in 0..WARM_UP {
                    op(next.fetch_add(1, Ordering::Relaxed)).await;
                }
                warm.wait().await;
                while !stop.load(Ordering::Relaxed) {
                    op(next.fetch_add(1, Ordering::Relaxed)).await;
                }
            })
        })
        .collect();
    warm.wait().await;
    let first = next.load(Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(secs).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("a bench task panicked");
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Every operation started after the warm-up was counted first and has
    // finished.
    (next.load(Ordering::Relaxed) - first) as f64 / elapsed
}

/// A bare sqlx pool of `clients` connections, all open before it returns,
/// none pinged on checkout (as `PgStore`'s pool).
///
/// # Panics
/// When the server cannot be reached.
pub async fn bench_pool(options: &PgConnectOptions, clients: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(clients)
        .min_connections(clients)
        .test_before_acquire(false)
        .connect_with(options.clone())
        .await
        .expect("a pool")
}

/// The floor: one `INSERT` per transaction into the table of
/// [`FLOOR_TABLE_SQL`] from `clients` tasks on a [`bench_pool`] of as many
/// connections, for `secs` ([`rate`]); operations per second.
///
/// # Panics
/// When the server cannot be reached or an insert fails.
pub async fn floor_rate(options: &PgConnectOptions, clients: u32, secs: Duration) -> f64 {
    let pool = bench_pool(options, clients).await;
    let p = pool.clone();
    let r = rate(clients, secs, move |i| {
        let pool = p.clone();
        async move {
            sqlx::query("INSERT INTO bench_floor (v) VALUES ($1)")
                .bind(format!("row {i}"))
                .execute(&pool)
                .await
                .expect("insert");
        }
    })
    .await;
    pool.close().await;
    r
}

/// `PgStore::activate_invite` from `clients` tasks for `secs` ([`rate`]):
/// the `i`-th call activates fresh bench user `first + i` (of `fresh`
/// inserted nobody's invitee yet) with the code of bench user
/// `1 + i % owners`, at `at`; operations per second. Closes the store's
/// pool after.
///
/// # Panics
/// When a call fails or does not activate, or more than `fresh` are made.
pub async fn activation_rate(
    store: PgStore,
    clients: u32,
    secs: Duration,
    first: u64,
    fresh: u64,
    owners: u64,
    at: DateTime<Utc>,
) -> f64 {
    let store = Arc::new(store);
    let s = Arc::clone(&store);
    let r = rate(clients, secs, move |i| {
        let store = Arc::clone(&s);
        async move {
            assert!(i < fresh, "more activations than fresh users");
            let out = store
                .activate_invite(
                    user_id(first + i),
                    &invite_code(1 + i % owners),
                    &InvitePolicy::default(),
                    at,
                )
                .await
                .expect("activate");
            assert!(
                matches!(out, ActivationOutcome::Activated { .. }),
                "{out:?}"
            );
        }
    })
    .await;
    store.pool().close().await;
    r
}

/// `PgStore::register` from `clients` tasks for `secs` ([`rate`]): the
/// `i`-th call registers bench phone `base + i` (not registered yet) as
/// bench user `base + i`, at `at`; operations per second. Closes the
/// store's pool after.
///
/// # Panics
/// When a call fails or does not create its user.
pub async fn registration_rate(
    store: PgStore,
    clients: u32,
    secs: Duration,
    base: u64,
    at: DateTime<Utc>,
) -> f64 {
    let store = Arc::new(store);
    let s = Arc::clone(&store);
    let r = rate(clients, secs, move |i| {
        let store = Arc::clone(&s);
        async move {
            let n = base + i;
            let user = NewUser {
                id: user_id(n),
                created_at: at,
            };
            let out = store
                .register(&phone(n), user, &[invite_code(n)])
                .await
                .expect("register");
            assert!(matches!(out, RegisterOutcome::Created(_)), "{out:?}");
        }
    })
    .await;
    store.pool().close().await;
    r
}

/// The statement that calls activation rung `rung` of [`LADDER_SQL`], with
/// `$1` the invitee, `$2` the code's owner, `$3` the code and `$4` the time
/// (`lad_f` finds the owner by the code, as `referral_activate` does); it
/// answers the outcome, `activated` when the rung wrote its rows.
#[must_use]
pub fn ladder_activation_call(rung: &str) -> String {
    if rung == "lad_f" {
        "SELECT outcome FROM lad_f($1, $3, $4, 3600000000, 10)".to_owned()
    } else {
        format!("SELECT {rung}($1, $2, $3, $4)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_valid() {
        assert_eq!(invite_code(0).as_str(), "222222");
        assert_eq!(invite_code(1).as_str(), "222223");
        assert_eq!(invite_code(31).as_str(), "222232");
        assert_ne!(invite_code(1_000_000), invite_code(1_000_001));
    }
}
