//! Operator reads on PostgreSQL with 1,000,000 users against 1,000 (issue
//! 12): a page of 50 of a search by phone prefix, a search by invite code,
//! the all-time leaderboard of 10 and the leaderboard of 10 over a window
//! (`days`) holding the same 900 activations in both databases, medians of
//! many interleaved calls, and the ratio big/small (target ≤ 1.5).
//!
//! ```sh
//! DATABASE_URL=postgres://… cargo run --release -p referral-benches --bin operator-scale [-- USERS]
//! ```
//! It creates two databases `referral_bench_*` (1,000 users, and USERS),
//! bulk-inserts the users, activations (users past the 100th each referred
//! by one of the first 100; 9 of each of those referrers' referees activated
//! a day after the others, one second apart: the window) and the leaderboard ranking `PgStore`
//! keeps, measures, and drops them. Without `DATABASE_URL` it says it skips.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use referral_benches::pg;
use referral_benches::scale::trio;
use referral_core::store::OperatorStore;
use referral_core::{UserQuery, UserSearchPage};
use referral_sqlx::{PgStore, PgStoreOptions};
use sqlx::postgres::PgConnectOptions;

/// Calls measured per median.
const CALLS: usize = 1_000;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time")
}

/// Activations in the leaderboard's window, in both databases.
const WINDOW: u64 = 900;

/// The start of the window: a day after the bulk activations.
fn window_start() -> DateTime<Utc> {
    t0() + TimeDelta::days(1)
}

fn report(what: &str, [small, big, _]: [Duration; 3]) {
    println!(
        "{:<9} {what:<32} {:>10.2} {:>12.2} {:>9.2}",
        "postgres",
        small.as_secs_f64() * 1e6,
        big.as_secs_f64() * 1e6,
        big.as_secs_f64() / small.as_secs_f64(),
    );
}

/// A database with `n` users: users 101..=n referred by users 1..=100 (in
/// contiguous runs), and the ranking of those referrers.
async fn populate(url: &str, n: u64) -> (PgConnectOptions, PgStore) {
    let options = pg::fresh_database(url).await.expect("a bench database");
    let admin = sqlx::PgPool::connect_with(options.clone())
        .await
        .expect("a pool");
    let started = Instant::now();
    pg::insert_users(&admin, 1, n, t0()).await.expect("users");
    let per = (n - 100) / 100;
    for owner in 1..=100 {
        let from = 101 + (owner - 1) * per;
        let to = if owner == 100 { n } else { from + per - 1 };
        pg::insert_activations(&admin, owner, from, to, t0())
            .await
            .expect("activations");
    }
    // WINDOW referees, the first 9 of each referrer's run, activated later,
    // one second apart from a day after the others: what a leaderboard over
    // that window reads (the same 100 referrers with 9 each in both).
    sqlx::query(
        "UPDATE referral_activations a
            SET activated_at = $1 + (j * 9 + i) * interval '1 second'
           FROM generate_series(0, 99) AS j, generate_series(0, 8) AS i
          WHERE a.invitee_id = referral_bench_id(101 + j * $2 + i)",
    )
    .bind(window_start())
    .bind(i64::try_from(per).expect("a run length"))
    .execute(&admin)
    .await
    .expect("the window's activations");
    // What referral_activate keeps, in bulk.
    sqlx::query(
        "INSERT INTO referral_referrer_rank (user_id, referrals, latest)
         SELECT a.referrer_id, count(*), max(a.activated_at)
           FROM referral_activations a GROUP BY a.referrer_id",
    )
    .execute(&admin)
    .await
    .expect("ranking");
    sqlx::query("VACUUM ANALYZE")
        .execute(&admin)
        .await
        .expect("analyze");
    println!(
        "# postgres: {n} users bulk-inserted in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    admin.close().await;
    let store = PgStore::connect_with(PgStoreOptions::from_connect_options(options.clone()))
        .await
        .expect("a store");
    (options, store)
}

async fn measure(stores: [&PgStore; 2]) {
    // Users 0..=999 share the first 9 digits: a page of 50 in both.
    let prefix = UserQuery::parse("+790000000").expect("a prefix");
    let code = UserQuery::parse(pg::invite_code(500).as_str()).expect("a code");
    let store = |who: usize| stores[who.min(1)];
    let t = trio(CALLS, |who| {
        let prefix = &prefix;
        async move {
            let page: UserSearchPage = store(who)
                .search_users(prefix, None, 50)
                .await
                .expect("search");
            assert_eq!(page.items.len(), 50);
            std::hint::black_box(page);
        }
    })
    .await;
    report("search by phone prefix, 50", t);
    let t = trio(CALLS, |who| {
        let code = &code;
        async move {
            let page = store(who)
                .search_users(code, None, 50)
                .await
                .expect("search");
            assert_eq!(page.items.len(), 1);
            std::hint::black_box(page);
        }
    })
    .await;
    report("search by invite code", t);
    let t = trio(CALLS, |who| async move {
        let board = store(who).leaderboard(None, 10).await.expect("board");
        assert_eq!(board.len(), 10);
        std::hint::black_box(board);
    })
    .await;
    report("leaderboard, all time, 10", t);
    let since = window_start();
    let t = trio(CALLS, |who| async move {
        let board = store(who)
            .leaderboard(Some(since), 10)
            .await
            .expect("board");
        assert_eq!(board.len(), 10);
        // 9 of each referrer's activations are in the window.
        assert!(board.iter().all(|e| e.referrals == WINDOW / 100));
        std::hint::black_box(board);
    })
    .await;
    report("leaderboard, window of 900, 10", t);
}

async fn postgres(url: &str, n: u64) {
    let (small_options, small) = populate(url, 1_000).await;
    let (big_options, big) = populate(url, n).await;
    measure([&small, &big]).await;
    for (store, options) in [(small, small_options), (big, big_options)] {
        store.pool().close().await;
        pg::drop_database(url, &options).await.expect("drop");
    }
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(1_000_000, |a| a.parse().expect("a number of users"));
    let Some(url) = pg::database_url("operator-scale") else {
        return;
    };
    println!(
        "{:<9} {:<32} {:>10} {:>12} {:>9}",
        "store",
        "operation (median µs)",
        "1000 users",
        format!("{n}"),
        "big/small"
    );
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(postgres(&url, n));
}
