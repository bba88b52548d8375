//! # referral-sqlx
//!
//! [`PgStore`]: a PostgreSQL implementation of every store port of
//! [`referral_core`] ([`OtpStore`](referral_core::store::OtpStore),
//! [`ReferralStore`](referral_core::store::ReferralStore),
//! [`RewardStore`](referral_core::store::RewardStore) and
//! [`OperatorStore`](referral_core::store::OperatorStore)) on sqlx 0.8.
//!
//! It is the store to run many stateless server processes on: every rule of
//! the ports (one activation per user, no referral cycle, unique invite codes,
//! a login code verified once, attempt and send limits) is decided by
//! PostgreSQL, by a constraint or inside one function call, never by reading
//! in Rust and writing afterwards. So the rules hold however many processes
//! share the database.
//!
//! ```no_run
//! use std::sync::Arc;
//! use referral_core::{ReferralService, StubSmsSender};
//! use referral_sqlx::PgStore;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PgStore::connect("postgres://app@localhost/referral").await?;
//! store.migrate().await?; // creates or updates the tables, once per deployment is enough
//! let service = ReferralService::builder(Arc::new(store), Arc::new(StubSmsSender::new())).build()?;
//! # let _ = service; Ok(()) }
//! ```
//!
//! ## Connecting
//!
//! [`PgStore::connect`] and [`PgStore::connect_with`] build the pool
//! *lazily*: they check the options but open no connection, so a server can
//! start while the database is down. Every operation then answers
//! [`StoreError::Unavailable`] until
//! the database is back, and works again without rebuilding the store (the
//! pool pings a connection idle for over a second before handing it out, see
//! [`PgStoreOptions::ping_idle_after`]). Call
//! [`health`](referral_core::store::ReferralStore::health) or
//! [`PgStore::migrate`] at start-up to fail fast instead.
//!
//! [`PgStoreOptions`] holds the knobs: pool size, acquire timeout and
//! statement timeout, with defaults fit for a web server. Bring an existing
//! [`PgPool`] with [`PgStore::from_pool`]; its connections must use READ
//! COMMITTED, PostgreSQL's default (the store refuses to run otherwise).
//!
//! ## Schema
//!
//! [`MIGRATOR`] holds the migrations (tables prefixed `referral_`, and the
//! plpgsql functions that decide the rules); [`PgStore::migrate`] runs them.
//! Apps with a migrator of their own can run [`MIGRATOR`] on their pool.
//! The crate's README describes the tables.
//!
//! ## Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `tls-rustls` | TLS to PostgreSQL with rustls and the webpki roots (`sslmode` in the URL) |
//!
//! Without it, connections are plain TCP or Unix sockets. For the platform's
//! TLS library instead, enable sqlx's `tls-native-tls` feature in your crate
//! (Cargo unifies features, so this crate's connections use it too).

mod error;
mod operators;
mod otp;
mod rewards;
mod row;
mod users;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use referral_core::StoreError;
use sqlx::Execute;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow};

/// The statements of the operator reads, for this crate's plan tests: not
/// an API, and they change without notice.
#[doc(hidden)]
pub mod operator_sql {
    pub use crate::operators::{DETAIL, STATS, export_referrals_query, export_rewards_query};
}

/// The migrations of this crate, embedded at build time. Run them with
/// [`PgStore::migrate`], or with `MIGRATOR.run(&pool)` from an app's own
/// start-up code. Running them again, or from several processes at once, is
/// safe: sqlx takes an advisory lock and skips what was applied.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// The PostgreSQL store. Cheap to clone (it is a handle to a pool); create
/// one per process and share it.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Behind a transaction-mode pooler: the statement opening each call's
    /// transaction (isolation and statement timeout set in it, since the
    /// pooler refuses them as startup options).
    pooler_begin: Option<String>,
    /// Where `migrate` connects when not through `pool`.
    migration: Option<PgConnectOptions>,
}

/// A query as this crate builds them.
type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// A query taken apart so it can be sent again: its SQL, its encoded
/// arguments and whether it is a named (cached) statement.
struct Call<'q> {
    sql: &'q str,
    arguments: Option<PgArguments>,
    persistent: bool,
}

impl<'q> Call<'q> {
    fn new(mut query: PgQuery<'q>) -> Result<Self, sqlx::Error> {
        let arguments = query.take_arguments().map_err(sqlx::Error::Encode)?;
        Ok(Self {
            sql: query.sql(),
            arguments,
            persistent: Execute::persistent(&query),
        })
    }

