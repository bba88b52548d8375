//! Operator reads on PostgreSQL with 1,000,000 users against 1,000 (issue
//! 12): a page of 50 of a search by phone prefix, a search by invite code,
//! the all-time leaderboard of 10 and the leaderboard of 10 over a window
//! (`days`) holding the same 900 activations in both databases, medians of
//! many interleaved calls, and the ratio big/small (target ≤ 1.5). Then the
//! other reads ending in `LIMIT $n`: a referrer's profile with 5 referrals,
//! their referral pages of 5 (first, and after a cursor), and referral
//! export batches of 400 (first, and after the first).
//!
//! "before" rows send the statements `PgStore` sent until migrations
//! 20261130100001 and 20261130100002 (copied below) through the same connection, so the
//! change is measured before and after in one run. Each store has one
//! connection, and at the end the bin prints `pg_prepared_statements` of
//! both sessions: how many calls of each statement ran on a cached generic
//! plan and how many were planned afresh (custom plans).
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
use referral_core::store::{OperatorStore, ReferralStore};
use referral_core::{ReferralCursor, UserQuery, UserSearchPage};
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
    // One connection, so that its prepared statements tell every call's
    // planning (the calls are sequential: one is all they use).
    let store = PgStore::connect_with(
        PgStoreOptions::from_connect_options(options.clone()).max_connections(1),
    )
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
    before(stores).await;
    others(stores).await;
    for (name, store) in ["1000 users", "big"].into_iter().zip(stores) {
        plans(name, store).await;
    }
}

/// The search as `PgStore` sent it before migration 20261130100001.
const SEARCH_BEFORE: &str = r#"
SELECT m.id, m.phone, m.invite_code, m.created_at,
       (SELECT coalesce(sum(c.n), 0)::bigint
          FROM referral_count_shards c WHERE c.user_id = m.id) AS referral_count,
       EXISTS (SELECT 1 FROM referral_blocks b WHERE b.user_id = m.id) AS blocked
  FROM ((SELECT u.id, u.phone, u.invite_code, u.created_at FROM referral_users u
          WHERE u.phone COLLATE "C" >= $1 AND u.phone COLLATE "C" < $2
            AND u.phone COLLATE "C" > $3
          ORDER BY u.phone COLLATE "C" LIMIT $5)
        UNION
        (SELECT u.id, u.phone, u.invite_code, u.created_at FROM referral_users u
          WHERE upper(u.invite_code) = $4 AND u.phone COLLATE "C" > $3)) AS m
 ORDER BY m.phone COLLATE "C"
 LIMIT $5"#;

/// The windowed leaderboard as `PgStore` sent it before migration
/// 20261130100001.
const WINDOW_BOARD_BEFORE: &str = r#"
SELECT t.user_id, u.phone, t.referrals, t.latest, m.currency, m.amount AS rewarded
  FROM (SELECT a.referrer_id AS user_id, count(*) AS referrals,
               max(a.activated_at) AS latest
          FROM referral_activations a WHERE a.activated_at > $1
         GROUP BY a.referrer_id
         ORDER BY referrals DESC, latest, user_id
         LIMIT $2) AS t
  JOIN referral_users u ON u.id = t.user_id
  LEFT JOIN LATERAL referral_rewarded(t.user_id) AS m ON true
 ORDER BY t.referrals DESC, t.latest, t.user_id, m.currency COLLATE "C""#;

/// A referral page after a cursor as `PgStore` sent it before migration
/// 20261130100001.
const REFERRALS_AFTER_BEFORE: &str = "
SELECT p.invitee_id, p.phone, p.activated_at, p.converted
  FROM referral_users u
  LEFT JOIN LATERAL (
        SELECT a.invitee_id, i.phone, a.activated_at, a.converted
          FROM referral_activations a
          JOIN referral_users i ON i.id = a.invitee_id
         WHERE a.referrer_id = u.id
           AND (a.activated_at, a.invitee_id) > ($3, $4)
         ORDER BY a.activated_at, a.invitee_id
         LIMIT $2) AS p ON true
 WHERE u.id = $1";

/// The profile as `PgStore` sent it before migration 20261130100002.
const PROFILE_BEFORE: &str = "
SELECT u.id, u.phone, u.invite_code, u.created_at,
       (SELECT coalesce(sum(c.n), 0)::bigint
          FROM referral_count_shards c WHERE c.user_id = u.id) AS referral_count,
       r.invite_code AS activated_invite_code,
       ARRAY(SELECT i.phone
               FROM referral_activations a
               JOIN referral_users i ON i.id = a.invitee_id
              WHERE a.referrer_id = u.id
              ORDER BY a.activated_at, a.invitee_id
              LIMIT $2) AS referrals
  FROM referral_users u
  LEFT JOIN referral_activations me ON me.invitee_id = u.id
  LEFT JOIN referral_users r ON r.id = me.referrer_id
 WHERE u.id = $1";

