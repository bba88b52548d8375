//! Shared by the integration tests: a fresh, migrated database per test.
#![allow(dead_code, unreachable_pub)]

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