    /// The query, as built.
    fn query(&self) -> PgQuery<'q> {
        match &self.arguments {
            Some(arguments) => sqlx::query_with(self.sql, arguments.clone()),
            None => sqlx::query(self.sql),
        }
        .persistent(self.persistent)
    }
}

/// Calls `attempt` until it succeeds or fails other than by a serialization
/// failure or a deadlock ([`error::is_retryable`]), at most
/// [`MAX_ATTEMPTS`] times, after a short jittered pause between attempts.
///
/// Safe because every call of this store is one statement in a transaction
/// of its own (a plpgsql function call or one `SELECT`/`DELETE`): PostgreSQL
/// answers these two errors after rolling the transaction back, so nothing
/// of the failed attempt was written. A last failure is returned (and maps
/// to [`StoreError::Unavailable`]).
async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(e) if tries < MAX_ATTEMPTS && error::is_retryable(&e) => {
                tokio::time::sleep(backoff(tries)).await;
                tries += 1;
            }
            done => return done,
        }
    }
}

/// Attempts of one call when it keeps failing with a serialization failure or
/// a deadlock.
const MAX_ATTEMPTS: u32 = 3;

/// The pause after failed attempt `tries` (1, 2, …): 5 ms doubling each
/// time, times a random factor in [0.5, 1.5) so that the transactions that
/// collided do not meet again.
fn backoff(tries: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // A randomly keyed hasher (std's RandomState) is the jitter's source.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let base = 5_000u64 << tries.saturating_sub(1).min(10);
    Duration::from_micros(base / 2 + random % base)
}

/// Runs `$query` with the executor method `$method` as `PgStore::fetch_one`
/// describes: on the pool, or behind a transaction pooler unnamed, in a
/// transaction of its own opened by the store's `pooler_begin`; sent again
/// after a serialization failure or a deadlock ([`retrying`]).
macro_rules! run_query {
    ($store:ident, $query:ident, $method:ident) => {{
        let call = &Call::new($query)?;
        retrying(|| async move {
            match &$store.pooler_begin {
                None => call.query().$method(&$store.pool).await,
                Some(begin) => {
                    let mut tx = $store.pool.begin_with(begin.clone()).await?;
                    let out = call.query().persistent(false).$method(&mut *tx).await?;
                    tx.commit().await?;
                    Ok(out)
                }
            }
        })
        .await
    }};
}

