//! Shared by the integration tests: a fresh, migrated database per test.
#![allow(dead_code, unreachable_pub)]

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta};
use referral_core::otp::{ChallengeId, OtpCode, OtpKey, OtpLength, OtpPolicy};
use referral_core::random::SeededRandom;
use referral_core::store::{IssueOutcome, NewChallenge, OtpStore};
use referral_core::{ClientAddress, PhoneNumber};
use referral_sqlx::{PgStore, PgStoreOptions};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

/// `DATABASE_URL`, or `None` (with a message) when the PostgreSQL tests
/// should be skipped. Under `CI` a missing URL is a failure, not a skip.
pub fn database_url() -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("DATABASE_URL must be set under CI (run scripts/test.sh)")
        }
        _ => {
            eprintln!(
                "DATABASE_URL is not set: skipping a PostgreSQL test (scripts/test.sh starts a throwaway server)"
            );
            None
        }
    }
}

/// Connect options for the server of `DATABASE_URL`.
pub fn server_options() -> Option<PgConnectOptions> {
    let url = database_url()?;
    Some(PgConnectOptions::from_str(&url).expect("DATABASE_URL is not a PostgreSQL URL"))
}

/// Seconds since the epoch (to name, and later drop, test databases).
fn epoch_secs() -> u64 {
    std::time::SystemTime::UNIX_EPOCH
        .elapsed()
        .unwrap_or_default()
        .as_secs()
}

/// A name no other test (of this or a concurrent run) uses:
/// `referral_t_<created, epoch seconds>_<pid>_<n>`.
fn unique_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("referral_t_{}_{}_{n}", epoch_secs(), std::process::id())
}

/// Test databases are not dropped when their test ends (the store outlives
/// the factory); each run drops those of runs that started over an hour ago,
/// so a developer's own server does not fill up.
async fn drop_stale_databases(admin: &mut PgConnection) {
    static ONCE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    ONCE.get_or_init(|| async {
        let names: Vec<String> = sqlx::query_scalar(
            r"SELECT datname::text FROM pg_database WHERE datname LIKE 'referral\_t\_%'",
        )
        .fetch_all(&mut *admin)
        .await
        .unwrap_or_default();
        let horizon = epoch_secs().saturating_sub(3600);
        for name in names {
            let created = name.split('_').nth(2).and_then(|s| s.parse::<u64>().ok());
            if created.is_some_and(|c| c < horizon) {
                let drop = format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#);
                let _ = sqlx::query(&drop).execute(&mut *admin).await;
            }
        }
    })
    .await;
}

/// Creates an empty database and returns options pointing at it.
pub async fn create_database() -> Option<PgConnectOptions> {
    let server = server_options()?;
    let name = unique_name();
    let mut admin = PgConnection::connect_with(&server)
        .await
        .expect("cannot connect to DATABASE_URL");
    drop_stale_databases(&mut admin).await;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("CREATE DATABASE");
    admin.close().await.ok();
    Some(server.database(&name))
}

/// Store options for tests: room for the kit's races.
pub fn test_options(connect: PgConnectOptions) -> PgStoreOptions {
    PgStoreOptions::from_connect_options(connect)
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(30))
        .statement_timeout(Some(Duration::from_secs(30)))
}

/// A migrated store on a fresh database, or `None` to skip.
pub async fn fresh_store() -> Option<PgStore> {
    let connect = create_database().await?;
    let store = PgStore::connect_with(test_options(connect))
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    Some(store)
}

/// `REFERRAL_TEST_PGBOUNCER_URL`, a PgBouncer in transaction mode in front of
/// the server of `DATABASE_URL` (scripts/test.sh starts one), or `None` (with
/// a message) to skip. Under `CI` a missing URL is a failure.
pub fn pgbouncer_options() -> Option<PgConnectOptions> {
    match std::env::var("REFERRAL_TEST_PGBOUNCER_URL") {
        Ok(url) if !url.is_empty() => Some(
            PgConnectOptions::from_str(&url)
                .expect("REFERRAL_TEST_PGBOUNCER_URL is not a PostgreSQL URL"),
        ),
        _ if std::env::var_os("CI").is_some() => {
            panic!("REFERRAL_TEST_PGBOUNCER_URL must be set under CI (run scripts/test.sh)")
        }
        _ => {
            eprintln!(
                "REFERRAL_TEST_PGBOUNCER_URL is not set: skipping a PgBouncer test (scripts/test.sh starts one)"
            );
            None
        }
    }
}

