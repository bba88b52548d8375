//! PostgreSQL-specific tests of `PgStore`: migrations, several pools (as
//! several server processes would have) racing each other, and a server that
//! goes down and comes back. Each test has a database of its own.
//!
//! The restart test needs `REFERRAL_TEST_PGCTL`, a command taking `stop` or
//! `start` for the server of `DATABASE_URL` (scripts/test.sh provides one).
//! Without it the test is skipped, except under `CI`.

mod common;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use referral_core::otp::{ChallengeId, OtpCode, OtpGuess, OtpHash, OtpKey, OtpLength, OtpPolicy};
use referral_core::random::SeededRandom;
use referral_core::store::{
    ActivationOutcome, ApproveOutcome, InvitePolicy, IssueOutcome, NewChallenge, NewRewardIds,
    NewUser, OtpStore, RecordOutcome, ReferralStore, RegisterOutcome, ReverseOutcome, RewardStore,
    VerifyOutcome,
};
use referral_core::testkit::race;
use referral_core::{
    BasisPoints, ClientAddress, ConversionId, ConversionKind, ConversionUser, Currency, InviteCode,
    Money, NewConversion, PhoneNumber, ReversalId, RewardId, RewardPolicy, StoreError, User,
    UserId,
};
use referral_sqlx::{MIGRATOR, PgStore};
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, Migrator};
use tokio::sync::RwLock;

/// The restart test stops the whole server: it takes this for writing, every
/// other test of this binary for reading, so none runs while it does.
static SERVER: RwLock<()> = RwLock::const_new(());

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time")
}

fn phone(n: u64) -> PhoneNumber {
    format!("+7999{n:07}").parse().expect("a valid phone")
}

/// Registers user number `n` with a random invite code.
async fn register(store: &PgStore, rng: &SeededRandom, n: u64) -> User {
    let codes: Vec<InviteCode> = (0..8).map(|_| InviteCode::generate(rng)).collect();
    let new = NewUser {
        id: UserId::generate(rng),
        created_at: t0(),
    };
    match store.register(&phone(n), new, &codes).await.unwrap() {
        RegisterOutcome::Created(u) | RegisterOutcome::Existing(u) => u,
        other => panic!("register: {other:?}"),
    }
}