impl PgStore {
    /// A store for the database at `url`
    /// (`postgres://user:password@host:port/database?sslmode=…`), with the
    /// default [`PgStoreOptions`].
    ///
    /// Connects lazily: no connection is opened here (see the
    /// [crate docs](crate#connecting)). Must be called within a Tokio runtime.
    ///
    /// # Errors
    /// [`StoreError::Internal`] when `url` is not a PostgreSQL URL.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(PgStoreOptions::new(url)?).await
    }

    /// A store with these options. Connects lazily, like [`PgStore::connect`].
    ///
    /// # Errors
    /// None today; the `Result` leaves room for checks that need a connection.
    pub async fn connect_with(options: PgStoreOptions) -> Result<Self, StoreError> {
        let connect = options.session_options();
        let ping_idle_after = options.ping_idle_after;
        let pooler_begin = options.transaction_pooler.then(|| {
            let mut begin = String::from("BEGIN ISOLATION LEVEL READ COMMITTED");
            if let Some(timeout) = options.statement_timeout {
                begin.push_str(&format!(
                    "; SET LOCAL statement_timeout = {}",
                    timeout.as_millis().max(1)
                ));
            }
            begin
        });
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .min_connections(options.min_connections)
            .acquire_timeout(options.acquire_timeout)
            .idle_timeout(options.idle_timeout)
            .max_lifetime(options.max_lifetime)
            // sqlx's `test_before_acquire` pings on every checkout: a round
            // trip per operation (measured by referral-benches' round_trips
            // test). sqlx already pings each connection as it returns to the
            // pool, so only one idle for a while may have died since.
            .test_before_acquire(false)
            .before_acquire(move |conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= ping_idle_after {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(connect);
        Ok(Self {
            pool,
            pooler_begin,
            migration: options.migration,
        })
    }

    /// A store on an existing pool. Its connections must run at READ
    /// COMMITTED isolation (PostgreSQL's default); the store's functions
    /// refuse to run at another level rather than decide wrongly.
    #[must_use]
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
            pooler_begin: None,
            migration: None,
        }
    }

    /// Applies the pending [`MIGRATOR`] migrations, over
    /// [`PgStoreOptions::migration_url`] when one was given (a direct
    /// connection: sqlx's migrator takes a session-level advisory lock and
    /// prepares statements, which a transaction-mode pooler breaks), else
    /// over the store's own pool.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached,
    /// [`StoreError::Internal`] when a migration fails or the database holds
    /// migrations this crate does not know, or when the store goes through a
    /// transaction pooler and has no migration URL.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match (&self.migration, &self.pooler_begin) {
            (Some(direct), _) => {
                let pool = PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(PgStoreOptions::DEFAULT_ACQUIRE_TIMEOUT)
                    .connect_with(direct.clone())
                    .await
                    .map_err(error::map)?;
                let result = MIGRATOR.run(&pool).await.map_err(error::map_migrate);
                pool.close().await;
                result
            }
            (None, Some(_)) => Err(StoreError::internal(
                "migrations need a direct connection, not a transaction pooler: set PgStoreOptions::migration_url",
            )),
            (None, None) => MIGRATOR.run(&self.pool).await.map_err(error::map_migrate),
        }
    }

    /// Runs `query` for its first row: straight on the pool, or behind a
    /// transaction pooler inside a transaction of its own (see
    /// [`PgStoreOptions::transaction_pooler`]); again after a serialization
    /// failure or a deadlock (see [`retrying`]).
    pub(crate) async fn fetch_one(&self, query: PgQuery<'_>) -> Result<PgRow, sqlx::Error> {
        run_query!(self, query, fetch_one)
    }

    /// Like [`fetch_one`](Self::fetch_one), for at most one row.
    pub(crate) async fn fetch_optional(
        &self,
        query: PgQuery<'_>,
    ) -> Result<Option<PgRow>, sqlx::Error> {
        run_query!(self, query, fetch_optional)
    }

    /// Like [`fetch_one`](Self::fetch_one), for every row.
    pub(crate) async fn fetch_all(&self, query: PgQuery<'_>) -> Result<Vec<PgRow>, sqlx::Error> {
        run_query!(self, query, fetch_all)
    }

    /// Like [`fetch_one`](Self::fetch_one), for no row.
    pub(crate) async fn execute(&self, query: PgQuery<'_>) -> Result<(), sqlx::Error> {
        run_query!(self, query, execute).map(drop)
    }

    /// The pool, for an app's own queries (say a readiness probe).
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Deletes what no rule can use any more at `now`: expired login codes,
    /// charged sends (per phone, per client and for the global budget) older than the
    /// send window and the cooldown, wrong
    /// guesses older than the failure window, and unknown invite codes
    /// older than the invite failure window. Returns how many rows went.
    ///
    /// Every operation already prunes the rows of the phone or user it
    /// touches, and every `issue_otp` deletes a few old rows of any phone or
    /// client (through time indexes, never a table scan), so login-code
    /// state stays bounded without this; it catches the rest at once (and
    /// unknown invite codes of users never seen again). Run it now and then
    /// (say hourly, from one process) in a long-running deployment.
    /// Safe to run while serving: it only deletes rows no answer depends on
    /// (a deleted expired code answers "no code" instead of "expired").
    /// It is one statement, so the statement timeout bounds it: for a large
    /// first backlog, run it from a store with a longer one.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn purge(
        &self,
        otp: &referral_core::OtpPolicy,
        invite: &referral_core::store::InvitePolicy,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError> {
        let row = self
            .fetch_one(
                sqlx::query(
                    "WITH codes AS (
                 DELETE FROM referral_otp_codes WHERE expires_at <= $1 RETURNING 1),
             sends AS (
                 DELETE FROM referral_otp_sends
                  WHERE sent_at <= $1 - greatest($2, $3) * interval '1 microsecond' RETURNING 1),
             failures AS (
                 DELETE FROM referral_otp_failures
                  WHERE at <= $1 - $4 * interval '1 microsecond' RETURNING 1),
             invites AS (
                 DELETE FROM referral_invite_failures
                  WHERE at <= $1 - $5 * interval '1 microsecond' RETURNING 1),
             global AS (
                 DELETE FROM referral_otp_global_sends
                  WHERE sent_at <= $1 - $2 * interval '1 microsecond' RETURNING 1),
             clients AS (
                 DELETE FROM referral_otp_client_sends
                  WHERE sent_at <= $1 - $2 * interval '1 microsecond' RETURNING 1)
             SELECT (SELECT count(*) FROM codes) + (SELECT count(*) FROM sends)
                  + (SELECT count(*) FROM failures) + (SELECT count(*) FROM invites)
                  + (SELECT count(*) FROM global) + (SELECT count(*) FROM clients)",
                )
                .bind(now)
                .bind(micros(otp.send_window))
                .bind(micros(otp.resend_cooldown))
                .bind(micros(otp.failure_window))
                .bind(micros(invite.failure_window)),
            )
            .await
            .map_err(error::map)?;
        let deleted: i64 = sqlx::Row::try_get(&row, 0).map_err(error::map)?;
        Ok(u64::try_from(deleted).unwrap_or(0))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.execute(sqlx::query("SELECT 1"))
            .await
            .map_err(error::map)
    }
}

