//! `PgStore` through a real PgBouncer in transaction mode
//! (`PgStoreOptions::transaction_pooler`): the whole conformance kit, and the
//! session settings that can no longer be startup options. Needs
//! `DATABASE_URL` and `REFERRAL_TEST_PGBOUNCER_URL` (scripts/test.sh starts
//! PgBouncer 1.18 in front of its throwaway server); without them the tests
//! are skipped, except under `CI` where they fail.

mod common;

use std::time::Duration;

use chrono::DateTime;
use referral_core::random::SeededRandom;
use referral_core::store::{ActivationOutcome, NewUser, ReferralStore, RegisterOutcome};
use referral_core::{InviteCode, InvitePolicy, StoreError, User, UserId};
use referral_sqlx::PgStore;

referral_core::store_conformance_tests!(common::fresh_pooled_store);
referral_core::reward_conformance_tests!(common::fresh_pooled_store);
referral_core::operator_conformance_tests!(common::fresh_pooled_store);

async fn register(store: &PgStore, rng: &SeededRandom, n: u64) -> User {
    let phone = format!("+7999{n:07}").parse().expect("a valid phone");
    let new = NewUser {
        id: UserId::generate(rng),
        created_at: DateTime::from_timestamp(1_800_000_000, 0).expect("a time"),
    };
    match store
        .register(&phone, new, &[InviteCode::generate(rng)])
        .await
        .unwrap()
    {
        RegisterOutcome::Created(u) | RegisterOutcome::Existing(u) => u,
        other => panic!("register: {other:?}"),
    }
}

/// The statement timeout and READ COMMITTED hold through the pooler (set in
/// each call's transaction), and migrating through it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_and_isolation_hold_through_the_pooler() {
    let Some(options) = common::pooled_options().await else {
        return;
    };
    let direct = PgStore::connect_with(
        common::test_options(options.get_connect_options().clone()).transaction_pooler(true),
    )
    .await
    .unwrap();
    let err = direct.migrate().await.unwrap_err();
    assert!(matches!(err, StoreError::Internal(_)), "{err:?}");

    let store = PgStore::connect_with(
        options
            .statement_timeout(Some(Duration::from_millis(300)))
            .max_connections(4),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let rng = SeededRandom::new(1);
    let (alice, bob) = (
        register(&store, &rng, 1).await,
        register(&store, &rng, 2).await,
    );
    // The database's default says serializable: the store's calls still run
    // READ COMMITTED (the functions would refuse otherwise).
    let db = store
        .pool()
        .connect_options()
        .get_database()
        .unwrap()
        .to_owned();
    let admin = common::server_options().unwrap().database(&db);
    let admin = sqlx::PgPool::connect_with(admin).await.unwrap();
    sqlx::query(&format!(
        "ALTER DATABASE \"{db}\" SET default_transaction_isolation = 'serializable'"
    ))
    .execute(&admin)
    .await
    .unwrap();
    // Someone holds bob's user lock (a stuck transaction, on a direct
    // connection): bob's activation gives up after the statement timeout.
    let mut stuck = admin.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('referral/user/' || $1::text, 0))")
        .bind(bob.id.as_uuid())
        .execute(&mut *stuck)
        .await
        .unwrap();
    let err = store
        .activate_invite(
            bob.id,
            &alice.invite_code,
            &InvitePolicy::default(),
            DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    stuck.rollback().await.unwrap();
    let outcome = store
        .activate_invite(
            bob.id,
            &alice.invite_code,
            &InvitePolicy::default(),
            DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(outcome, ActivationOutcome::Activated { referrer: alice.id });
}

/// A call PostgreSQL aborts to break a deadlock is sent again through the
/// pooler too (each attempt in a transaction of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_aborted_by_a_deadlock_is_retried_through_the_pooler() {
    let Some(options) = common::pooled_options().await else {
        return;
    };
    let store = PgStore::connect_with(options).await.unwrap();
    store.migrate().await.unwrap();
    let db = store
        .pool()
        .connect_options()
        .get_database()
        .unwrap()
        .to_owned();
    let direct = common::server_options().unwrap().database(&db);
    common::deadlocked_call_is_retried(&store, &direct).await;
}