/// Two stores (two pools) on one fresh database, or `None` to skip.
async fn two_stores() -> Option<(PgStore, PgStore)> {
    let connect = common::create_database().await?;
    let a = PgStore::connect_with(common::test_options(connect.clone()))
        .await
        .unwrap();
    let b = PgStore::connect_with(common::test_options(connect))
        .await
        .unwrap();
    a.migrate().await.unwrap();
    Some((a, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_run_twice_and_concurrently_are_harmless() {
    let _gate = SERVER.read().await;
    let Some((a, b)) = two_stores().await else {
        return;
    };
    let rng = SeededRandom::new(1);
    let alice = register(&a, &rng, 1).await;
    // Again, from both pools at once, and through the exported migrator.
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    ra.unwrap();
    rb.unwrap();
    MIGRATOR.run(a.pool()).await.unwrap();
    assert_eq!(b.user(alice.id).await.unwrap(), Some(alice));

    // A fresh database migrated by two processes at the same moment.
    let connect = common::create_database().await.unwrap();
    let c = PgStore::connect_with(common::test_options(connect.clone()))
        .await
        .unwrap();
    let d = PgStore::connect_with(common::test_options(connect))
        .await
        .unwrap();
    let (rc, rd) = tokio::join!(c.migrate(), d.migrate());
    rc.unwrap();
    rd.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(c.pool())
        .await
        .unwrap();
    assert_eq!(n, MIGRATOR.iter().count() as i64);
    c.health_check().await;
}

/// The migrations before `verify_otp` compared hashes in the database, as a
/// source for `Migrator::new`.
#[derive(Debug)]
struct MigrationsUpTo(i64);

impl<'s> MigrationSource<'s> for MigrationsUpTo {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrading_to_one_call_verify_asks_live_codes_again_without_charging() {
    let _gate = SERVER.read().await;
    let Some(connect) = common::create_database().await else {
        return;
    };
    let store = PgStore::connect_with(common::test_options(connect))
        .await
        .unwrap();
    let before = Migrator::new(MigrationsUpTo(20261123000002)).await.unwrap();
    before.run(store.pool()).await.unwrap();

    // A code sent before the upgrade, hashed the old way (any bytes will do:
    // no guess hashed the new way can match them).
    let rng = SeededRandom::new(9);
    let key = OtpKey::generate(&rng);
    let code = OtpCode::parse("1234", OtpLength::default()).unwrap();
    let p = phone(1);
    let policy = OtpPolicy::default();
    let old = NewChallenge {
        id: ChallengeId::generate(&rng),
        hash: OtpHash::from_bytes([7; 32]),
        step_up_hash: OtpHash::from_bytes([7; 32]),
        issued_at: t0(),
        expires_at: t0() + TimeDelta::seconds(300),
    };
    // The store of that time called migration 2's issue function.
    let outcome: String = sqlx::query_scalar(
        "SELECT outcome FROM referral_otp_issue($1, $2, $3, $4, $5, $4, 60000000, 3600000000, 5, 86400000000, 10, NULL)",
    )
    .bind(p.to_e164())
    .bind(old.id.as_uuid())
    .bind(&old.hash.as_bytes()[..])
    .bind(old.issued_at)
    .bind(old.expires_at)
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(outcome, "issued");

    store.migrate().await.unwrap();
    let guess = OtpGuess::new(&key, &p, &code);
    let out = store.verify_otp(&p, &guess, &policy, t0()).await.unwrap();
    assert_eq!(out, VerifyOutcome::NoChallenge, "not a counted mismatch");
    // The old send stays charged: the cooldown still holds.
    let new = NewChallenge {
        id: ChallengeId::generate(&rng),
        hash: key.hash(&p, &code),
        step_up_hash: key.hash(&p, &code),
        ..old
    };
    let out = store
        .issue_otp(&p, &new, None, &policy, t0())
        .await
        .unwrap();
    assert!(matches!(out, IssueOutcome::Cooldown { .. }), "{out:?}");
    let later = t0() + TimeDelta::seconds(61);
    let out = store
        .issue_otp(&p, &new, None, &policy, later)
        .await
        .unwrap();
    assert!(matches!(out, IssueOutcome::Issued { .. }), "{out:?}");
    let out = store.verify_otp(&p, &guess, &policy, later).await.unwrap();
    assert_eq!(out, VerifyOutcome::Verified);
}

/// Every lookup in the rule functions goes through an index (migration 4),
/// even on tables small enough for the planner to prefer a sequential scan —
/// a plan a session would otherwise keep while the table grows.
/// Sequential scans of this crate's tables by the transaction `tx`'s
/// backend so far. Read twice in one transaction on one connection:
/// pg_stat_xact_user_tables counts the scans of this backend not yet
/// reported (those inside functions included); nothing is reported inside a
/// transaction, so the difference between two reads in it is exactly what
/// the calls between did.
async fn seq_scans(tx: &mut sqlx::PgConnection) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT relname::text, seq_scan FROM pg_stat_xact_user_tables
          WHERE relname LIKE 'referral%' ORDER BY relname",
    )
    .fetch_all(tx)
    .await
    .unwrap()
}

/// The tables scanned sequentially between two [`seq_scans`] reads, and how
/// many times.
fn scans_between<'a>(before: &[(String, i64)], after: &'a [(String, i64)]) -> Vec<(&'a str, i64)> {
    after
        .iter()
        .map(|(table, n)| {
            let was = before.iter().find(|(t, _)| t == table).map_or(0, |b| b.1);
            (table.as_str(), n - was)
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rule_functions_never_scan_whole_tables() {
    let _gate = SERVER.read().await;
    let Some(store) = common::fresh_store().await else {
        return;
    };
    let rng = SeededRandom::new(10);
    let alice = register(&store, &rng, 1).await;
    let key = OtpKey::generate(&rng);
    let code = OtpCode::parse("1234", OtpLength::default()).unwrap();
    let day = 86_400_000_000_i64;
    // One transaction on one connection (see `seq_scans`).
    let mut tx = store.pool().begin().await.unwrap();
    let before = seq_scans(&mut tx).await;
    for i in 0..12 {
        let p = phone(100 + i);
        let id = ChallengeId::generate(&rng);
        sqlx::query(
            "SELECT * FROM referral_otp_issue($1, $2, $3, $3, $4, $5, $4, $7, 60000000, 3600000000, 5, $6, 10, 30, 1000, 4, 8)",
        )
        .bind(p.to_e164())
        .bind(id.as_uuid())
        .bind(&key.hash(&p, &code).as_bytes()[..])
        .bind(t0())
        .bind(t0() + TimeDelta::seconds(300))
        .bind(day)
        .bind(format!("198.51.100.{i}"))
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        sqlx::query("SELECT * FROM referral_otp_verify($1, $2, $3, 5, $4, 10, 8)")
            .bind(p.to_e164())
            .bind(&[0u8; 32][..])
            .bind(t0())
            .bind(day)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        sqlx::query("SELECT referral_otp_revoke($1, $2)")
            .bind(p.to_e164())
            .bind(id.as_uuid())
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query("SELECT * FROM referral_register($1, $2, $3, $4)")
            .bind(phone(200 + i).to_e164())
            .bind(UserId::generate(&rng).as_uuid())
            .bind(t0())
            .bind(vec![InviteCode::generate(&rng).as_str().to_owned()])
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        sqlx::query("SELECT * FROM referral_activate($1, $2, $3, $4, 10)")
            .bind(alice.id.as_uuid())
            .bind("ZZZZZZ")
            .bind(t0())
            .bind(day)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    }
    let after = seq_scans(&mut tx).await;
    let scans = scans_between(&before, &after);
    assert!(scans.is_empty(), "sequential scans: {scans:?}");
    tx.rollback().await.unwrap();
}

/// `health` of both ports, answered.
trait HealthCheck {
    async fn health_check(&self);
}

impl HealthCheck for PgStore {
    async fn health_check(&self) {
        OtpStore::health(self).await.unwrap();
        ReferralStore::health(self).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pools_racing_keep_every_rule() {
    let _gate = SERVER.read().await;
    let Some((a, b)) = two_stores().await else {
        return;
    };
    let stores = [a, b];
    let rng = SeededRandom::new(2);
    let mut next = 0u64;
    let mut user = || {
        next += 1;
        next
    };

    for round in 0..10 {
        // One user, eight different codes, from two pools: one activation.
        let x = register(&stores[0], &rng, user()).await;
        let mut owners = Vec::new();
        for _ in 0..8 {
            owners.push(register(&stores[1], &rng, user()).await);
        }
        let results = race(8, |i| {
            let store = stores[i % 2].clone();
            let code = owners[i].invite_code;
            async move {
                store
                    .activate_invite(x.id, &code, &InvitePolicy::default(), t0())
                    .await
                    .unwrap()
            }
        })
        .await;
        let activated = results
            .iter()
            .filter(|r| matches!(r, ActivationOutcome::Activated { .. }))
            .count();
        assert_eq!(activated, 1, "round {round}: {results:?}");
        assert!(
            results.iter().all(|r| matches!(
                r,
                ActivationOutcome::Activated { .. } | ActivationOutcome::AlreadyActivated { .. }
            )),
            "{results:?}"
        );

        // Mutual activations, each side through its own pool: one wins.
        let mut pairs = Vec::new();
        for _ in 0..6 {
            pairs.push((
                register(&stores[0], &rng, user()).await,
                register(&stores[1], &rng, user()).await,
            ));
        }
        let results = race(12, |i| {
            let store = stores[i % 2].clone();
            let (p, q) = &pairs[i / 2];
            let (me, owner) = if i % 2 == 0 { (p, q) } else { (q, p) };
            let (me, code) = (me.id, owner.invite_code);
            async move {
                store
                    .activate_invite(me, &code, &InvitePolicy::default(), t0())
                    .await
                    .unwrap()
            }
        })
        .await;
        for (pair, outcome) in results.chunks(2).enumerate() {
            let wins = outcome
                .iter()
                .filter(|r| matches!(r, ActivationOutcome::Activated { .. }))
                .count();
            assert_eq!(wins, 1, "round {round}, pair {pair}: {outcome:?}");
            assert!(
                outcome.contains(&ActivationOutcome::Cycle),
                "round {round}, pair {pair}: {outcome:?}"
            );
        }

        // A three-user ring closed by three concurrent activations.
        let ring = [
            register(&stores[0], &rng, user()).await,
            register(&stores[1], &rng, user()).await,
            register(&stores[0], &rng, user()).await,
        ];
        let results = race(3, |i| {
            let store = stores[i % 2].clone();
            let me = ring[i].id;
            let code = ring[(i + 1) % 3].invite_code;
            async move {
                store
                    .activate_invite(me, &code, &InvitePolicy::default(), t0())
                    .await
                    .unwrap()
            }
        })
        .await;
        let wins = results
            .iter()
            .filter(|r| matches!(r, ActivationOutcome::Activated { .. }))
            .count();
        assert_eq!(wins, 2, "round {round}: {results:?}");
    }

    // Referral counts are exact and match the lists.
    for n in 1..=next {
        let Some(u) = user_by_phone(&stores[0], n).await else {
            continue;
        };
        let profile = stores[1].profile(u.id, 1000).await.unwrap().unwrap();
        assert_eq!(profile.referral_count, profile.referrals.len() as u64);
    }
}

async fn user_by_phone(store: &PgStore, n: u64) -> Option<User> {
    let id: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM referral_users WHERE phone = $1")
            .bind(phone(n).to_string())
            .fetch_optional(store.pool())
            .await
            .unwrap();
    store.user(UserId::from_uuid(id?)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pools_racing_verify_one_code_once() {
    let _gate = SERVER.read().await;
    let Some((a, b)) = two_stores().await else {
        return;
    };
    let stores = [a, b];
    let rng = SeededRandom::new(3);
    let key = Arc::new(OtpKey::from_bytes(&[42u8; 32]).unwrap());
    let policy = OtpPolicy::default();
    let code = OtpCode::parse("4321", OtpLength::default()).unwrap();
    let wrong = OtpCode::parse("0000", OtpLength::default()).unwrap();
    for round in 0..10u64 {
        let p = phone(round);
        let id = ChallengeId::generate(&rng);
        let challenge = NewChallenge {
            id,
            hash: key.hash(&p, &code),
            step_up_hash: key.hash(&p, &code),
            issued_at: t0(),
            expires_at: t0() + TimeDelta::minutes(5),
        };
        let issued = stores[0]
            .issue_otp(&p, &challenge, None, &policy, t0())
            .await
            .unwrap();
        assert!(matches!(issued, IssueOutcome::Issued { .. }), "{issued:?}");
        // Sixteen right guesses and four wrong ones, over two pools.
        let results = race(20, |i| {
            let store = stores[i % 2].clone();
            let key = Arc::clone(&key);
            let guess = if i < 16 { code.clone() } else { wrong.clone() };
            let policy = policy.clone();
            async move {
                store
                    .verify_otp(&p, &OtpGuess::new(&key, &p, &guess), &policy, t0())
                    .await
                    .unwrap()
            }
        })
        .await;
        let verified = results
            .iter()
            .filter(|r| **r == VerifyOutcome::Verified)
            .count();
        assert_eq!(verified, 1, "round {round}: {results:?}");
        assert!(
            results[..16]
                .iter()
                .all(|r| matches!(r, VerifyOutcome::Verified | VerifyOutcome::NoChallenge)),
            "{results:?}"
        );
        // Concurrent sends through both pools: exactly one is charged.
        let later = t0() + TimeDelta::hours(2) * i32::try_from(round + 1).unwrap();
        let results = race(8, |i| {
            let store = stores[i % 2].clone();
            let id = ChallengeId::from_uuid(uuid::Uuid::from_u128(
                (u128::from(round) << 64) | i as u128,
            ));
            let challenge = NewChallenge {
                id,
                hash: key.hash(&p, &code),
                step_up_hash: key.hash(&p, &code),
                issued_at: later,
                expires_at: later + TimeDelta::minutes(5),
            };
            let policy = policy.clone();
            async move {
                store
                    .issue_otp(&p, &challenge, None, &policy, later)
                    .await
                    .unwrap()
            }
        })
        .await;
        let issued = results
            .iter()
            .filter(|r| matches!(r, IssueOutcome::Issued { .. }))
            .count();
        assert_eq!(issued, 1, "round {round}: {results:?}");
    }
}

/// Runs `REFERRAL_TEST_PGCTL <action>`.
fn pgctl(command: &str, action: &str) -> bool {
    let mut words = command.split_whitespace();
    let Some(program) = words.next() else {
        return false;
    };
    std::process::Command::new(program)
        .args(words)
        .arg(action)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts the server again when dropped, so a failing test leaves it up.
struct RestartOnDrop<'a> {
    command: &'a str,
    running: bool,
}

impl RestartOnDrop<'_> {
    fn stop(&mut self) {
        assert!(
            pgctl(self.command, "stop"),
            "`{} stop` failed",
            self.command
        );
        self.running = false;
    }

    fn start(&mut self) {
        assert!(
            pgctl(self.command, "start"),
            "`{} start` failed",
            self.command
        );
        self.running = true;
    }
}

impl Drop for RestartOnDrop<'_> {
    fn drop(&mut self) {
        if !self.running && !pgctl(self.command, "start") {
            eprintln!("could not restart PostgreSQL with `{} start`", self.command);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_while_the_server_is_down_then_back_without_rebuilding() {
    let _gate = SERVER.write().await;
    let Some(connect) = common::create_database().await else {
        return;
    };
    let command = match std::env::var("REFERRAL_TEST_PGCTL") {
        Ok(c) if !c.trim().is_empty() => c,
        _ if std::env::var_os("CI").is_some() => {
            panic!("REFERRAL_TEST_PGCTL must be set under CI (run scripts/test.sh)")
        }
        _ => {
            eprintln!(
                "REFERRAL_TEST_PGCTL is not set: skipping the restart test (scripts/test.sh sets it)"
            );
            return;
        }
    };
    let options = common::test_options(connect.clone())
        .acquire_timeout(Duration::from_secs(1))
        .statement_timeout(Some(Duration::from_secs(5)));
    let store = PgStore::connect_with(options).await.unwrap();
    store.migrate().await.unwrap();
    let rng = SeededRandom::new(4);
    let alice = register(&store, &rng, 1).await;
    let bob = register(&store, &rng, 2).await;

    let mut server = RestartOnDrop {
        command: &command,
        running: true,
    };
    server.stop();

    // Down: every kind of call answers Unavailable, promptly, and never panics.
    let started = std::time::Instant::now();
    let err = store.user(alice.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the sqlx error is kept"
    );
    let err = ReferralStore::health(&store).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let err = store
        .activate_invite(bob.id, &alice.invite_code, &InvitePolicy::default(), t0())
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let err = store
        .register(
            &phone(3),
            NewUser {
                id: UserId::generate(&rng),
                created_at: t0(),
            },
            &[InviteCode::generate(&rng)],
        )
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    // A store built while the server is down (lazy connect) also just answers Unavailable.
    let late = PgStore::connect_with(
        common::test_options(connect.clone()).acquire_timeout(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    assert!(late.user(alice.id).await.unwrap_err().is_transient());

    server.start();

    // Back: the same store works again, without being rebuilt.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let found = loop {
        match store.user(alice.id).await {
            Ok(found) => break found,
            Err(e) if e.is_transient() && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("still failing after the restart: {e:?}"),
        }
    };
    // What was written before survives.
    assert_eq!(found, Some(alice.clone()));
    let outcome = store
        .activate_invite(bob.id, &alice.invite_code, &InvitePolicy::default(), t0())
        .await
        .unwrap();
    assert_eq!(outcome, ActivationOutcome::Activated { referrer: alice.id });
    assert_eq!(late.user(bob.id).await.unwrap(), Some(bob.clone()));
    let profile = late.profile(alice.id, 10).await.unwrap().unwrap();
    assert_eq!(profile.referrals, vec![bob.phone]);

    // And a brand-new pool (a restarted process) sees it all too.
    let fresh = PgStore::connect_with(common::test_options(connect))
        .await
        .unwrap();
    let profile = fresh.profile(bob.id, 10).await.unwrap().unwrap();
    assert_eq!(profile.activated_invite_code, Some(alice.invite_code));
    let events = fresh.events_after(None, 10).await.unwrap();
    assert_eq!(events.len(), 3, "{events:?}");
    let ids: HashSet<_> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_run_read_committed_and_other_levels_are_refused() {
    let _gate = SERVER.read().await;
    let Some(connect) = common::create_database().await else {
        return;
    };
    let store = PgStore::connect_with(
        common::test_options(connect.clone()).statement_timeout(Some(Duration::from_millis(2500))),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    // The server's default says serializable; the store's sessions still run
    // READ COMMITTED, with the statement timeout asked for.
    let db = connect.get_database().unwrap().to_owned();
    sqlx::query(&format!(
        "ALTER DATABASE \"{db}\" SET default_transaction_isolation = 'serializable'"
    ))
    .execute(store.pool())
    .await
    .unwrap();
    let store = PgStore::connect_with(
        common::test_options(connect.clone()).statement_timeout(Some(Duration::from_millis(2500))),
    )
    .await
    .unwrap();
    let (isolation, timeout): (String, String) = sqlx::query_as(
        "SELECT current_setting('default_transaction_isolation'), current_setting('statement_timeout')",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(
        (isolation.as_str(), timeout.as_str()),
        ("read committed", "2500ms")
    );
    let rng = SeededRandom::new(5);
    let alice = register(&store, &rng, 1).await;

    // A pool of the app's own at another level: refused loudly, not decided wrongly.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(connect)
        .await
        .unwrap();
    let theirs = PgStore::from_pool(pool);
    let err = theirs
        .activate_invite(alice.id, &alice.invite_code, &InvitePolicy::default(), t0())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Internal(_)), "{err:?}");
    assert!(
        format!("{:?}", std::error::Error::source(&err)).contains("READ COMMITTED"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_reader_misses_nothing_while_writers_race() {
    let _gate = SERVER.read().await;
    let Some((a, b)) = two_stores().await else {
        return;
    };
    const WRITERS: u64 = 8;
    const PER_WRITER: u64 = 40;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The reader polls with the last id it saw, as a consumer would.
    let reader = {
        let store = b.clone();
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut last = None;
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let batch = store.events_after(last, 7).await.unwrap();
                if let Some(e) = batch.last() {
                    last = Some(e.id);
                }
                let empty = batch.is_empty();
                seen.extend(batch.into_iter().map(|e| e.id));
                if finished && empty {
                    return seen;
                }
            }
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = if w % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let rng = SeededRandom::new(100 + w);
                let mut users = Vec::new();
                for i in 0..PER_WRITER {
                    users.push(register(&store, &rng, w * 1000 + i).await);
                }
                // Half of them activate the first one's code: more events.
                for u in users.iter().skip(1).step_by(2) {
                    let outcome = store
                        .activate_invite(
                            u.id,
                            &users[0].invite_code,
                            &InvitePolicy::default(),
                            t0(),
                        )
                        .await
                        .unwrap();
                    assert!(matches!(outcome, ActivationOutcome::Activated { .. }));
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let all: Vec<_> = a
        .events_after(None, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        all.len() as u64,
        WRITERS * (PER_WRITER + PER_WRITER / 2),
        "every change has its event"
    );
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "ids only grow");
    assert_eq!(seen, all, "the polling reader saw every event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_become_visible_in_id_order_even_when_a_writer_is_slow() {
    let _gate = SERVER.read().await;
    let Some((a, b)) = two_stores().await else {
        return;
    };
    let rng = SeededRandom::new(6);
    // A slow writer: registers inside a transaction it keeps open, so its
    // event is written but not committed.
    let mut slow = a.pool().begin().await.unwrap();
    let slow_id = UserId::generate(&rng);
    let outcome: String =
        sqlx::query_scalar("SELECT outcome FROM referral_register($1, $2, $3, $4)")
            .bind(phone(1).to_string())
            .bind(slow_id.as_uuid())
            .bind(t0())
            .bind(vec![InviteCode::generate(&rng).as_str().to_owned()])
            .fetch_one(&mut *slow)
            .await
            .unwrap();
    assert_eq!(outcome, "created");
    // Writers on another pool do not wait for it: a registration and an
    // activation commit meanwhile, and a transaction that rolls back wrote
    // an event too.
    let fast_user = register(&b, &SeededRandom::new(7), 2).await;
    let other = register(&b, &SeededRandom::new(8), 3).await;
    let out = b
        .activate_invite(
            other.id,
            &fast_user.invite_code,
            &InvitePolicy::default(),
            t0(),
        )
        .await
        .unwrap();
    assert!(
        matches!(out, ActivationOutcome::Activated { .. }),
        "{out:?}"
    );
    let mut rolled_back = b.pool().begin().await.unwrap();
    let _: String = sqlx::query_scalar("SELECT outcome FROM referral_register($1, $2, $3, $4)")
        .bind(phone(4).to_string())
        .bind(UserId::generate(&rng).as_uuid())
        .bind(t0())
        .bind(vec![InviteCode::generate(&rng).as_str().to_owned()])
        .fetch_one(&mut *rolled_back)
        .await
        .unwrap();
    rolled_back.rollback().await.unwrap();
    // Their events are committed but not readable yet: the slow writer's
    // transaction is older, and its event will come first.
    assert!(
        b.events_after(None, 10).await.unwrap().is_empty(),
        "nothing may be readable before the slow writer's event"
    );
    slow.commit().await.unwrap();
    let events = b.events_after(None, 10).await.unwrap();
    let users: Vec<UserId> = events
        .iter()
        .map(|e| match &e.kind {
            referral_core::EventKind::UserRegistered { user, .. }
            | referral_core::EventKind::InviteActivated { user, .. } => *user,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(users, vec![slow_id, fast_user.id, other.id, other.id]);
    assert!(events.windows(2).all(|w| w[0].id < w[1].id), "{events:?}");
    // A consumer that read up to the first sees the rest, once.
    let rest = b.events_after(Some(events[0].id), 10).await.unwrap();
    assert_eq!(rest, events[1..]);
}

/// Once a write has returned and none is running, its event is readable at
/// once, however busy the other databases of the cluster are: their
/// transactions, running or ending while the reader decides, never hold
/// this database's outbox back (migration 20261130050001; before it, one
/// ending between the reader's snapshot and its look at pg_stat_activity
/// did).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_are_readable_at_once_while_other_databases_are_busy() {
    let _gate = SERVER.read().await;
    let Some(store) = common::fresh_store().await else {
        return;
    };
    let Some(other) = common::create_database().await else {
        return;
    };
    let busy = sqlx::postgres::PgPoolOptions::new()
        .max_connections(6)
        .connect_with(other)
        .await
        .unwrap();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Short transactions with an xid each, back to back, in another database.
    let churn: Vec<_> = (0..6)
        .map(|_| {
            let (busy, done) = (busy.clone(), Arc::clone(&done));
            tokio::spawn(async move {
                let mut n = 0_u64;
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    sqlx::query("SELECT pg_current_xact_id()")
                        .execute(&busy)
                        .await
                        .unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let rng = SeededRandom::new(9);
    let mut last = None;
    for n in 0..1000 {
        let user = register(&store, &rng, n).await;
        let events = store.events_after(last, 10).await.unwrap();
        let ids: Vec<UserId> = events
            .iter()
            .map(|e| match &e.kind {
                referral_core::EventKind::UserRegistered { user, .. } => *user,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ids, vec![user.id], "registration {n}");
        last = events.last().map(|e| e.id);
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut transactions = 0;
    for c in churn {
        transactions += c.await.unwrap();
    }
    assert!(transactions > 0, "the other database was busy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_stuck_behind_a_lock_times_out_as_unavailable() {
    let _gate = SERVER.read().await;
    let Some(connect) = common::create_database().await else {
        return;
    };
    let store = PgStore::connect_with(
        common::test_options(connect).statement_timeout(Some(Duration::from_millis(300))),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let rng = SeededRandom::new(8);
    let (alice, bob) = (
        register(&store, &rng, 1).await,
        register(&store, &rng, 2).await,
    );
    // Someone holds bob's user lock (a stuck transaction).
    let mut stuck = store.pool().begin().await.unwrap();
    sqlx::query("SELECT referral_lock_user($1)")
        .bind(bob.id.as_uuid())
        .execute(&mut *stuck)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = store
        .activate_invite(bob.id, &alice.invite_code, &InvitePolicy::default(), t0())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    stuck.rollback().await.unwrap();
    // Nothing was half-done: the activation goes through now.
    let outcome = store
        .activate_invite(bob.id, &alice.invite_code, &InvitePolicy::default(), t0())
        .await
        .unwrap();
    assert_eq!(outcome, ActivationOutcome::Activated { referrer: alice.id });
    assert_eq!(
        store
            .profile(alice.id, 10)
            .await
            .unwrap()
            .unwrap()
            .referral_count,
        1
    );
}

/// A call PostgreSQL aborts to break a deadlock is sent again by the store
/// (see `common::deadlocked_call_is_retried`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_aborted_by_a_deadlock_is_retried() {
    let _gate = SERVER.read().await;
    let Some(connect) = common::create_database().await else {
        return;
    };
    let store = PgStore::connect_with(common::test_options(connect.clone()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    common::deadlocked_call_is_retried(&store, &connect).await;
}

/// Rows of `referral_otp_codes`, `_sends`, `_failures` and `_client_sends`.
async fn otp_rows(store: &PgStore) -> [i64; 4] {
    let mut out = [0; 4];
    for (i, table) in ["codes", "sends", "failures", "client_sends"]
        .iter()
        .enumerate()
    {
        out[i] = sqlx::query_scalar(&format!("SELECT count(*) FROM referral_otp_{table}"))
            .fetch_one(store.pool())
            .await
            .unwrap();
    }
    out
}

/// Rows of phones and clients never seen again are deleted a few per
/// `issue_otp`, through the time indexes: never a sequential scan, at most 8
/// rows of each table per call, and all of them after enough calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issues_prune_old_rows_of_other_phones_through_indexes() {
    let _gate = SERVER.read().await;
    let Some(store) = common::fresh_store().await else {
        return;
    };
    // 200 long-dead phones and clients, written directly.
    sqlx::query(
        "WITH n AS (SELECT g, $1::timestamptz - interval '2 days' - g * interval '1 second' AS at
                      FROM generate_series(1, 200) g),
              codes AS (INSERT INTO referral_otp_codes
                            (phone, challenge_id, code_hash, issued_at, expires_at, code_length)
                        SELECT '+7950' || lpad(g::text, 7, '0'), gen_random_uuid(),
                               decode(repeat('00', 32), 'hex'), at, at + interval '5 minutes', 4
                          FROM n),
              sends AS (INSERT INTO referral_otp_sends (phone, challenge_id, sent_at, client)
                        SELECT '+7950' || lpad(g::text, 7, '0'), gen_random_uuid(), at, '10.1.0.' || g
                          FROM n),
              failures AS (INSERT INTO referral_otp_failures (phone, at)
                           SELECT '+7950' || lpad(g::text, 7, '0'), at FROM n)
         INSERT INTO referral_otp_client_sends (client, challenge_id, sent_at)
         SELECT '10.1.0.' || g, gen_random_uuid(), at FROM n",
    )
    .bind(t0())
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(store.pool()).await.unwrap();
    assert_eq!(otp_rows(&store).await, [200, 200, 200, 200]);

    // One transaction on one connection (see `seq_scans`); its own counting
    // queries use the time indexes too, so any sequential scan is the store's.
    const OLD_ROWS: &str = "SELECT (SELECT count(*) FROM referral_otp_codes WHERE expires_at < $1),
                                   (SELECT count(*) FROM referral_otp_sends WHERE sent_at < $1),
                                   (SELECT count(*) FROM referral_otp_failures WHERE at < $1),
                                   (SELECT count(*) FROM referral_otp_client_sends WHERE sent_at < $1)";
    let key = OtpKey::from_bytes(&[1u8; 32]).unwrap();
    let code = OtpCode::parse("1111", OtpLength::default()).unwrap();
    let rng = SeededRandom::new(12);
    let client: ClientAddress = "2001:db8::1".parse().unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query("SET LOCAL enable_seqscan = off")
        .execute(&mut *tx)
        .await
        .unwrap();
    let before = seq_scans(&mut tx).await;
    let mut calls: i64 = 0;
    loop {
        let left: (i64, i64, i64, i64) = sqlx::query_as(OLD_ROWS)
            .bind(t0() - TimeDelta::days(1))
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        let expected = (200 - 8 * calls).max(0);
        assert_eq!(
            left,
            (expected, expected, expected, expected),
            "after {calls} issues: 8 old rows of each table go with each issue"
        );
        if expected == 0 {
            break;
        }
        let p = phone(7000 + calls as u64);
        let id = ChallengeId::generate(&rng);
        // The store's own statement (referral-sqlx/src/otp.rs), on this
        // transaction's connection.
        sqlx::query(
            "SELECT * FROM referral_otp_issue($1, $2, $3, $3, $4, $5, $4, $6, 60000000, 3600000000, 5, 86400000000, 10, 30, NULL, 4, 8)",
        )
        .bind(p.to_e164())
        .bind(id.as_uuid())
        .bind(&key.hash(&p, &code).as_bytes()[..])
        .bind(t0())
        .bind(t0() + TimeDelta::seconds(300))
        .bind(client.to_string())
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        calls += 1;
    }
    assert_eq!(calls, 25);
    let after = seq_scans(&mut tx).await;
    let scans = scans_between(&before, &after);
    assert!(scans.is_empty(), "sequential scans: {scans:?}");
    tx.rollback().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_forgets_only_what_no_rule_needs() {
    let _gate = SERVER.read().await;
    let Some(store) = common::fresh_store().await else {
        return;
    };
    let key = OtpKey::from_bytes(&[1u8; 32]).unwrap();
    let code = OtpCode::parse("1111", OtpLength::default()).unwrap();
    let wrong = OtpCode::parse("2222", OtpLength::default()).unwrap();
    let policy = OtpPolicy::default();
    let rng = SeededRandom::new(9);
    let issue = |p: PhoneNumber, at: DateTime<Utc>| {
        let id = ChallengeId::generate(&rng);
        (
            p,
            NewChallenge {
                id,
                hash: key.hash(&p, &code),
                step_up_hash: key.hash(&p, &code),
                issued_at: at,
                expires_at: at + TimeDelta::minutes(5),
            },
        )
    };
    // An old phone: a code, a send (charged to a client) and a wrong guess,
    // two days ago.
    let old = t0() - TimeDelta::days(2);
    let client: ClientAddress = "203.0.113.1".parse().unwrap();
    let (p_old, c_old) = issue(phone(1), old);
    let _ = store
        .issue_otp(&p_old, &c_old, Some(&client), &policy, old)
        .await
        .unwrap();
    let _ = store
        .verify_otp(&p_old, &OtpGuess::new(&key, &p_old, &wrong), &policy, old)
        .await
        .unwrap();
    let user = register(&store, &rng, 3).await;
    let unknown = InviteCode::generate(&rng);
    let _ = store
        .activate_invite(user.id, &unknown, &InvitePolicy::default(), old)
        .await
        .unwrap();
    assert_eq!(otp_rows(&store).await, [1, 1, 1, 1]);
    let mut old_rows = store.pool().begin().await.unwrap();
    // A fresh phone: a live code, just sent. Its issue deletes the old
    // phone's code, send, wrong guess and client send on the way, except the
    // rows another transaction holds (here: the old code, locked below).
    sqlx::query("SELECT 1 FROM referral_otp_codes WHERE phone = $1 FOR UPDATE")
        .bind(p_old.to_e164())
        .execute(&mut *old_rows)
        .await
        .unwrap();
    let (p_new, c_new) = issue(phone(2), t0());
    let _ = store
        .issue_otp(&p_new, &c_new, None, &policy, t0())
        .await
        .unwrap();
    old_rows.rollback().await.unwrap();
    assert_eq!(
        otp_rows(&store).await,
        [2, 1, 0, 0],
        "codes, sends, failures, client sends: the old ones went with the issue but the locked code"
    );

    let deleted = store
        .purge(&policy, &InvitePolicy::default(), t0())
        .await
        .unwrap();
    assert_eq!(deleted, 2, "the old code and the unknown invite code");
    assert_eq!(
        store
            .purge(&policy, &InvitePolicy::default(), t0())
            .await
            .unwrap(),
        0
    );
    // The fresh phone is untouched: its code verifies, its cooldown holds.
    let outcome = store
        .verify_otp(&p_new, &OtpGuess::new(&key, &p_new, &code), &policy, t0())
        .await
        .unwrap();
    assert_eq!(outcome, VerifyOutcome::Verified);
    let (_, again) = issue(p_new, t0());
    let outcome = store
        .issue_otp(&p_new, &again, None, &policy, t0())
        .await
        .unwrap();
    assert!(
        matches!(outcome, IssueOutcome::Cooldown { .. }),
        "{outcome:?}"
    );
    // Ids past anything PostgreSQL can hold read as "nothing yet".
    let far = referral_core::EventId(u64::MAX);
    assert!(store.events_after(Some(far), 10).await.unwrap().is_empty());
}

/// A challenge for `p` issued at `at`, with a fixed code.
fn budget_challenge(rng: &SeededRandom, p: &PhoneNumber, at: DateTime<Utc>) -> NewChallenge {
    let key = OtpKey::from_bytes(&[5u8; 32]).unwrap();
    let code = OtpCode::parse("1234", OtpLength::default()).unwrap();
    NewChallenge {
        id: ChallengeId::generate(rng),
        hash: key.hash(p, &code),
        step_up_hash: key.hash(p, &code),
        issued_at: at,
        expires_at: at + TimeDelta::minutes(5),
    }
}

/// Issues a code for `p` with a global budget of `budget` inside the open
/// transaction `tx` (as `issue_otp` would, without committing); its outcome.
async fn issue_in(
    tx: &mut sqlx::PgConnection,
    rng: &SeededRandom,
    p: &PhoneNumber,
    budget: i32,
    at: DateTime<Utc>,
) -> String {
    let challenge = budget_challenge(rng, p, at);
    sqlx::query_scalar(
        "SELECT outcome FROM referral_otp_issue($1, $2, $3, $3, $4, $5, $4, NULL, 60000000,
                3600000000, 5, 86400000000, 10, NULL, $6, 4, 8)",
    )
    .bind(p.to_e164())
    .bind(challenge.id.as_uuid())
    .bind(&challenge.hash.as_bytes()[..])
    .bind(at)
    .bind(challenge.expires_at)
    .bind(budget)
    .fetch_one(tx)
    .await
    .unwrap()
}

/// Charged sends of the global budget, per shard.
async fn budget_shards(store: &PgStore) -> Vec<(i16, i64)> {
    sqlx::query_as(
        "SELECT shard, count(*) FROM referral_otp_global_sends GROUP BY shard ORDER BY shard",
    )
    .fetch_all(store.pool())
    .await
    .unwrap()
}

/// The global send budget takes no cluster-wide lock: an issue held open in
/// a transaction (its send charged to a shard, the shard's row locked until
/// commit) makes no issue for another phone wait, from another pool. Twenty
/// phones go through while it is open (were one to wait for it, it could
/// never complete: the test commits only afterwards), some of them starting
/// at the held shard, and nothing waits for a lock; their sends are spread
/// over the shards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_open_issue_makes_no_other_phone_wait_for_the_budget() {
    let _gate = SERVER.read().await;
    let Some((a, b)) = two_stores().await else {
        return;
    };
    let rng = SeededRandom::new(31);
    let mut policy = OtpPolicy::default();
    policy.max_global_sends_per_window = Some(1000);
    let mut open = a.pool().begin().await.unwrap();
    assert_eq!(
        issue_in(&mut open, &rng, &phone(0), 1000, t0()).await,
        "issued"
    );
    for n in 1..=20 {
        let p = phone(n);
        let outcome = b
            .issue_otp(&p, &budget_challenge(&rng, &p, t0()), None, &policy, t0())
            .await
            .unwrap();
        assert!(
            matches!(outcome, IssueOutcome::Issued { .. }),
            "{outcome:?}"
        );
    }
    assert_eq!(lock_waits(&b).await, Vec::<String>::new());
    open.commit().await.unwrap();
    let shards = budget_shards(&b).await;
    assert_eq!(shards.iter().map(|(_, n)| n).sum::<i64>(), 21, "{shards:?}");
    assert!(shards.len() > 4, "{shards:?}");
}

/// Exact and never refusing early: with a budget of 16 (one place per
/// shard), 15 sends charged and the 16th held open in a transaction, another
/// phone's issue waits for the held shard instead of answering "spent"; when
/// the held one rolls back it takes the place, and the next is refused with
/// the time the oldest send leaves the window. Then one place frees and is
/// taken once, however many phones race for it over two pools.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_last_place_of_the_budget_is_waited_for_not_refused() {
    let _gate = SERVER.read().await;
    let Some((a, b)) = two_stores().await else {
        return;
    };
    let rng = SeededRandom::new(32);
    let mut policy = OtpPolicy::default();
    policy.max_global_sends_per_window = Some(16);
    let issue = |store: &PgStore, n: u64, at: DateTime<Utc>| {
        let (store, p, policy) = (store.clone(), phone(n), policy.clone());
        let challenge = budget_challenge(&rng, &p, at);
        async move {
            store
                .issue_otp(&p, &challenge, None, &policy, at)
                .await
                .unwrap()
        }
    };
    for n in 0..15 {
        let at = t0() + TimeDelta::seconds(i64::try_from(n).unwrap());
        assert!(matches!(
            issue(&b, n, at).await,
            IssueOutcome::Issued { .. }
        ));
    }
    let now = t0() + TimeDelta::seconds(20);
    let mut open = a.pool().begin().await.unwrap();
    assert_eq!(
        issue_in(&mut open, &rng, &phone(15), 16, now).await,
        "issued"
    );
    let waiting = tokio::spawn(issue(&b, 16, now));
    loop {
        let waits = lock_waits(&b).await;
        if !waits.is_empty() {
            break;
        }
        assert!(!waiting.is_finished(), "{:?}", waiting.await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    open.rollback().await.unwrap();
    assert!(matches!(
        waiting.await.unwrap(),
        IssueOutcome::Issued { .. }
    ));
    assert_eq!(
        issue(&b, 17, now).await,
        IssueOutcome::BudgetSpent {
            retry_at: t0() + TimeDelta::hours(1)
        }
    );
    assert_eq!(
        budget_shards(&b).await,
        (0..16).map(|s| (s, 1)).collect::<Vec<_>>()
    );

    // Phone 0's send leaves the window: one place, raced for by 20 phones.
    let later = t0() + TimeDelta::hours(1);
    let results = race(20, |i| {
        let store = if i % 2 == 0 { &a } else { &b };
        issue(store, 100 + i as u64, later)
    })
    .await;
    let issued = results
        .iter()
        .filter(|r| matches!(r, IssueOutcome::Issued { .. }))
        .count();
    assert_eq!(issued, 1, "{results:?}");
    let spent = IssueOutcome::BudgetSpent {
        retry_at: t0() + TimeDelta::hours(1) + TimeDelta::seconds(1),
    };
    assert_eq!(
        results.iter().filter(|r| **r == spent).count(),
        19,
        "phone 1's send leaves next: {results:?}"
    );
}

/// Sends charged to the global budget before the sharded budget (migration
/// 20261130060001) still count after it, exactly: a budget of 17 spent
/// before the upgrade stays spent, and frees one place when the oldest send
/// leaves the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrading_to_the_sharded_budget_keeps_every_charged_send() {
    let _gate = SERVER.read().await;
    let Some(connect) = common::create_database().await else {
        return;
    };
    let store = PgStore::connect_with(common::test_options(connect))
        .await
        .unwrap();
    let before = Migrator::new(MigrationsUpTo(20261130030001)).await.unwrap();
    before.run(store.pool()).await.unwrap();
    let rng = SeededRandom::new(33);
    let mut policy = OtpPolicy::default();
    policy.max_global_sends_per_window = Some(17);
    let issue = |n: u64, at: DateTime<Utc>| {
        let (store, p, policy) = (store.clone(), phone(n), policy.clone());
        let challenge = budget_challenge(&rng, &p, at);
        async move {
            store
                .issue_otp(&p, &challenge, None, &policy, at)
                .await
                .unwrap()
        }
    };
    for n in 0..17 {
        let at = t0() + TimeDelta::seconds(i64::try_from(n).unwrap());
        assert!(matches!(issue(n, at).await, IssueOutcome::Issued { .. }));
    }
    store.migrate().await.unwrap();
    let now = t0() + TimeDelta::seconds(20);
    assert_eq!(
        issue(17, now).await,
        IssueOutcome::BudgetSpent {
            retry_at: t0() + TimeDelta::hours(1)
        }
    );
    let later = t0() + TimeDelta::hours(1);
    assert!(matches!(
        issue(18, later).await,
        IssueOutcome::Issued { .. }
    ));
    assert_eq!(
        issue(19, later).await,
        IssueOutcome::BudgetSpent {
            retry_at: later + TimeDelta::seconds(1)
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_killed_while_idle_are_replaced_without_failing_a_call() {
    let _gate = SERVER.read().await;
    let Some(connect) = common::create_database().await else {
        return;
    };
    let store = PgStore::connect_with(common::test_options(connect.clone()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let rng = SeededRandom::new(10);
    let alice = register(&store, &rng, 1).await;
    // Open a few connections, then let them idle past the ping threshold.
    let _ = race(4, |_| {
        let store = store.clone();
        async move { store.user(alice.id).await.unwrap() }
    })
    .await;
    tokio::time::sleep(
        referral_sqlx::PgStoreOptions::DEFAULT_PING_IDLE_AFTER + Duration::from_millis(200),
    )
    .await;
    // A failover or a proxy cuts them all.
    let admin = PgStore::connect_with(common::test_options(connect.clone()))
        .await
        .unwrap();
    let db = connect.get_database().unwrap().to_owned();
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = $1 AND pid <> pg_backend_pid()) AS t",
    )
    .bind(&db)
    .fetch_one(admin.pool())
    .await
    .unwrap();
    assert!(killed >= 1, "{killed}");
    // Every call still succeeds: stale connections are pinged and replaced.
    let results = race(4, |_| {
        let store = store.clone();
        async move { store.user(alice.id).await }
    })
    .await;
    for r in results {
        assert_eq!(r.unwrap(), Some(alice.clone()));
    }
}

/// Needs no PostgreSQL: a "server" that accepts connections and drops them at
/// once (a proxy cut off, a load balancer with no backend).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_dropped_at_once_are_unavailable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    for url in [
        format!("postgres://app@127.0.0.1:{port}/referral"),
        format!("postgres://app@127.0.0.1:{port}/referral?sslmode=disable"),
        format!("postgres://app@127.0.0.1:{port}/referral?sslmode=require"),
    ] {
        let options = referral_sqlx::PgStoreOptions::new(&url)
            .unwrap()
            .acquire_timeout(Duration::from_secs(1));
        let store = PgStore::connect_with(options).await.unwrap();
        let err = store
            .user(UserId::from_uuid(uuid::Uuid::nil()))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{url}: {err:?}");
        let err = ReferralStore::health(&store).await.unwrap_err();
        assert!(err.is_transient(), "{url}: {err:?}");
    }
}

/// Registers `n` users, alternating the two pools.
async fn users(stores: &[PgStore; 2], rng: &SeededRandom, next: &mut u64, n: usize) -> Vec<User> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        *next += 1;
        out.push(register(&stores[i % 2], rng, *next).await);
    }
    out
}

/// `me` activates `owner`'s code through `store`.
async fn activate(store: &PgStore, me: &User, owner: &User) -> ActivationOutcome {
    store
        .activate_invite(me.id, &owner.invite_code, &InvitePolicy::default(), t0())
        .await
        .unwrap()
}

/// `referral_activate` called directly on `conn` (a transaction held open, a
/// chosen backend, or the pool), with a one-hour window of at most 10
/// unknown codes: its outcome.
async fn activate_raw<'e>(
    conn: impl sqlx::PgExecutor<'e>,
    me: &User,
    owner: &User,
) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT outcome FROM referral_activate($1, $2, $3, 3600000000, 10)")
        .bind(me.id.as_uuid())
        .bind(owner.invite_code.as_str())
        .bind(t0())
        .fetch_one(conn)
        .await
}

/// No user is its own ancestor: every referrer chain ends at a root.
async fn assert_forest(store: &PgStore) {
    let cycles: i64 = sqlx::query_scalar(
        "WITH RECURSIVE up (start, id, depth) AS (
             SELECT a.invitee_id, a.referrer_id, 1 FROM referral_activations a
             UNION ALL
             SELECT up.start, a.referrer_id, up.depth + 1
               FROM up JOIN referral_activations a ON a.invitee_id = up.id
              WHERE up.id <> up.start AND up.depth < 100)
         SELECT count(*) FROM up WHERE up.id = up.start",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(cycles, 0, "a referral cycle was committed");
}

/// Rings of 4 to 8 users, each user activating the next one's code at the
/// same moment, through two pools: exactly one activation of each ring is
/// refused as a cycle, whatever the interleaving. Fails when the tree locks
/// of `referral_activate` are taken out (checked by hand).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rings_of_four_to_eight_closed_concurrently_never_form_a_cycle() {
    let _gate = SERVER.read().await;
    let Some((a, b)) = two_stores().await else {
        return;
    };
    let stores = [a, b];
    let rng = SeededRandom::new(20);
    let mut next = 0;
    for round in 0..6 {
        for k in 4..=8usize {
            let ring = users(&stores, &rng, &mut next, k).await;
            let results = race(k, |i| {
                let store = stores[(i + round) % 2].clone();
                let (me, owner) = (ring[i].clone(), ring[(i + 1) % k].clone());
                async move { activate(&store, &me, &owner).await }
            })
            .await;
            let activated = results
                .iter()
                .filter(|r| matches!(r, ActivationOutcome::Activated { .. }))
                .count();
            let cycles = results
                .iter()
                .filter(|r| **r == ActivationOutcome::Cycle)
                .count();
            assert_eq!(
                (activated, cycles),
                (k - 1, 1),
                "round {round}, ring of {k}: {results:?}"
            );
        }
    }
    assert_forest(&stores[0]).await;
}

/// Chains and trees growing and merging concurrently: nothing that closes no
/// cycle is refused, and two trees joining each other at once make one tree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chains_and_trees_merging_concurrently_keep_every_rule() {
    let _gate = SERVER.read().await;
    let Some((a, b)) = two_stores().await else {
        return;
    };
    let stores = [a, b];
    let rng = SeededRandom::new(21);
    let mut next = 0;
    for round in 0..5 {
        // A chain of 8 built at once: every link is accepted.
        let chain = users(&stores, &rng, &mut next, 8).await;
        let results = race(7, |i| {
            let store = stores[(i + round) % 2].clone();
            let (me, owner) = (chain[i].clone(), chain[i + 1].clone());
            async move { activate(&store, &me, &owner).await }
        })
        .await;
        assert!(
            results
                .iter()
                .all(|r| matches!(r, ActivationOutcome::Activated { .. })),
            "round {round}: {results:?}"
        );

        // Two chains of 4; at once, each one's root activates the other's
        // leaf (a ring of 8 through existing links), and leaves join both.
        let left = users(&stores, &rng, &mut next, 4).await;
        let right = users(&stores, &rng, &mut next, 4).await;
        for side in [&left, &right] {
            for i in 0..3 {
                let out = activate(&stores[i % 2], &side[i], &side[i + 1]).await;
                assert!(
                    matches!(out, ActivationOutcome::Activated { .. }),
                    "{out:?}"
                );
            }
        }
        let newcomers = users(&stores, &rng, &mut next, 4).await;
        let results = race(6, |i| {
            let store = stores[(i + round) % 2].clone();
            let (me, owner) = match i {
                0 => (left[3].clone(), right[0].clone()),
                1 => (right[3].clone(), left[0].clone()),
                n => (
                    newcomers[n - 2].clone(),
                    if n % 2 == 0 {
                        left[1].clone()
                    } else {
                        right[2].clone()
                    },
                ),
            };
            async move { activate(&store, &me, &owner).await }
        })
        .await;
        let wins = results[..2]
            .iter()
            .filter(|r| matches!(r, ActivationOutcome::Activated { .. }))
            .count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        assert!(
            results[..2].contains(&ActivationOutcome::Cycle),
            "{results:?}"
        );
        assert!(
            results[2..]
                .iter()
                .all(|r| matches!(r, ActivationOutcome::Activated { .. })),
            "round {round}: {results:?}"
        );
    }
    assert_forest(&stores[0]).await;
}

/// Backends of this database waiting for a lock, and on what.
async fn lock_waits(store: &PgStore) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT l.locktype || ' ' || l.mode FROM pg_locks l
           JOIN pg_stat_activity s ON s.pid = l.pid
          WHERE NOT l.granted AND s.datname = current_database()",
    )
    .fetch_all(store.pool())
    .await
    .unwrap()
}

/// An activation held open in a transaction makes no unrelated write wait:
/// registrations, activations into other trees and into the same tree (even
/// of the same code) go through from another pool while it is open, with no
/// lock wait. Only what depends on it waits: an activation of a code of the
/// user being activated (its tree's root may change).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_open_activation_makes_no_unrelated_write_wait() {
    let _gate = SERVER.read().await;
    let Some((a, b)) = two_stores().await else {
        return;
    };
    let stores = [a, b];
    let rng = SeededRandom::new(22);
    let mut next = 0;
    let people = users(&stores, &rng, &mut next, 8).await;
    let [x, y, z, w, v, t, u, s] = <[User; 8]>::try_from(people).unwrap();

    // x activates y's code, in a transaction held open on pool a.
    let mut open = stores[0].pool().begin().await.unwrap();
    assert_eq!(activate_raw(&mut *open, &x, &y).await.unwrap(), "activated");

    // Meanwhile, on pool b: each of these completes while x's transaction is
    // still open (were it to wait for it, it could never complete: the test
    // commits x only afterwards), and nothing waits for a lock.
    next += 1;
    let newcomer = register(&stores[1], &rng, next).await;
    assert!(matches!(
        activate(&stores[1], &z, &w).await,
        ActivationOutcome::Activated { .. }
    ));
    assert!(matches!(
        activate(&stores[1], &v, &y).await,
        ActivationOutcome::Activated { .. }
    ));
    assert!(matches!(
        activate(&stores[1], &newcomer, &y).await,
        ActivationOutcome::Activated { .. }
    ));
    assert!(matches!(
        activate(&stores[1], &u, &s).await,
        ActivationOutcome::Activated { .. }
    ));
    assert_eq!(lock_waits(&stores[1]).await, Vec::<String>::new());

    // t joining x's tree does wait: x's root is about to change.
    let dependent = {
        let store = stores[1].clone();
        let (t, x) = (t.clone(), x.clone());
        tokio::spawn(async move { activate(&store, &t, &x).await })
    };
    loop {
        let waits = lock_waits(&stores[1]).await;
        if waits.iter().any(|l| l == "advisory ShareLock") {
            break;
        }
        assert!(
            !dependent.is_finished(),
            "t's activation did not wait for x's"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    open.commit().await.unwrap();
    assert_eq!(
        dependent.await.unwrap(),
        ActivationOutcome::Activated { referrer: x.id }
    );
    // y now has x, v and the newcomer; the counts and the lists agree.
    let profile = stores[1].profile(y.id, 10).await.unwrap().unwrap();
    assert_eq!(profile.referral_count, 3);
    assert_eq!(profile.referrals.len(), 3);
    assert_forest(&stores[0]).await;
}

/// An activation of a referrer's code held open makes no other activation
/// of the same code wait for a count row, even from a backend that would
/// have chosen the same one of the 16 rows (pid equal modulo 16: one chance
/// in 16 for any two before migration 20261130070001). Found by connecting
/// until such a backend turns up, so not left to chance.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_open_activation_makes_a_same_shard_activation_of_the_code_not_wait() {
    use sqlx::{Connection, PgConnection};
    let _gate = SERVER.read().await;
    let Some((a, b)) = two_stores().await else {
        return;
    };
    let stores = [a, b];
    let rng = SeededRandom::new(23);
    let mut next = 0;
    let people = users(&stores, &rng, &mut next, 3).await;
    let [x, y, v] = <[User; 3]>::try_from(people).unwrap();
    let mut open = stores[0].pool().begin().await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *open)
        .await
        .unwrap();
    assert_eq!(activate_raw(&mut *open, &x, &y).await.unwrap(), "activated");
    // A backend whose pid is x's modulo 16 (one connection at a time: a new
    // backend is a new process, with a pid not used since long).
    let options = stores[1].pool().connect_options();
    let mut tries = 0;
    let mut same = loop {
        let mut c = PgConnection::connect_with(&options).await.unwrap();
        let other: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut c)
            .await
            .unwrap();
        if other % 16 == pid % 16 {
            break c;
        }
        c.close().await.unwrap();
        tries += 1;
        assert!(tries < 1000, "no backend with pid {pid} mod 16");
    };
    sqlx::query("SET statement_timeout = '5s'")
        .execute(&mut same)
        .await
        .unwrap();
    let outcome = activate_raw(&mut same, &v, &y)
        .await
        .expect("completes while x's activation is open");
    assert_eq!(outcome, "activated");
    open.commit().await.unwrap();
    let profile = stores[1].profile(y.id, 10).await.unwrap().unwrap();
    assert_eq!(profile.referral_count, 2);
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM referral_count_shards WHERE user_id = $1")
            .bind(y.id.as_uuid())
            .fetch_one(stores[1].pool())
            .await
            .unwrap();
    assert_eq!(rows, 2, "two rows, neither waited for");
}

/// A viral code: hundreds of activations of one code at once, over two
/// pools, all counted exactly, in more than one counter row.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_viral_code_counts_every_activation_in_shards() {
    let _gate = SERVER.read().await;
    let Some((a, b)) = two_stores().await else {
        return;
    };
    let stores = [a, b];
    let rng = SeededRandom::new(23);
    let mut next = 0;
    let owner = users(&stores, &rng, &mut next, 1).await.remove(0);
    let fans = users(&stores, &rng, &mut next, 300).await;
    let results = race(fans.len(), |i| {
        let store = stores[i % 2].clone();
        let (me, owner) = (fans[i].clone(), owner.clone());
        async move { activate(&store, &me, &owner).await }
    })
    .await;
    assert!(
        results
            .iter()
            .all(|r| *r == ActivationOutcome::Activated { referrer: owner.id }),
        "{results:?}"
    );
    let profile = stores[0].profile(owner.id, 1000).await.unwrap().unwrap();
    assert_eq!(profile.referral_count, 300);
    assert_eq!(profile.referrals.len(), 300);
    let shards: i64 =
        sqlx::query_scalar("SELECT count(*) FROM referral_count_shards WHERE user_id = $1")
            .bind(owner.id.as_uuid())
            .fetch_one(stores[0].pool())
            .await
            .unwrap();
    assert!(shards > 1, "one counter row for all: {shards}");
    // The leaderboard's ranking missed none of them (those that found its
    // row locked left a delta, folded in by the read).
    let board = referral_core::store::OperatorStore::leaderboard(&stores[1], None, 1)
        .await
        .unwrap();
    assert_eq!(
        board
            .iter()
            .map(|e| (e.user, e.referrals))
            .collect::<Vec<_>>(),
        vec![(owner.id, 300)]
    );
    let deltas: i64 = sqlx::query_scalar("SELECT count(*) FROM referral_rank_deltas")
        .fetch_one(stores[0].pool())
        .await
        .unwrap();
    assert_eq!(deltas, 0, "folded by the read");
    let events = stores[1].events_after(None, 1000).await.unwrap();
    assert_eq!(events.len(), 301 + 300);
}

/// Rows of the count shards, the leaderboard ranking and its pending deltas
/// naming a user who is not there (or whom no activation names as referrer).
async fn orphan_derived_rows(store: &PgStore) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*)
           FROM (SELECT user_id FROM referral_count_shards
                 UNION ALL SELECT user_id FROM referral_referrer_rank
                 UNION ALL SELECT user_id FROM referral_rank_deltas) d
          WHERE NOT EXISTS (SELECT 1 FROM referral_users u WHERE u.id = d.user_id)
             OR NOT EXISTS (SELECT 1 FROM referral_activations a WHERE a.referrer_id = d.user_id)",
    )
    .fetch_one(store.pool())
    .await
    .unwrap()
}

/// The derived rows of a referrer (count shards, leaderboard row, pending
/// deltas) have had no foreign key of their own since migration
/// 20261130110001: they are written only in the transaction of an activation
/// naming their user as referrer, whose own foreign key keeps that user. So
/// a referrer cannot be deleted, also when the delete races activations of
/// its code through another pool, and no derived row ever names a missing
/// user. Fails when the activations' foreign key on the referrer is dropped
/// (checked by hand).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn derived_rows_never_outlive_their_user() {
    let _gate = SERVER.read().await;
    let Some((a, b)) = two_stores().await else {
        return;
    };
    let stores = [a, b];
    let rng = SeededRandom::new(31);
    let mut next = 0;
    let owners = users(&stores, &rng, &mut next, 12).await;
    let mut deleted = 0;
    for (k, owner) in owners.iter().enumerate() {
        let fans = users(&stores, &rng, &mut next, 8).await;
        // Task 0 deletes the owner through one pool, after k ms (so some
        // deletes come first and some after activations), while the others
        // activate its code through both.
        let pause = Duration::from_millis(u64::try_from(k).unwrap());
        let results = race(fans.len() + 1, |i| {
            let store = stores[i % 2].clone();
            let owner = owner.clone();
            let me = fans[i.saturating_sub(1)].clone();
            async move {
                if i == 0 {
                    tokio::time::sleep(pause).await;
                    sqlx::query("DELETE FROM referral_users WHERE id = $1")
                        .bind(owner.id.as_uuid())
                        .execute(store.pool())
                        .await
                        .map(|done| done.rows_affected() == 1)
                        .map_err(|e| e.to_string())
                } else {
                    // Refused codes and errors (the owner deleted under
                    // the activation) are all fine here: what matters is
                    // what stays.
                    let _ = store
                        .activate_invite(me.id, &owner.invite_code, &InvitePolicy::default(), t0())
                        .await;
                    Ok(false)
                }
            }
        })
        .await;
        match &results[0] {
            Ok(true) => deleted += 1,
            Ok(false) => panic!("the delete found no owner"),
            Err(e) => assert!(e.contains("foreign key"), "{e}"),
        }
        assert_eq!(orphan_derived_rows(&stores[0]).await, 0, "{results:?}");
    }
    // Every owner left has referrals (the delete lost the race), and every
    // later delete is refused while its count and ranking rows stay.
    let referrers: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT DISTINCT user_id FROM referral_count_shards")
            .fetch_all(stores[0].pool())
            .await
            .unwrap();
    assert_eq!(referrers.len() + deleted, owners.len(), "{deleted} deleted");
    assert!(!referrers.is_empty(), "every delete won its race");
    for id in &referrers {
        let err = sqlx::query("DELETE FROM referral_users WHERE id = $1")
            .bind(id)
            .execute(stores[1].pool())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("foreign key"), "{err}");
    }
    assert_eq!(orphan_derived_rows(&stores[0]).await, 0);
    // The counts and the ranking agree with the activations.
    let wrong: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (
             SELECT a.referrer_id, count(*) AS n FROM referral_activations a GROUP BY a.referrer_id) t
          WHERE t.n <> (SELECT sum(c.n) FROM referral_count_shards c WHERE c.user_id = t.referrer_id)",
    )
    .fetch_one(stores[0].pool())
    .await
    .unwrap();
    assert_eq!(wrong, 0);
}

/// A database with users, activations and events from before the parallel
/// writes (migration 20261130020001): counts are kept, and new event ids
/// come after the old ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrading_to_parallel_writes_keeps_counts_and_event_order() {
    let _gate = SERVER.read().await;
    let Some(connect) = common::create_database().await else {
        return;
    };
    let store = PgStore::connect_with(common::test_options(connect))
        .await
        .unwrap();
    let before = Migrator::new(MigrationsUpTo(20261123000004)).await.unwrap();
    before.run(store.pool()).await.unwrap();
    let rng = SeededRandom::new(24);
    let (alice, bob, carol) = (
        register(&store, &rng, 1).await,
        register(&store, &rng, 2).await,
        register(&store, &rng, 3).await,
    );
    for fan in [&bob, &carol] {
        assert_eq!(
            activate_raw(store.pool(), fan, &alice).await.unwrap(),
            "activated"
        );
    }
    let old: Vec<i64> = sqlx::query_scalar("SELECT id FROM referral_events ORDER BY id")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(old.len(), 5);

    store.migrate().await.unwrap();
    let profile = store.profile(alice.id, 10).await.unwrap().unwrap();
    assert_eq!(profile.referral_count, 2);
    let dave = register(&store, &rng, 4).await;
    assert_eq!(
        activate(&store, &dave, &alice).await,
        ActivationOutcome::Activated { referrer: alice.id }
    );
    assert_eq!(
        store
            .profile(alice.id, 10)
            .await
            .unwrap()
            .unwrap()
            .referral_count,
        3
    );
    let events = store.events_after(None, 100).await.unwrap();
    let ids: Vec<u64> = events.iter().map(|e| e.id.0).collect();
    assert_eq!(ids.len(), 7);
    assert_eq!(
        &ids[..5],
        old.iter().map(|&i| i as u64).collect::<Vec<_>>().as_slice()
    );
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let after_old = store.events_after(Some(events[4].id), 100).await.unwrap();
    assert_eq!(after_old, events[5..]);
}

// ---------------------------------------------------------------------------
// Rewards across processes (two pools), and the constraints that carry them
// ---------------------------------------------------------------------------

/// The worked example's policy (fixed 1000, 500 bp, cap 20000 RUB per 30
/// days, 30-day hold).
fn reward_policy() -> RewardPolicy {
    let mut policy = RewardPolicy::default();
    policy.referrer_fixed = 1000;
    policy.referrer_bp = BasisPoints::new(500).unwrap();
    policy.max_per_referrer = Some(20_000);
    policy
}

fn reward_ids(rng: &SeededRandom) -> NewRewardIds {
    [RewardId::generate(rng), RewardId::generate(rng)]
}

fn purchase(id: &str, user: UserId, amount: i64) -> NewConversion {
    NewConversion {
        id: ConversionId::parse(id).unwrap(),
        user: ConversionUser::Id(user),
        amount: Money::new(amount, Currency::RUB),
        kind: ConversionKind::default(),
        occurred_at: None,
    }
}

/// `referrer`'s non-voided referrer-side rewards, summed in SQL.
async fn referrer_total(store: &PgStore, referrer: UserId) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(amount), 0)::bigint FROM referral_rewards
          WHERE user_id = $1 AND kind <> 'welcome' AND status <> 'voided'",
    )
    .bind(referrer.as_uuid())
    .fetch_one(store.pool())
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pools_record_one_conversion_once() {
    let _gate = SERVER.read().await;
    let Some((a, b)) = two_stores().await else {
        return;
    };
    let stores = [a, b];
    let rng = SeededRandom::new(21);
    let alice = register(&stores[0], &rng, 1).await;
    let policy = reward_policy();
    for round in 0..10u64 {
        let bob = register(&stores[1], &rng, 100 + round).await;
        let out = stores[0]
            .activate_invite(bob.id, &alice.invite_code, &InvitePolicy::default(), t0())
            .await
            .unwrap();
        assert!(
            matches!(out, ActivationOutcome::Activated { .. }),
            "{out:?}"
        );
        let id = format!("order-{round}");
        let ids: Vec<NewRewardIds> = (0..12).map(|_| reward_ids(&rng)).collect();
        let results = race(12, |i| {
            let store = stores[i % 2].clone();
            let (conversion, ids, policy) =
                (purchase(&id, bob.id, 150_000), ids[i], policy.clone());
            async move {
                store
                    .record_conversion(&conversion, ids, &policy, t0())
                    .await
                    .unwrap()
            }
        })
        .await;
        let recorded: Vec<_> = results
            .iter()
            .filter_map(|r| match r {
                RecordOutcome::Recorded { rewards, .. } => Some(rewards.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(recorded.len(), 1, "round {round}: {results:?}");
        for r in &results {
            if let RecordOutcome::Existing { rewards, .. } = r {
                assert_eq!(rewards, &recorded[0], "round {round}");
            } else {
                assert!(matches!(r, RecordOutcome::Recorded { .. }), "{r:?}");
            }
        }
        let rewards: i64 =
            sqlx::query_scalar("SELECT count(*) FROM referral_rewards WHERE conversion_id = $1")
                .bind(&id)
                .fetch_one(stores[0].pool())
                .await
                .unwrap();
        // The first conversion of the first referee: fixed and percentage;
        // later rounds: the cap cuts, but never more than one set.
        assert!(rewards <= 2, "round {round}: {rewards} rewards");
        assert_eq!(rewards as usize, recorded[0].len(), "round {round}");
    }
    assert!(referrer_total(&stores[0], alice.id).await <= 20_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pools_never_pass_the_cap() {
    let _gate = SERVER.read().await;
    let Some((a, b)) = two_stores().await else {
        return;
    };
    let stores = [a, b];
    let rng = SeededRandom::new(22);
    let policy = reward_policy();
    for round in 0..5u64 {
        let alice = register(&stores[0], &rng, 1000 * (round + 1)).await;
        let mut referees = Vec::new();
        for i in 0..16 {
            let r = register(&stores[1], &rng, 1000 * (round + 1) + 1 + i).await;
            let out = stores[i as usize % 2]
                .activate_invite(r.id, &alice.invite_code, &InvitePolicy::default(), t0())
                .await
                .unwrap();
            assert!(
                matches!(out, ActivationOutcome::Activated { .. }),
                "{out:?}"
            );
            referees.push(r);
        }
        let ids: Vec<NewRewardIds> = (0..16).map(|_| reward_ids(&rng)).collect();
        // 16 referees' first orders of 50 000: 1000 + 2500 each, 56 000 in
        // all against a cap of 20 000.
        let results = race(16, |i| {
            let store = stores[i % 2].clone();
            let conversion = purchase(&format!("r{round}-{i}"), referees[i].id, 50_000);
            let (ids, policy) = (ids[i], policy.clone());
            async move {
                store
                    .record_conversion(&conversion, ids, &policy, t0())
                    .await
                    .unwrap()
            }
        })
        .await;
        let made: i64 = results
            .iter()
            .map(|r| match r {
                RecordOutcome::Recorded { rewards, .. } => {
                    rewards.iter().map(|r| r.amount.amount()).sum::<i64>()
                }
                other => panic!("{other:?}"),
            })
            .sum();
        assert_eq!(made, 20_000, "round {round}: the cap is reached exactly");
        assert_eq!(referrer_total(&stores[1], alice.id).await, 20_000);
        let balances = stores[0].balances(alice.id).await.unwrap().unwrap();
        assert_eq!(balances.len(), 1);
        assert_eq!(balances[0].pending, 20_000, "round {round}: {balances:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pools_approve_each_reward_once() {
    let _gate = SERVER.read().await;
    let Some((a, b)) = two_stores().await else {
        return;
    };
    let stores = [a, b];
    let rng = SeededRandom::new(23);
    let mut policy = reward_policy();
    policy.max_per_referrer = None;
    let alice = register(&stores[0], &rng, 1).await;
    let mut made = 0;
    for i in 0..60u64 {
        let r = register(&stores[1], &rng, 10 + i).await;
        let _ = stores[0]
            .activate_invite(r.id, &alice.invite_code, &InvitePolicy::default(), t0())
            .await
            .unwrap();
        let at = t0() + TimeDelta::microseconds(i64::try_from(i).unwrap());
        match stores[1]
            .record_conversion(
                &purchase(&format!("o{i}"), r.id, 10_000),
                reward_ids(&rng),
                &policy,
                at,
            )
            .await
            .unwrap()
        {
            RecordOutcome::Recorded { rewards, .. } => made += rewards.len(),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(made, 120);
    let later = t0() + TimeDelta::days(31);
    let results = race(8, |i| {
        let store = stores[i % 2].clone();
        async move {
            let mut mine = Vec::new();
            loop {
                let batch = match store
                    .approve_due_rewards(policy_hold(), later, 7)
                    .await
                    .unwrap()
                {
                    ApproveOutcome::Approved(batch) => batch,
                    other => panic!("{other:?}"),
                };
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|r| r.id));
            }
        }
    })
    .await;
    let all: Vec<RewardId> = results.into_iter().flatten().collect();
    let unique: HashSet<RewardId> = all.iter().copied().collect();
    assert_eq!(all.len(), 120, "each reward approved by exactly one call");
    assert_eq!(unique.len(), 120);
    let balances = stores[0].balances(alice.id).await.unwrap().unwrap();
    assert_eq!((balances[0].pending, balances[0].approved), (0, 60 * 1500));
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM referral_events WHERE kind = 'reward_approved'")
            .fetch_one(stores[0].pool())
            .await
            .unwrap();
    assert_eq!(events, 120);
}

fn policy_hold() -> Duration {
    RewardPolicy::default().hold
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reward_tables_refuse_what_breaks_a_rule() {
    let _gate = SERVER.read().await;
    let Some(store) = common::fresh_store().await else {
        return;
    };
    let rng = SeededRandom::new(24);
    let alice = register(&store, &rng, 1).await;
    let bob = register(&store, &rng, 2).await;
    let _ = store
        .activate_invite(bob.id, &alice.invite_code, &InvitePolicy::default(), t0())
        .await
        .unwrap();
    let out = store
        .record_conversion(
            &purchase("o1", bob.id, 150_000),
            reward_ids(&rng),
            &reward_policy(),
            t0(),
        )
        .await
        .unwrap();
    let RecordOutcome::Recorded { rewards, .. } = out else {
        panic!("{out:?}")
    };
    let sqlstate = |e: sqlx::Error| {
        e.as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.into_owned())
    };
    // The external id is unique.
    let dup = sqlx::query(
        "INSERT INTO referral_conversions (id, user_id, amount, currency, kind, occurred_at, recorded_at, qualified)
         VALUES ('o1', $1, 5, 'RUB', 'purchase', $2, $2, false)",
    )
    .bind(bob.id.as_uuid())
    .bind(t0())
    .execute(store.pool())
    .await
    .unwrap_err();
    assert_eq!(sqlstate(dup).as_deref(), Some("23505"));
    // Never more reversed than converted.
    let over =
        sqlx::query("UPDATE referral_conversions SET reversed_amount = 150001 WHERE id = 'o1'")
            .execute(store.pool())
            .await
            .unwrap_err();
    assert_eq!(sqlstate(over).as_deref(), Some("23514"));
    // A reward never grows past its original amount, and a clawback is negative.
    let grow =
        sqlx::query("UPDATE referral_rewards SET amount = original_amount + 1 WHERE id = $1")
            .bind(rewards[0].id.as_uuid())
            .execute(store.pool())
            .await
            .unwrap_err();
    assert_eq!(sqlstate(grow).as_deref(), Some("23514"));
    // A reversal id takes effect once.
    let again = sqlx::query(
        "INSERT INTO referral_reversals (conversion_id, id, amount, rewards, at) VALUES ('o1', 'r', 1, '{}', $1),
                ('o1', 'r', 1, '{}', $1)",
    )
    .bind(t0())
    .execute(store.pool())
    .await
    .unwrap_err();
    assert_eq!(sqlstate(again).as_deref(), Some("23505"));
    // Nothing of this changed the ledger.
    let ReverseOutcome::Reversed { conversion, .. } = store
        .reverse_conversion(
            &ConversionId::parse("o1").unwrap(),
            &ReversalId::parse("r").unwrap(),
            None,
            reward_ids(&rng),
            t0(),
        )
        .await
        .unwrap()
    else {
        panic!("reverse")
    };
    assert_eq!(conversion.reversed_amount, 150_000);
}

/// The outbox's check (one plpgsql function since migration 20261130090001,
/// two constraints before): each kind is written with its fields and refused
/// without any one of them, or with a field its kind must not have; an
/// unknown kind is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_refuses_events_without_their_fields() {
    let _gate = SERVER.read().await;
    let Some(store) = common::fresh_store().await else {
        return;
    };
    // Each kind, the fields it needs, and a field it must leave empty.
    let kinds: [(&str, &[&str], Option<&str>); 12] = [
        (
            "user_registered",
            &["phone", "invite_code"],
            Some("referrer_id"),
        ),
        (
            "invite_activated",
            &["invite_code", "referrer_id"],
            Some("phone"),
        ),
        (
            "conversion_recorded",
            &["conversion_id", "amount", "currency"],
            None,
        ),
        (
            "conversion_reversed",
            &["conversion_id", "reversal_id", "amount"],
            None,
        ),
        (
            "reward_created",
            &["reward_id", "reward_kind", "amount", "currency"],
            None,
        ),
        (
            "reward_adjusted",
            &["reward_id", "amount", "currency"],
            None,
        ),
        ("reward_approved", &["reward_id"], None),
        ("reward_voided", &["reward_id"], None),
        ("reward_paid", &["reward_id", "payout_ref"], None),
        ("user_blocked", &["operator_id", "reason"], None),
        ("user_unblocked", &["operator_id"], None),
        (
            "reward_voided_by_operator",
            &["reward_id", "operator_id", "reason"],
            None,
        ),
    ];
    let value = |column: &str| match column {
        "phone" => "'+79990000001'",
        "invite_code" => "'AAAAAA'",
        "referrer_id" | "reward_id" | "operator_id" => "gen_random_uuid()",
        "amount" => "1",
        "currency" => "'RUB'",
        _ => "'x'",
    };
    let next_id = std::sync::atomic::AtomicI64::new(1);
    let insert = |kind: &str, columns: &[&str]| {
        let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let names: String = columns.iter().map(|c| format!(", {c}")).collect();
        let values: String = columns.iter().map(|c| format!(", {}", value(c))).collect();
        let sql = format!(
            "INSERT INTO referral_events (id, at, kind, user_id{names})
             VALUES ({id}, now(), '{kind}', gen_random_uuid(){values})"
        );
        let pool = store.pool().clone();
        async move { sqlx::query(&sql).execute(&pool).await }
    };
    let refused = |result: Result<_, sqlx::Error>| {
        let error = result.expect_err("refused");
        let code = error.as_database_error().and_then(|d| d.code());
        assert_eq!(code.as_deref(), Some("23514"), "{error}");
    };
    for (kind, needed, forbidden) in kinds {
        insert(kind, needed)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        for missing in needed {
            let fewer: Vec<&str> = needed.iter().copied().filter(|c| c != missing).collect();
            refused(insert(kind, &fewer).await);
        }
        if let Some(forbidden) = forbidden {
            let more: Vec<&str> = needed.iter().copied().chain([forbidden]).collect();
            refused(insert(kind, &more).await);
        }
    }
    refused(insert("reward_lost", &["reward_id"]).await);
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM referral_events")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(written, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reward_functions_never_scan_whole_tables() {
    let _gate = SERVER.read().await;
    let Some(store) = common::fresh_store().await else {
        return;
    };
    let rng = SeededRandom::new(25);
    let alice = register(&store, &rng, 1).await;
    let policy = reward_policy();
    let mut tx = store.pool().begin().await.unwrap();
    let before = seq_scans(&mut tx).await;
    for i in 0..12u64 {
        let u = UserId::generate(&rng);
        sqlx::query("SELECT * FROM referral_register($1, $2, $3, $4)")
            .bind(phone(100 + i).to_e164())
            .bind(u.as_uuid())
            .bind(t0())
            .bind(vec![InviteCode::generate(&rng).as_str().to_owned()])
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        let ids = reward_ids(&rng);
        sqlx::query(
            "SELECT * FROM referral_activate_welcome($1, $2, $3, 3600000000, 10, $4, 300, 'RUB')",
        )
        .bind(u.as_uuid())
        .bind(alice.invite_code.as_str())
        .bind(t0())
        .bind(ids[0].as_uuid())
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        let ids: Vec<uuid::Uuid> = reward_ids(&rng).iter().map(RewardId::as_uuid).collect();
        let order = format!("o{i}");
        sqlx::query(
            "SELECT * FROM referral_record_conversion($1, $2, NULL, 150000, 'RUB', 'purchase', NULL, $3, $4,
                 $5, 500, 31536000000000, 0, 'RUB', $6, 2592000000000)",
        )
        .bind(&order)
        .bind(u.as_uuid())
        .bind(t0())
        .bind(&ids)
        .bind(policy.referrer_fixed)
        .bind(policy.max_per_referrer)
        .fetch_all(&mut *tx)
        .await
        .unwrap();
        let ids: Vec<uuid::Uuid> = reward_ids(&rng).iter().map(RewardId::as_uuid).collect();
        sqlx::query("SELECT * FROM referral_reverse_conversion($1, 'r1', 50000, $2, $3)")
            .bind(&order)
            .bind(&ids)
            .bind(t0())
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        sqlx::query("SELECT * FROM referral_approve_due_rewards(0, $1, 2)")
            .bind(t0())
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        sqlx::query("SELECT * FROM referral_mark_reward_paid($1, 'p1', $2)")
            .bind(ids[0])
            .bind(t0())
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    }
    let after = seq_scans(&mut tx).await;
    let scans = scans_between(&before, &after);
    assert!(scans.is_empty(), "sequential scans: {scans:?}");
    tx.rollback().await.unwrap();
}

/// The plan of `statement` with its parameters `$1, $2, …` replaced by
/// these SQL literals, as text.
async fn explain(store: &PgStore, statement: &str, literals: &[&str]) -> String {
    let mut sql = format!("EXPLAIN {statement}");
    for (i, literal) in literals.iter().enumerate().rev() {
        sql = sql.replace(&format!("${}", i + 1), literal);
    }
    sqlx::query_scalar::<_, String>(&sql)
        .fetch_all(store.pool())
        .await
        .unwrap()
        .join("\n")
}

/// The generic plans of the queries of plpgsql function `function` (each
/// `RETURN QUERY` of its body, in order), as the function runs them: its
/// body's parameters `p_*` become `$n`, the function's own settings (such
/// as `plan_cache_mode = force_generic_plan`) are set for the transaction,
/// and each query is prepared and explained with `literals` as arguments.
async fn function_plans(store: &PgStore, function: &str, literals: &[&str]) -> Vec<String> {
    let (body, names, types, config): (String, Vec<String>, String, Option<Vec<String>>) =
        sqlx::query_as(
            "SELECT p.prosrc, p.proargnames[1:p.pronargs]::text[],
                    pg_get_function_identity_arguments(p.oid), p.proconfig
               FROM pg_proc p WHERE p.proname = $1",
        )
        .bind(function)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(names.len(), literals.len(), "{function}: {names:?}");
    // The argument types, without the names.
    let types: Vec<String> = types
        .split(", ")
        .map(|arg| arg.split_once(' ').map_or(arg, |(_, t)| t).to_owned())
        .collect();
    let mut tx = store.pool().begin().await.unwrap();
    for setting in config.unwrap_or_default() {
        let (name, value) = setting.split_once('=').unwrap();
        sqlx::query("SELECT set_config($1, $2, true)")
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    // Longest name first, so that `p_after` is not replaced inside
    // `p_after_at`.
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(names[i].len()));
    let mut plans = Vec::new();
    for (n, part) in body.split("RETURN QUERY").skip(1).enumerate() {
        let mut query = part.split(';').next().unwrap().to_owned();
        for &i in &order {
            query = query.replace(&names[i], &format!("${}", i + 1));
        }
        assert!(
            !query.contains("p_"),
            "{function}: a parameter left in {query}"
        );
        sqlx::raw_sql(&format!("PREPARE q{n} ({}) AS {query}", types.join(", ")))
            .execute(&mut *tx)
            .await
            .unwrap();
        let plan: Vec<String> =
            sqlx::query_scalar(&format!("EXPLAIN EXECUTE q{n} ({})", literals.join(", ")))
                .fetch_all(&mut *tx)
                .await
                .unwrap();
        // Prepared statements outlive the transaction.
        sqlx::raw_sql(&format!("DEALLOCATE q{n}"))
            .execute(&mut *tx)
            .await
            .unwrap();
        plans.push(plan.join("\n"));
    }
    assert!(!plans.is_empty(), "{function} has no RETURN QUERY");
    tx.rollback().await.unwrap();
    plans
}

/// The operator reads seek indexes, so their cost grows with the page (or
/// the window), not with the table: on 3 000 analysed users (and rewards),
/// the generic plans the functions behind the search by phone prefix and by
/// code, the windowed leaderboard, the referral pages and the profile run
/// on (migrations 20261130100001-2), and the export batches, use index
/// scans and no
/// sequential scan; the all-time leaderboard fetches no more rank rows than
/// it lists; and block, unblock and void scan no table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_reads_seek_indexes() {
    use referral_sqlx::operator_sql;
    let _gate = SERVER.read().await;
    let Some(store) = common::fresh_store().await else {
        return;
    };
    let pool = store.pool();
    // 3 000 users, each referred by one of the first 100 (a day apart), and
    // a ranking of all of them.
    sqlx::query(
        "INSERT INTO referral_users (id, phone, invite_code, created_at)
         SELECT md5(i::text)::uuid, '+7999' || lpad(i::text, 7, '0'),
                upper('Z' || lpad(to_hex(i), 5, '0')), $1
           FROM generate_series(1, 3000) AS i",
    )
    .bind(t0())
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO referral_activations (invitee_id, referrer_id, activated_at)
         SELECT md5(i::text)::uuid, md5((i % 100 + 1)::text)::uuid,
                $1 + (i % 300) * interval '1 day'
           FROM generate_series(101, 3000) AS i;
         ",
    )
    .bind(t0())
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO referral_referrer_rank (user_id, referrals, latest)
         SELECT md5(i::text)::uuid, i % 50 + 1, $1 FROM generate_series(1, 3000) AS i",
    )
    .bind(t0())
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO referral_rewards (id, user_id, kind, currency, amount, original_amount,
                                       status, created_at, approved_at)
         SELECT md5('r' || i)::uuid, md5(i::text)::uuid, 'welcome', 'RUB', 300, 300,
                'approved', $1 + i * interval '1 minute', $1 + i * interval '1 minute'
           FROM generate_series(1, 3000) AS i",
    )
    .bind(t0())
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(pool).await.unwrap();
    // The search, the windowed board and the referral pages run in plpgsql
    // functions on forced generic plans (migration 20261130100001): those
    // plans, made without the arguments, must seek.
    let nil = "'00000000-0000-0000-0000-000000000000'::uuid";
    let since = format!(
        "'{}'::timestamptz",
        (t0() + TimeDelta::days(290)).to_rfc3339()
    );
    for plan in [
        function_plans(
            &store,
            "referral_user_search",
            &["'+79990001'", "'+79990002'", "''", "NULL", "11"],
        )
        .await,
        function_plans(
            &store,
            "referral_user_search",
            &["NULL", "NULL", "'+79990001234'", "'Z00ABC'", "11"],
        )
        .await,
    ] {
        let [plan] = plan.as_slice() else {
            panic!("{plan:?}")
        };
        assert!(plan.contains("referral_users_phone_c_idx"), "{plan}");
        assert!(plan.contains("referral_users_invite_code_key"), "{plan}");
        assert!(!plan.contains("Seq Scan"), "{plan}");
        assert!(plan.contains("$1"), "not a generic plan: {plan}");
    }
    let plans = function_plans(&store, "referral_window_board", &[&since, "10"]).await;
    let [plan] = plans.as_slice() else {
        panic!("{plans:?}")
    };
    assert!(plan.contains("referral_activations_at_idx"), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");
    assert!(plan.contains("$1"), "not a generic plan: {plan}");
    let owner = "md5('7')::uuid";
    let plans = function_plans(
        &store,
        "referral_referral_page",
        &[owner, "11", &since, nil],
    )
    .await;
    assert_eq!(plans.len(), 2, "first page, and after a cursor");
    let profile = function_plans(&store, "referral_profile", &[owner, "11"]).await;
    for plan in plans.iter().chain(&profile) {
        assert!(plan.contains("referral_activations_referrer_idx"), "{plan}");
        assert!(!plan.contains("Seq Scan"), "{plan}");
        assert!(plan.contains("$1"), "not a generic plan: {plan}");
    }

    let plan = explain(
        &store,
        &operator_sql::export_referrals_query(true),
        &["100", &since, nil],
    )
    .await;
    assert!(plan.contains("referral_activations_at_idx"), "{plan}");
    assert!(!plan.contains("Seq Scan on referral_activations"), "{plan}");
    let plan = explain(
        &store,
        &operator_sql::export_rewards_query(true),
        &["100", &since, nil],
    )
    .await;
    assert!(plan.contains("referral_rewards_created_idx"), "{plan}");
    assert!(!plan.contains("Seq Scan on referral_rewards"), "{plan}");

    // The all-time board reads the ranking in order: 10 entries, not 3 000.
    const TABLE_READS: &str = "SELECT relname::text, seq_scan, coalesce(idx_tup_fetch, 0)
                                 FROM pg_stat_xact_user_tables
                                WHERE relname LIKE 'referral%' ORDER BY relname";
    let reads = |rows: &[(String, i64, i64)], before: &[(String, i64, i64)], table: &str| {
        let now = rows
            .iter()
            .find(|r| r.0 == table)
            .map_or((0, 0), |r| (r.1, r.2));
        let was = before
            .iter()
            .find(|r| r.0 == table)
            .map_or((0, 0), |r| (r.1, r.2));
        (now.0 - was.0, now.1 - was.1)
    };
    let mut tx = pool.begin().await.unwrap();
    let before: Vec<(String, i64, i64)> = sqlx::query_as(TABLE_READS)
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    let board: Vec<(uuid::Uuid, i64)> =
        sqlx::query_as("SELECT DISTINCT user_id, referrals FROM referral_leaderboard(10)")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    assert_eq!(board.len(), 10);
    assert!(board.iter().all(|(_, n)| *n == 50), "{board:?}");
    let after: Vec<(String, i64, i64)> = sqlx::query_as(TABLE_READS)
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    let (seq, fetched) = reads(&after, &before, "referral_referrer_rank");
    assert_eq!(seq, 0);
    assert!(
        fetched <= 11,
        "the board fetched {fetched} rank rows for 10"
    );

    // Block, unblock and void scan no table.
    let before: Vec<(String, i64, i64)> = sqlx::query_as(TABLE_READS)
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    for i in 1..=12 {
        let user = sqlx::query_scalar::<_, uuid::Uuid>("SELECT md5($1::text)::uuid")
            .bind(i.to_string())
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        for call in [
            "SELECT outcome FROM referral_block_user($1, 'x', $1, $2)",
            "SELECT outcome FROM referral_unblock_user($1, $1, $2)",
            "SELECT outcome FROM referral_void_reward($1, 'x', $1, $2)",
        ] {
            sqlx::query(call)
                .bind(user)
                .bind(t0())
                .fetch_all(&mut *tx)
                .await
                .unwrap();
        }
    }
    let after: Vec<(String, i64, i64)> = sqlx::query_as(TABLE_READS)
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    let scans: Vec<&str> = after
        .iter()
        .filter(|r| reads(&after, &before, &r.0).0 > 0)
        .map(|r| r.0.as_str())
        .collect();
    assert!(scans.is_empty(), "sequential scans: {scans:?}");
    tx.rollback().await.unwrap();
}

/// The user search, the windowed leaderboard, the referral pages
/// (migration 20261130100001) and the profile (20261130100002) are planned
/// once per session: the statements
/// `PgStore` sends run on their cached generic plans after the first calls
/// (before, on a large database PostgreSQL planned their `LIMIT $n` queries
/// afresh on every call), and the functions behind them keep one generic
/// plan per session, with sequential scans, JIT and parallel workers off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_reads_are_planned_once_per_session() {
    use referral_core::store::OperatorStore as _;
    let _gate = SERVER.read().await;
    let Some(connect) = common::create_database().await else {
        return;
    };
    // One connection: every call below uses the same session.
    let store = PgStore::connect_with(common::test_options(connect).max_connections(1))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let rng = SeededRandom::new(37);
    let alice = register(&store, &rng, 1).await;
    let mut friends = Vec::new();
    for n in 2..=6 {
        let friend = register(&store, &rng, n).await;
        let outcome = store
            .activate_invite(
                friend.id,
                &alice.invite_code,
                &InvitePolicy::default(),
                t0() + TimeDelta::seconds(i64::try_from(n).unwrap()),
            )
            .await
            .unwrap();
        assert!(
            matches!(outcome, ActivationOutcome::Activated { .. }),
            "{outcome:?}"
        );
        friends.push(friend);
    }
    let prefix = referral_core::UserQuery::parse("+7999").unwrap();
    let code = referral_core::UserQuery::parse(alice.invite_code.as_str()).unwrap();
    for _ in 0..12 {
        let page = store.search_users(&prefix, None, 4).await.unwrap();
        assert_eq!(page.items.len(), 4);
        let next = store.search_users(&prefix, page.next, 4).await.unwrap();
        assert_eq!(next.items.len(), 2);
        let found = store.search_users(&code, None, 4).await.unwrap();
        assert_eq!(found.items.len(), 1);
        assert_eq!(found.items[0].id, alice.id);
        let board = store.leaderboard(Some(t0()), 3).await.unwrap();
        assert_eq!(board.len(), 1);
        assert_eq!(board[0].referrals, 5);
        let first = store.referrals(alice.id, None, 3).await.unwrap().unwrap();
        assert_eq!(first.items.len(), 3);
        let second = store
            .referrals(alice.id, first.next, 3)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(second.items.len(), 2);
        assert_eq!(second.items[0].user, friends[3].id);
        let profile = store.profile(alice.id, 3).await.unwrap().unwrap();
        assert_eq!(profile.referral_count, 5);
        assert_eq!(
            profile.referrals,
            [friends[0].phone, friends[1].phone, friends[2].phone]
        );
        let friend = store.profile(friends[0].id, 3).await.unwrap().unwrap();
        assert_eq!(friend.activated_invite_code, Some(alice.invite_code));
        assert!(friend.referrals.is_empty());
    }
    for (function, calls) in [
        ("referral_user_search", 36),
        ("referral_window_board", 12),
        ("referral_referral_page", 24),
        ("referral_profile", 24),
    ] {
        let plans: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements
              WHERE statement LIKE 'SELECT * FROM ' || $1 || '(%'",
        )
        .bind(function)
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(plans.len(), 1, "{function}: one statement for every call");
        let (generic, custom) = plans[0];
        assert!(
            generic >= calls - 5 && custom <= 5,
            "{function}: {generic} generic, {custom} custom plans"
        );
        let config: Vec<String> =
            sqlx::query_scalar("SELECT unnest(proconfig) FROM pg_proc WHERE proname = $1")
                .bind(function)
                .fetch_all(store.pool())
                .await
                .unwrap();
        for setting in [
            "plan_cache_mode=force_generic_plan",
            "enable_seqscan=off",
            "jit=off",
            "max_parallel_workers_per_gather=0",
        ] {
            assert!(
                config.iter().any(|c| c == setting),
                "{function}: {setting}: {config:?}"
            );
        }
    }
    store.pool().close().await;
}

/// A rewards page is planned once per session (migration 20261130080001):
/// the statement `PgStore::rewards` sends runs on its cached generic plan
/// after the first calls (before, PostgreSQL planned the page's `LIMIT $2`
/// query afresh on every call, ~4× its execution time), and the function
/// behind it keeps one generic plan per session, with sequential scans and
/// JIT off (a generic plan's row guess would otherwise price a 10-row page
/// past `jit_above_cost` and compile it on every call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reward_pages_are_planned_once_per_session() {
    let _gate = SERVER.read().await;
    let Some(connect) = common::create_database().await else {
        return;
    };
    // One connection: every call below uses the same session.
    let store = PgStore::connect_with(common::test_options(connect).max_connections(1))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let rng = SeededRandom::new(31);
    let alice = register(&store, &rng, 1).await;
    sqlx::query(
        "INSERT INTO referral_rewards (id, user_id, kind, currency, amount, original_amount,
                                       status, created_at, approved_at)
         SELECT md5('r' || i)::uuid, $1, 'welcome', 'RUB', 300, 300,
                'approved', $2 + i * interval '1 minute', $2 + i * interval '1 minute'
           FROM generate_series(1, 30) AS i",
    )
    .bind(alice.id.as_uuid())
    .bind(t0())
    .execute(store.pool())
    .await
    .unwrap();
    for _ in 0..12 {
        let first = store.rewards(alice.id, None, 10).await.unwrap().unwrap();
        assert_eq!(first.items.len(), 10);
        let second = store
            .rewards(alice.id, first.next, 10)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(second.items.len(), 10);
        assert!(second.items[0].created_at < first.items[9].created_at);
    }
    let plans: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements
          WHERE statement LIKE 'SELECT * FROM referral_reward_page(%'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(plans.len(), 1, "one statement for both kinds of page");
    let (generic, custom) = plans[0];
    assert!(
        generic >= 19 && custom <= 5,
        "{generic} generic, {custom} custom plans"
    );
    let config: Vec<String> = sqlx::query_scalar(
        "SELECT unnest(proconfig) FROM pg_proc WHERE proname = 'referral_reward_page'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    for setting in [
        "plan_cache_mode=force_generic_plan",
        "enable_seqscan=off",
        "jit=off",
    ] {
        assert!(config.iter().any(|c| c == setting), "{setting}: {config:?}");
    }
    store.pool().close().await;
}