/// How [`PgStore::connect_with`] connects: where to, and the pool's knobs.
///
/// ```
/// use std::time::Duration;
/// use referral_sqlx::PgStoreOptions;
///
/// let options = PgStoreOptions::new("postgres://app@db.internal/referral")?
///     .max_connections(20)
///     .acquire_timeout(Duration::from_secs(2))
///     .statement_timeout(Some(Duration::from_secs(3)));
/// assert_eq!(options.get_max_connections(), 20);
/// # Ok::<(), referral_core::StoreError>(())
/// ```
#[derive(Clone)]
pub struct PgStoreOptions {
    connect: PgConnectOptions,
    max_connections: u32,
    min_connections: u32,
    acquire_timeout: Duration,
    statement_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    max_lifetime: Option<Duration>,
    ping_idle_after: Duration,
    transaction_pooler: bool,
    migration: Option<PgConnectOptions>,
}

impl PgStoreOptions {
    /// Connections per pool, by default (per process: mind PostgreSQL's
    /// `max_connections` when running many processes).
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;
    /// How long an operation waits for a pooled connection (including
    /// connecting) before it answers `Unavailable`, by default.
    pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
    /// The server-side `statement_timeout`, by default. Every statement of
    /// this store is a few index lookups; one that takes longer waits on an
    /// overloaded server or a lock, and answers `Unavailable`.
    pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
    /// How long a pooled connection may sit idle before it is pinged on its
    /// next use, by default.
    pub const DEFAULT_PING_IDLE_AFTER: Duration = Duration::from_secs(1);
    /// How long an idle connection is kept, by default.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
    /// The longest life of a connection, by default (so connections move to
    /// new servers behind a load balancer or after a failover).
    pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(1800);