/// The statements of before migrations 20261130100001-2, rows fetched and
/// not decoded, on the same connections.
async fn before(stores: [&PgStore; 2]) {
    let pool = |who: usize| stores[who.min(1)].pool();
    let t = trio(CALLS, |who| async move {
        let row = sqlx::query(PROFILE_BEFORE)
            .bind(pg::user_id(1).as_uuid())
            .bind(5_i64)
            .fetch_one(pool(who))
            .await
            .expect("profile");
        std::hint::black_box(row);
    })
    .await;
    report("before: profile with 5 referrals", t);
    let code = pg::invite_code(500).as_str().to_owned();
    let t = trio(CALLS, |who| async move {
        let rows = sqlx::query(SEARCH_BEFORE)
            .bind("+790000000")
            .bind("+790000001")
            .bind("")
            .bind(None::<String>)
            .bind(51_i64)
            .fetch_all(pool(who))
            .await
            .expect("search");
        assert_eq!(rows.len(), 51);
    })
    .await;
    report("before: search by prefix, 50", t);
    let code = &code;
    let t = trio(CALLS, |who| async move {
        let rows = sqlx::query(SEARCH_BEFORE)
            .bind(None::<String>)
            .bind(None::<String>)
            .bind("")
            .bind(code)
            .bind(51_i64)
            .fetch_all(pool(who))
            .await
            .expect("search");
        assert_eq!(rows.len(), 1);
    })
    .await;
    report("before: search by invite code", t);
    let since = window_start();
    let t = trio(CALLS, |who| async move {
        let rows = sqlx::query(WINDOW_BOARD_BEFORE)
            .bind(since)
            .bind(10_i64)
            .fetch_all(pool(who))
            .await
            .expect("board");
        assert_eq!(rows.len(), 10);
    })
    .await;
    report("before: board, window of 900, 10", t);
    // After the 3rd of referrer 1's 9 windowed referrals (see `populate`).
    let cursor = (window_start() + TimeDelta::seconds(2), pg::user_id(103));
    let t = trio(CALLS, |who| async move {
        let rows = sqlx::query(REFERRALS_AFTER_BEFORE)
            .bind(pg::user_id(1).as_uuid())
            .bind(6_i64)
            .bind(cursor.0)
            .bind(cursor.1.as_uuid())
            .fetch_all(pool(who))
            .await
            .expect("page");
        assert_eq!(rows.len(), 6);
    })
    .await;
    report("before: referral page of 5, after", t);
}

/// The other reads ending in `LIMIT $n`, through `PgStore`.
async fn others(stores: [&PgStore; 2]) {
    let store = |who: usize| stores[who.min(1)];
    let owner = pg::user_id(1);
    let t = trio(CALLS, |who| async move {
        let profile = store(who)
            .profile(owner, 5)
            .await
            .expect("profile")
            .expect("a user");
        assert_eq!(profile.referrals.len(), 5);
        std::hint::black_box(profile);
    })
    .await;
    report("profile with 5 referrals", t);
    let t = trio(CALLS, |who| async move {
        let page = store(who)
            .referrals(owner, None, 5)
            .await
            .expect("page")
            .expect("a user");
        assert_eq!(page.items.len(), 5);
        std::hint::black_box(page);
    })
    .await;
    report("referral page of 5, first", t);
    let cursor = ReferralCursor::new(window_start() + TimeDelta::seconds(2), pg::user_id(103));
    let t = trio(CALLS, |who| async move {
        let page = store(who)
            .referrals(owner, Some(cursor), 5)
            .await
            .expect("page")
            .expect("a user");
        assert_eq!(page.items.len(), 5);
        std::hint::black_box(page);
    })
    .await;
    report("referral page of 5, after", t);
    let t = trio(CALLS / 10, |who| async move {
        let batch = store(who)
            .export_referrals(None, 400)
            .await
            .expect("export");
        assert_eq!(batch.rows.len(), 400);
        std::hint::black_box(batch);
    })
    .await;
    report("export batch of 400, first", t);
    let mut after = Vec::new();
    for s in stores {
        after.push(
            s.export_referrals(None, 400)
                .await
                .expect("export")
                .next
                .expect("a second batch"),
        );
    }
    let after = &after;
    let t = trio(CALLS / 10, |who| async move {
        let batch = store(who)
            .export_referrals(Some(after[who.min(1)]), 400)
            .await
            .expect("export");
        assert_eq!(batch.rows.len(), 400);
        std::hint::black_box(batch);
    })
    .await;
    report("export batch of 400, after", t);
}

/// The statements of `store`'s one session: calls on a cached generic plan
/// and calls planned afresh.
async fn plans(name: &str, store: &PgStore) {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT regexp_replace(statement, '\\s+', ' ', 'g'), generic_plans, custom_plans
           FROM pg_prepared_statements ORDER BY statement",
    )
    .fetch_all(store.pool())
    .await
    .expect("prepared statements");
    println!("# {name}: generic plans, custom plans, statement");
    for (statement, generic, custom) in rows {
        let statement: String = statement.trim().chars().take(90).collect();
        println!("# {generic:>6} {custom:>6}  {statement}");
    }
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
