//! Counts the round trips and transactions of `PgStore`'s hot operations
//! through a protocol-reading proxy (see `referral_benches::proxy`), against
//! the same statements sent straight through sqlx. Needs `DATABASE_URL`;
//! without it the test says so and passes, or fails when `CI` is set.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use referral_benches::pg;
use referral_benches::proxy::{Proxy, Snapshot};
use referral_core::InvitePolicy;
use referral_core::otp::{OtpCode, OtpGuess, OtpKey, OtpLength, OtpPolicy};
use referral_core::store::{ActivationOutcome, OtpStore, ReferralStore, VerifyOutcome};
use referral_sqlx::{PgStore, PgStoreOptions};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time")
}

/// Runs `op` once to warm the connection and the statement cache, then
/// again, counting that second run (and the pool's release ping after it).
async fn count<F, Fut>(proxy: &Proxy, op: F) -> Snapshot
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    op(0).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let _ = proxy.counts.take();
    op(1).await;
    // sqlx pings the connection as it goes back to the pool, in a task of its
    // own after the caller has its answer: let it land in this count.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    proxy.counts.take()
}

/// A fresh bench database on the server of `url`: its options, a counting
/// proxy in front of the server, and options reaching the database through
/// the proxy.
async fn proxied(url: &str) -> (PgConnectOptions, Proxy, PgConnectOptions) {
    let options = pg::fresh_database(url).await.expect("a bench database");
    let upstream: SocketAddr = {
        let host = options.get_host();
        let host = if host == "localhost" {
            "127.0.0.1"
        } else {
            host
        };
        format!("{host}:{}", options.get_port())
            .parse()
            .expect("DATABASE_URL's host must be an IP address for the proxy")
    };
    let proxy = Proxy::start(upstream).await.expect("a proxy");
    let via_proxy = PgConnectOptions::from_str(url)
        .expect("a PostgreSQL URL")
        .host("127.0.0.1")
        .port(proxy.addr.port())
        .database(options.get_database().expect("a database name"))
        .ssl_mode(PgSslMode::Disable);
    (options, proxy, via_proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_operations_cost_one_round_trip() {
    let Some(url) = pg::test_database_url("round_trips") else {
        return;
    };
    let (options, proxy, via_proxy) = proxied(&url).await;

    // 1..=100 users; 11..=100 activate user 1's code below, 2..=10 have codes.
    let admin = sqlx::PgPool::connect_with(options.clone()).await.unwrap();
    pg::insert_users(&admin, 1, 100, t0()).await.unwrap();
    pg::insert_activations(&admin, 1, 2, 5, t0()).await.unwrap();
    let key = OtpKey::from_bytes(&[7; 32]).unwrap();
    pg::insert_codes(&admin, &key, 50, 10, t0()).await.unwrap();

    let store = Arc::new(
        PgStore::connect_with(
            PgStoreOptions::from_connect_options(via_proxy.clone()).max_connections(1),
        )
        .await
        .unwrap(),
    );
    let raw = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect_with(via_proxy)
        .await
        .unwrap();

    let profile = count(&proxy, |_| {
        let store = Arc::clone(&store);
        async move {
            let p = store.profile(pg::user_id(1), 100).await.unwrap();
            assert!(p.is_some());
        }
    })
    .await;
    let activate = count(&proxy, |i| {
        let store = Arc::clone(&store);
        async move {
            let out = store
                .activate_invite(
                    pg::user_id(20 + i),
                    &pg::invite_code(1),
                    &InvitePolicy::default(),
                    t0(),
                )
                .await
                .unwrap();
            assert!(
                matches!(out, ActivationOutcome::Activated { .. }),
                "{out:?}"
            );
        }
    })
    .await;
    let code = OtpCode::parse(pg::BENCH_OTP, OtpLength::default()).unwrap();
    let verify = count(&proxy, |i| {
        let store = Arc::clone(&store);
        let (key, code) = (&key, &code);
        async move {
            let phone = pg::phone(50 + i);
            let out = store
                .verify_otp(
                    &phone,
                    &OtpGuess::new(key, &phone, code),
                    &OtpPolicy::default(),
                    t0(),
                )
                .await
                .unwrap();
            assert_eq!(out, VerifyOutcome::Verified);
        }
    })
    .await;
    let raw_profile = count(&proxy, |_| {
        let raw = raw.clone();
        async move {
            sqlx::query("SELECT phone FROM referral_users WHERE id = $1")
                .bind(pg::user_id(1).as_uuid())
                .fetch_one(&raw)
                .await
                .unwrap();
        }
    })
    .await;

    println!("operation          round trips  of which pings  transactions  statements");
    for (name, s) in [
        ("profile", profile),
        ("activate_invite", activate),
        ("verify_otp", verify),
        ("raw SELECT (floor)", raw_profile),
    ] {
        println!(
            "{name:<18} {:>11}  {:>14}  {:>12}  {:>10}",
            s.round_trips, s.pings, s.transactions, s.statements
        );
    }
    pg::drop_database(&url, &options).await.unwrap();

    // The floor: one statement through a bare sqlx pool is one statement
    // round trip, plus the ping sqlx 0.8 always sends when the connection
    // goes back to the pool (after the caller has its answer).
    let floor_pings = raw_profile.pings;
    assert_eq!(raw_profile.round_trips - floor_pings, 1, "{raw_profile:?}");
    // One statement, one transaction, and no ping beyond the floor's.
    for (name, s) in [
        ("profile", profile),
        ("activate_invite", activate),
        ("verify_otp", verify),
    ] {
        assert_eq!(s.statements, 1, "{name}: {s:?}");
        assert_eq!(s.round_trips - s.pings, 1, "{name}: {s:?}");
        assert_eq!(s.transactions, 1, "{name}: {s:?}");
        assert!(
            s.pings <= floor_pings,
            "{name} pings more than sqlx's floor: {s:?}"
        );
    }
}

/// The reward operations, each one statement, one transaction, one round
/// trip (plus sqlx's release ping, as the floor above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reward_operations_cost_one_round_trip() {
    use referral_core::store::{
        ApproveOutcome, PayOutcome, RecordOutcome, ReverseOutcome, RewardStore, WelcomeReward,
    };
    use referral_core::{
        BasisPoints, ConversionId, ConversionKind, ConversionUser, Currency, Money, NewConversion,
        PayoutRef, ReversalId, RewardId, RewardPolicy, SeededRandom,
    };
    use std::sync::Mutex;

    let Some(url) = pg::test_database_url("round_trips") else {
        return;
    };
    let (options, proxy, via_proxy) = proxied(&url).await;
    // 1..=100 users; 2..=50 activated user 1's code.
    let admin = sqlx::PgPool::connect_with(options.clone()).await.unwrap();
    pg::insert_users(&admin, 1, 100, t0()).await.unwrap();
    pg::insert_activations(&admin, 1, 2, 50, t0())
        .await
        .unwrap();
    let store = Arc::new(
        PgStore::connect_with(PgStoreOptions::from_connect_options(via_proxy).max_connections(1))
            .await
            .unwrap(),
    );
    let rng = Arc::new(SeededRandom::new(7));
    let ids = {
        let rng = Arc::clone(&rng);
        move || [RewardId::generate(&*rng), RewardId::generate(&*rng)]
    };
    let mut policy = RewardPolicy::default();
    policy.referrer_fixed = 1000;
    policy.referrer_bp = BasisPoints::new(500).unwrap();
    policy.max_per_referrer = Some(1_000_000);
    let policy = Arc::new(policy);
    let order = |i: u64| ConversionId::parse(&format!("order-{i}")).unwrap();
    let made = Arc::new(Mutex::new(Vec::<RewardId>::new()));
    // The bench activations are stamped t0 + k µs; conversions come later.
    let later = t0() + chrono::TimeDelta::days(1);

    let record = count(&proxy, |i| {
        let (store, policy, ids, made) = (
            Arc::clone(&store),
            Arc::clone(&policy),
            ids.clone(),
            Arc::clone(&made),
        );
        let conversion = NewConversion {
            id: order(i),
            user: ConversionUser::Id(pg::user_id(2 + i)),
            amount: Money::new(150_000, Currency::RUB),
            kind: ConversionKind::default(),
            occurred_at: None,
        };
        async move {
            match store
                .record_conversion(&conversion, ids(), &policy, later)
                .await
                .unwrap()
            {
                RecordOutcome::Recorded { rewards, .. } => {
                    assert_eq!(rewards.len(), 2);
                    made.lock().unwrap().extend(rewards.iter().map(|r| r.id));
                }
                other => panic!("{other:?}"),
            }
        }
    })
    .await;
    let reverse = count(&proxy, |i| {
        let (store, ids) = (Arc::clone(&store), ids.clone());
        async move {
            let out = store
                .reverse_conversion(
                    &order(i),
                    &ReversalId::parse("r1").unwrap(),
                    Some(50_000),
                    ids(),
                    later,
                )
                .await
                .unwrap();
            assert!(matches!(out, ReverseOutcome::Reversed { .. }), "{out:?}");
        }
    })
    .await;
    let approve = count(&proxy, |_| {
        let store = Arc::clone(&store);
        async move {
            let ApproveOutcome::Approved(batch) = store
                .approve_due_rewards(std::time::Duration::ZERO, later, 2)
                .await
                .unwrap()
            else {
                panic!("approve")
            };
            assert_eq!(batch.len(), 2);
        }
    })
    .await;
    let pay = count(&proxy, |i| {
        let (store, made) = (Arc::clone(&store), Arc::clone(&made));
        async move {
            let id = made.lock().unwrap()[usize::try_from(i).unwrap()];
            let out = store
                .mark_reward_paid(id, &PayoutRef::parse("payout-1").unwrap(), later)
                .await
                .unwrap();
            assert!(matches!(out, PayOutcome::Paid(_)), "{out:?}");
        }
    })
    .await;
    let page = count(&proxy, |_| {
        let store = Arc::clone(&store);
        async move {
            let page = store
                .rewards(pg::user_id(1), None, 50)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(page.items.len(), 4);
        }
    })
    .await;
    let balances = count(&proxy, |_| {
        let store = Arc::clone(&store);
        async move {
            assert_eq!(
                store.balances(pg::user_id(1)).await.unwrap().unwrap().len(),
                1
            );
        }
    })
    .await;
    let welcome = count(&proxy, |i| {
        let (store, rng) = (Arc::clone(&store), Arc::clone(&rng));
        async move {
            let mut invite = InvitePolicy::default();
            invite.welcome = Some(WelcomeReward {
                id: RewardId::generate(&*rng),
                amount: Money::new(300, Currency::RUB),
            });
            let out = store
                .activate_invite(pg::user_id(60 + i), &pg::invite_code(1), &invite, t0())
                .await
                .unwrap();
            assert!(
                matches!(out, ActivationOutcome::Activated { .. }),
                "{out:?}"
            );
        }
    })
    .await;

    println!("operation              round trips  of which pings  transactions  statements");
    let all = [
        ("record_conversion", record),
        ("reverse_conversion", reverse),
        ("approve_due_rewards", approve),
        ("mark_reward_paid", pay),
        ("rewards page", page),
        ("balances", balances),
        ("activate + welcome", welcome),
    ];
    for (name, s) in all {
        println!(
            "{name:<22} {:>11}  {:>14}  {:>12}  {:>10}",
            s.round_trips, s.pings, s.transactions, s.statements
        );
    }
    pg::drop_database(&url, &options).await.unwrap();
    for (name, s) in all {
        assert_eq!(s.statements, 1, "{name}: {s:?}");
        assert_eq!(s.round_trips - s.pings, 1, "{name}: {s:?}");
        assert_eq!(s.transactions, 1, "{name}: {s:?}");
        assert!(s.pings <= 1, "{name} pings more than sqlx's floor: {s:?}");
    }
}