/// Store options for a fresh database reached through PgBouncer in
/// transaction mode, migrating over the direct connection; `None` to skip.
pub async fn pooled_options() -> Option<PgStoreOptions> {
    let bouncer = pgbouncer_options()?;
    let direct = create_database().await?;
    let name = direct.get_database().expect("a database name").to_owned();
    Some(
        test_options(bouncer.database(&name))
            .transaction_pooler(true)
            .migration_connect_options(direct),
    )
}

/// A migrated store on a fresh database, through PgBouncer; `None` to skip.
pub async fn fresh_pooled_store() -> Option<PgStore> {
    let store = PgStore::connect_with(pooled_options().await?)
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    Some(store)
}

/// Backends of `direct`'s database waiting for a lock.
async fn lock_waits(direct: &mut PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity s ON s.pid = l.pid
          WHERE NOT l.granted AND s.datname = current_database()",
    )
    .fetch_one(direct)
    .await
    .unwrap()
}

/// A call PostgreSQL aborts to break a deadlock is sent again by `store`, not
/// answered with an error. A transaction (on a direct connection to the
/// store's database, `direct`) holds a client's lock; the store's `issue_otp`
/// for that client takes the phone's lock and waits for the client's; then
/// the transaction asks for the phone's lock. The deadlock detector aborts
/// the store's call (it waited first, so its `deadlock_timeout` runs out
/// first; the transaction's session also raises its own where allowed). The
/// transaction gets the phone's lock while the call is still pending, so the
/// call's first transaction is gone; once the transaction commits, the call
/// answers `Issued`, charged once.
pub async fn deadlocked_call_is_retried(store: &PgStore, direct: &PgConnectOptions) {
    let at = DateTime::from_timestamp(1_800_000_000, 0).expect("a time");
    let p: PhoneNumber = "+79990000001".parse().unwrap();
    let client: ClientAddress = "203.0.113.9".parse().unwrap();
    let code = OtpCode::parse("1234", OtpLength::default()).unwrap();
    let key = OtpKey::from_bytes(&[5u8; 32]).unwrap();
    let challenge = NewChallenge {
        id: ChallengeId::generate(&SeededRandom::new(34)),
        hash: key.hash(&p, &code),
        step_up_hash: key.hash(&p, &code),
        issued_at: at,
        expires_at: at + TimeDelta::minutes(5),
    };
    let mut watch = PgConnection::connect_with(direct).await.unwrap();
    let mut other = PgConnection::connect_with(direct).await.unwrap();
    // Superusers only; the default (1 s for both) keeps the order anyway.
    let _ = sqlx::query("SET deadlock_timeout = '60s'")
        .execute(&mut other)
        .await;
    let mut tx = other.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('referral/client/' || $1, 0))")
        .bind(client.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let call = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .issue_otp(&p, &challenge, Some(&client), &OtpPolicy::default(), at)
                .await
        })
    };
    while lock_waits(&mut watch).await == 0 {
        assert!(!call.is_finished(), "{:?}", call.await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sqlx::query("SELECT referral_lock_phone($1)")
        .bind(p.to_e164())
        .execute(&mut *tx)
        .await
        .expect("the store's call is the deadlock's victim");
    assert!(!call.is_finished(), "the call waits for its retry's turn");
    tx.commit().await.unwrap();
    let outcome = call.await.unwrap().expect("retried after the deadlock");
    assert!(
        matches!(outcome, IssueOutcome::Issued { .. }),
        "{outcome:?}"
    );
    let sends: i64 = sqlx::query_scalar("SELECT count(*) FROM referral_otp_sends")
        .fetch_one(&mut watch)
        .await
        .unwrap();
    assert_eq!(sends, 1);
}