    /// Options for the database at `url`, with the defaults.
    ///
    /// # Errors
    /// [`StoreError::Internal`] when `url` is not a PostgreSQL URL.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        if !matches!(scheme, Some("postgres" | "postgresql")) {
            return Err(StoreError::internal(
                "a PostgreSQL URL starts with postgres:// or postgresql://",
            ));
        }
        PgConnectOptions::from_str(url)
            .map(Self::from_connect_options)
            .map_err(StoreError::internal)
    }

    /// Options from sqlx's connect options (host, credentials, TLS…), with
    /// the pool defaults.
    #[must_use]
    pub fn from_connect_options(connect: PgConnectOptions) -> Self {
        Self {
            connect,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            min_connections: 0,
            acquire_timeout: Self::DEFAULT_ACQUIRE_TIMEOUT,
            statement_timeout: Some(Self::DEFAULT_STATEMENT_TIMEOUT),
            idle_timeout: Some(Self::DEFAULT_IDLE_TIMEOUT),
            max_lifetime: Some(Self::DEFAULT_MAX_LIFETIME),
            ping_idle_after: Self::DEFAULT_PING_IDLE_AFTER,
            transaction_pooler: false,
            migration: None,
        }
    }

    /// The most connections the pool opens (default
    /// [`DEFAULT_MAX_CONNECTIONS`](Self::DEFAULT_MAX_CONNECTIONS)); at least 1.
    #[must_use]
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// The connections the pool keeps open even when idle (default 0).
    #[must_use]
    pub fn min_connections(mut self, n: u32) -> Self {
        self.min_connections = n;
        self
    }

    /// How long an operation waits for a connection (default
    /// [`DEFAULT_ACQUIRE_TIMEOUT`](Self::DEFAULT_ACQUIRE_TIMEOUT)). A refused
    /// connection is retried (with backoff) until then, so a database that
    /// restarts within this time is waited out; one down for longer makes
    /// each operation answer `Unavailable` after this long. An operation whose
    /// connection breaks under it fails at once.
    #[must_use]
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// The server-side `statement_timeout` of the pool's sessions (default
    /// [`DEFAULT_STATEMENT_TIMEOUT`](Self::DEFAULT_STATEMENT_TIMEOUT)); `None`
    /// leaves the server's setting (needed behind poolers that refuse startup
    /// options).
    #[must_use]
    pub fn statement_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// How long an idle connection is kept (default
    /// [`DEFAULT_IDLE_TIMEOUT`](Self::DEFAULT_IDLE_TIMEOUT)); `None`: forever.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The longest life of a connection (default
    /// [`DEFAULT_MAX_LIFETIME`](Self::DEFAULT_MAX_LIFETIME)); `None`: forever.
    #[must_use]
    pub fn max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.max_lifetime = lifetime;
        self
    }

    /// Pings a pooled connection idle for longer than this before handing it
    /// out (default [`DEFAULT_PING_IDLE_AFTER`](Self::DEFAULT_PING_IDLE_AFTER)).
    ///
    /// sqlx pings every connection as it returns to the pool, so only one idle
    /// since may have died (a server restart, a failover, a proxy's idle
    /// cut-off). Pinging costs a round trip; skipping it means a connection
    /// that died meanwhile fails one call with `Unavailable` and is replaced.
    /// `Duration::ZERO` pings before every call (sqlx's
    /// `test_before_acquire`); `Duration::MAX` never.
    #[must_use]
    pub fn ping_idle_after(mut self, idle: Duration) -> Self {
        self.ping_idle_after = idle;
        self
    }

    /// Whether the URL points at a transaction-mode pooler such as PgBouncer
    /// (`pool_mode = transaction`; default `false`), which hands each
    /// transaction to any server connection and refuses startup options.
    ///
    /// When `true`: no startup options are sent; statements are unnamed
    /// (`persistent(false)`, statement cache off), since a named prepared
    /// statement lives on one server connection (PgBouncer before 1.21 has no
    /// support for them); and every call runs in a transaction of its own,
    /// `BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL statement_timeout =
    /// …`, so sqlx's parse and execute steps stay on one server connection
    /// and the isolation and the statement timeout still hold. Each call
    /// then costs 4 round trips (begin, parse, execute, commit) instead of 1.
    /// Run migrations over a direct connection:
    /// [`migration_url`](Self::migration_url).
    #[must_use]
    pub fn transaction_pooler(mut self, pooler: bool) -> Self {
        self.transaction_pooler = pooler;
        self
    }

    /// A direct URL to the same database for [`PgStore::migrate`] (needed
    /// behind a transaction pooler: sqlx's migrator holds a session-level
    /// advisory lock). Default: migrate over the store's own pool.
    ///
    /// # Errors
    /// [`StoreError::Internal`] when `url` is not a PostgreSQL URL.
    pub fn migration_url(mut self, url: &str) -> Result<Self, StoreError> {
        self.migration = Some(Self::new(url)?.connect);
        Ok(self)
    }

    /// Like [`migration_url`](Self::migration_url), from sqlx's connect options.
    #[must_use]
    pub fn migration_connect_options(mut self, connect: PgConnectOptions) -> Self {
        self.migration = Some(connect);
        self
    }

    /// Whether the store goes through a transaction pooler.
    #[must_use]
    pub fn get_transaction_pooler(&self) -> bool {
        self.transaction_pooler
    }

    /// The maximum pool size.
    #[must_use]
    pub fn get_max_connections(&self) -> u32 {
        self.max_connections
    }

    /// The acquire timeout.
    #[must_use]
    pub fn get_acquire_timeout(&self) -> Duration {
        self.acquire_timeout
    }

    /// The statement timeout.
    #[must_use]
    pub fn get_statement_timeout(&self) -> Option<Duration> {
        self.statement_timeout
    }

    /// sqlx's connect options (host, credentials, TLS…).
    #[must_use]
    pub fn get_connect_options(&self) -> &PgConnectOptions {
        &self.connect
    }

    /// The connect options with this store's session settings: READ
    /// COMMITTED (whatever the server's default), the statement timeout, and
    /// an application name for `pg_stat_activity` unless one was set. Behind
    /// a transaction pooler, no startup options and no statement cache (each
    /// call sets isolation and timeout in its transaction instead).
    fn session_options(&self) -> PgConnectOptions {
        let mut connect = self.connect.clone();
        if connect.get_application_name().is_none() {
            connect = connect.application_name("referral-sqlx");
        }
        if self.transaction_pooler {
            return connect.statement_cache_capacity(0);
        }
        // PostgreSQL splits startup options at spaces; `\ ` keeps one.
        let mut settings = vec![(
            "default_transaction_isolation",
            "read\\ committed".to_owned(),
        )];
        if let Some(timeout) = self.statement_timeout {
            settings.push(("statement_timeout", timeout.as_millis().max(1).to_string()));
        }
        connect.options(settings)
    }
}

