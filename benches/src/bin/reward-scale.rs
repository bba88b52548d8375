//! Reward scale on PostgreSQL: a referrer with 1,000,000 rewards against one
//! with 10 (and one with 100, whose pages are as long as the big one's):
//! the profile as the service reads it with rewards on (`profile` then
//! `balances`, two calls) and pages of 10 and of 50 `rewards` (the first
//! page and one half-way through), medians of many interleaved calls, and
//! the ratios big/10 (target ≤ 1.5; like with like for the pages of 10) and
//! big/100 (like with like for the pages of 50).
//!
//! ```sh
//! DATABASE_URL=postgres://… cargo run --release -p referral-benches --bin reward-scale [-- REWARDS]
//! ```
//! It creates a database `referral_bench_*`, bulk-inserts the conversions,
//! rewards and totals `PgStore::record_conversion` would have written (one
//! pending `referrer_percent` reward per conversion), measures, and drops
//! it. Without `DATABASE_URL` it says it skips.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use referral_benches::pg;
use referral_benches::scale::trio;
use referral_core::store::{ReferralStore, RewardStore};
use referral_core::{RewardCursor, RewardId, UserId};
use referral_sqlx::{PgStore, PgStoreOptions};
use sqlx::PgPool;
use uuid::Uuid;

/// Calls measured per median.
const CALLS: usize = 2_000;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time")
}

fn report(what: &str, [small, mid, big]: [Duration; 3]) {
    println!(
        "{:<9} {what:<28} {:>10.2} {:>10.2} {:>12.2} {:>9.2} {:>9.2}",
        "postgres",
        small.as_secs_f64() * 1e6,
        mid.as_secs_f64() * 1e6,
        big.as_secs_f64() * 1e6,
        big.as_secs_f64() / small.as_secs_f64(),
        big.as_secs_f64() / mid.as_secs_f64(),
    );
}

/// Gives `owner` `count` pending `referrer_percent` rewards of 500 RUB, one
/// per conversion of 10 000 by `referee`, created one microsecond apart
/// from `t0`, with the totals `PgStore` keeps; returns the cursor after the
/// reward half-way through (newest first).
async fn insert_rewards(
    pool: &PgPool,
    owner: u64,
    referee: u64,
    count: u64,
) -> Result<RewardCursor, sqlx::Error> {
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    let (owner, referee) = (pg::user_id(owner).as_uuid(), pg::user_id(referee).as_uuid());
    // Bulk set-up only: the rows are built consistent, so the per-row
    // foreign-key triggers are skipped (needs a superuser, as the bench's
    // CREATE DATABASE does); the indexes and checks still apply.
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO referral_conversions (id, user_id, amount, currency, kind, occurred_at,
                                          recorded_at, qualified)
         SELECT 'o-' || $1::text || '-' || k, $2, 10000, 'RUB', 'purchase',
                $3 + k * interval '1 microsecond', $3 + k * interval '1 microsecond', true
           FROM generate_series(1, $4::bigint) AS k",
    )
    .bind(owner)
    .bind(referee)
    .bind(t0())
    .bind(count)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO referral_rewards (id, user_id, kind, currency, amount, original_amount,
                                      status, conversion_id, referral_id, created_at)
         SELECT md5($1::text || k)::uuid, $1, 'referrer_percent', 'RUB', 500, 500, 'pending',
                'o-' || $1::text || '-' || k, $2, $3 + k * interval '1 microsecond'
           FROM generate_series(1, $4::bigint) AS k",
    )
    .bind(owner)
    .bind(referee)
    .bind(t0())
    .bind(count)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO referral_reward_balances (user_id, currency, pending, live)
         VALUES ($1, 'RUB', 500 * $2::bigint, $2)",
    )
    .bind(owner)
    .bind(count)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    // Newest first: the middle reward is number count / 2 + 1.
    let half = count / 2 + 1;
    let id: Uuid = sqlx::query_scalar("SELECT md5($1::text || $2::bigint)::uuid")
        .bind(owner)
        .bind(half)
        .fetch_one(pool)
        .await?;
    Ok(RewardCursor::new(
        t0() + TimeDelta::microseconds(half),
        RewardId::from_uuid(id),
    ))
}

async fn measure(store: &PgStore, users: &[(UserId, RewardCursor)]) {
    let t = trio(CALLS, |who| async move {
        // As ReferralService::profile reads it with rewards on.
        let p = store
            .profile(users[who].0, 100)
            .await
            .expect("profile")
            .expect("user");
        let b = store
            .balances(users[who].0)
            .await
            .expect("balances")
            .expect("user");
        assert_eq!(b.len(), 1);
        std::hint::black_box((p, b));
    })
    .await;
    report("profile + balances", t);
    // Pages of 10 (as long for all three, so big/10 compares like with
    // like) and of 50 (the 10-reward referrer's is 10 long: compare big/100).
    for size in [10, 50] {
        let t = trio(CALLS, |who| async move {
            let page = store
                .rewards(users[who].0, None, size)
                .await
                .expect("page")
                .expect("user");
            assert_eq!(page.items.len(), if who == 0 { 10 } else { size });
            std::hint::black_box(page);
        })
        .await;
        report(&format!("rewards, first page of {size}"), t);
        let t = trio(CALLS, |who| async move {
            let (id, cursor) = users[who];
            let page = store
                .rewards(id, Some(cursor), size)
                .await
                .expect("page")
                .expect("user");
            std::hint::black_box(page);
        })
        .await;
        report(&format!("rewards, middle page of {size}"), t);
    }
}

async fn postgres(url: &str, n: u64) {
    let options = pg::fresh_database(url).await.expect("a bench database");
    let admin = sqlx::PgPool::connect_with(options.clone())
        .await
        .expect("a pool");
    let started = Instant::now();
    // Users 1, 2, 3 are the referrers with 10, 100 and n rewards; 4, 5, 6
    // their referees.
    pg::insert_users(&admin, 1, 6, t0()).await.expect("users");
    let mut users = Vec::new();
    for (owner, count) in (1..=3).zip([10, 100, n]) {
        pg::insert_activations(&admin, owner, owner + 3, owner + 3, t0())
            .await
            .expect("activation");
        let mid = insert_rewards(&admin, owner, owner + 3, count)
            .await
            .expect("rewards");
        users.push((pg::user_id(owner), mid));
    }
    sqlx::query("VACUUM ANALYZE")
        .execute(&admin)
        .await
        .expect("analyze");
    println!(
        "# postgres: 10, 100 and {n} rewards bulk-inserted in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let store = PgStore::connect_with(PgStoreOptions::from_connect_options(options.clone()))
        .await
        .expect("a store");
    measure(&store, &users).await;
    store.pool().close().await;
    admin.close().await;
    pg::drop_database(url, &options).await.expect("drop");
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(1_000_000, |a| a.parse().expect("a number of rewards"));
    let Some(url) = pg::database_url("reward-scale") else {
        return;
    };
    println!(
        "{:<9} {:<28} {:>10} {:>10} {:>12} {:>9} {:>9}",
        "store",
        "operation (median µs)",
        "10 rewards",
        "100",
        format!("{n}"),
        "big/10",
        "big/100"
    );
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(postgres(&url, n));
}