impl fmt::Debug for PgStoreOptions {
    /// Shows where to and the knobs, never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStoreOptions")
            .field("host", &self.connect.get_host())
            .field("port", &self.connect.get_port())
            .field("database", &self.connect.get_database())
            .field("username", &self.connect.get_username())
            .field("max_connections", &self.max_connections)
            .field("min_connections", &self.min_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .field("ping_idle_after", &self.ping_idle_after)
            .field("transaction_pooler", &self.transaction_pooler)
            .field("migration_url", &self.migration.is_some())
            .finish()
    }
}

/// A `std::time::Duration` in whole microseconds, as the SQL functions take
/// windows; saturating (the service caps windows at 100 years).
fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// A count as an SQL `integer`, saturating.
fn int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_debug_hides_the_password() {
        let o = PgStoreOptions::new("postgres://app:s3cret@db:5433/referral").unwrap();
        let shown = format!("{o:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("5433"), "{shown}");
    }

    #[test]
    fn bad_urls_are_internal_errors() {
        for url in ["mysql://x", "localhost", "postgres://h:notaport/db"] {
            let err = PgStoreOptions::new(url).unwrap_err();
            assert!(!err.is_transient(), "{url}");
        }
    }

    #[test]
    fn session_options_carry_isolation_and_timeout() {
        let o = PgStoreOptions::new("postgres://db/x")
            .unwrap()
            .statement_timeout(Some(Duration::from_millis(1500)))
            .session_options();
        let opts = o.get_options().unwrap_or_default();
        assert!(opts.contains("statement_timeout=1500"), "{opts}");
        assert!(opts.contains("read\\ committed"), "{opts}");
        assert_eq!(o.get_application_name(), Some("referral-sqlx"));
    }

    #[test]
    fn behind_a_pooler_no_startup_options_are_sent() {
        let o = PgStoreOptions::new("postgres://db/x")
            .unwrap()
            .transaction_pooler(true)
            .session_options();
        assert_eq!(o.get_options(), None);
    }

    #[tokio::test]
    async fn deadlocks_and_serialization_failures_are_tried_three_times() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let calls = AtomicU32::new(0);
        // Two deadlocks, then success: the caller sees the success.
        let result = retrying(|| async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(error::tests::sqlstate("40P01")),
                1 => Err(error::tests::sqlstate("40001")),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(result.unwrap(), 2);
        // Always a deadlock: three attempts, then the error.
        calls.store(0, Ordering::SeqCst);
        let result: Result<(), _> = retrying(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(error::tests::sqlstate("40P01"))
        })
        .await;
        assert!(error::is_retryable(&result.unwrap_err()));
        assert_eq!(calls.load(Ordering::SeqCst), MAX_ATTEMPTS);
        // Anything else: one attempt.
        for failure in [
            error::tests::sqlstate("57014"),
            error::tests::sqlstate("23505"),
            sqlx::Error::PoolTimedOut,
        ] {
            calls.store(0, Ordering::SeqCst);
            let failure = std::sync::Mutex::new(Some(failure));
            let result: Result<(), _> = retrying(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(failure.lock().unwrap().take().unwrap())
            })
            .await;
            assert!(result.is_err());
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
    }

    #[test]
    fn backoff_is_short_and_jittered() {
        let pauses: Vec<Duration> = (0..50).map(|_| backoff(1)).collect();
        assert!(
            pauses
                .iter()
                .all(|p| (Duration::from_micros(2_500)..Duration::from_micros(7_500)).contains(p)),
            "{pauses:?}"
        );
        assert!(pauses.iter().any(|p| *p != pauses[0]), "{pauses:?}");
        assert!((Duration::from_millis(5)..Duration::from_millis(15)).contains(&backoff(2)));
    }

    #[test]
    fn conversions_saturate() {
        assert_eq!(micros(Duration::from_secs(2)), 2_000_000);
        assert_eq!(micros(Duration::MAX), i64::MAX);
        assert_eq!(int(u32::MAX), i32::MAX);
    }
}
