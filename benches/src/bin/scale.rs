//! Scale: a user with 1,000,000 referrals against one with 10 (and one with
//! 100, whose answers are as long as the big one's: a profile lists the
//! first 100 referrals, a page 50), on both stores: `profile` and 50-item
//! pages of `referrals` (the first page and one half-way through), medians
//! of many interleaved calls, and the ratios big/10 (target ≤ 1.5) and
//! big/100.
//!
//! ```sh
//! cargo run --release -p referral-benches --bin scale [-- REFERRALS]
//! ```
//! The PostgreSQL half needs `DATABASE_URL` (it creates, fills with
//! `pgbench/setup.sql`'s bulk helpers, which write the rows `PgStore` would,
//! and drops a database `referral_bench_*`); without it, it says it skips.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use referral_benches::scale::trio;
use referral_benches::{pg, phone, ready};
use referral_core::store::{NewUser, ReferralStore};
use referral_core::{InviteCode, InvitePolicy, ReferralCursor, UserId};
use referral_memory::MemoryStore;
use referral_sqlx::{PgStore, PgStoreOptions};

/// Calls measured per median, memory store.
const MEMORY_CALLS: usize = 20_000;
/// Calls measured per median, PostgreSQL.
const PG_CALLS: usize = 2_000;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time")
}

fn report(store: &str, what: &str, [small, mid, big]: [Duration; 3]) {
    println!(
        "{store:<9} {what:<24} {:>10.2} {:>10.2} {:>12.2} {:>9.2} {:>9.2}",
        small.as_secs_f64() * 1e6,
        mid.as_secs_f64() * 1e6,
        big.as_secs_f64() * 1e6,
        big.as_secs_f64() / small.as_secs_f64(),
        big.as_secs_f64() / mid.as_secs_f64(),
    );
}

fn header(n: u64) {
    println!(
        "{:<9} {:<24} {:>10} {:>10} {:>12} {:>9} {:>9}",
        "store",
        "operation (median µs)",
        "10 refs",
        "100 refs",
        format!("{n} refs"),
        "big/10",
        "big/100"
    );
}

/// Profile, first page and middle page of the three users, `calls` times each.
async fn measure<S: ReferralStore>(
    label: &str,
    store: &S,
    users: &[(UserId, Option<ReferralCursor>)],
    calls: usize,
) {
    let t = trio(calls, |who| async move {
        let p = store
            .profile(users[who].0, 100)
            .await
            .expect("profile")
            .expect("user");
        std::hint::black_box(p);
    })
    .await;
    report(label, "profile", t);
    let t = trio(calls, |who| async move {
        let page = store
            .referrals(users[who].0, None, 50)
            .await
            .expect("page")
            .expect("user");
        std::hint::black_box(page);
    })
    .await;
    report(label, "referrals, first page", t);
    let t = trio(calls, |who| async move {
        let (id, cursor) = users[who];
        let page = store
            .referrals(id, cursor, 50)
            .await
            .expect("page")
            .expect("user");
        std::hint::black_box(page);
    })
    .await;
    report(label, "referrals, middle page", t);
}

fn memory(n: u64) {
    let store = MemoryStore::new();
    let next = std::cell::Cell::new(0_u64);
    let register = || -> (UserId, InviteCode) {
        let k = next.get();
        next.set(k + 1);
        let (id, code) = (pg::user_id(k + 1), pg::invite_code(k + 1));
        let new = NewUser {
            id,
            created_at: t0(),
        };
        let _ = ready(store.register(&phone(k), new, &[code])).expect("register");
        (id, code)
    };
    let started = Instant::now();
    let policy = InvitePolicy::default();
    // Three referrers with 10, 100 and n referrals; the cursor half-way
    // through each one's list.
    let mut users = [(UserId::from_uuid(uuid::Uuid::nil()), None); 3];
    for (slot, count) in users.iter_mut().zip([10, 100, n]) {
        let (owner, code) = register();
        let mut mid = None;
        for k in 0..count {
            let (id, _) = register();
            let at = t0() + TimeDelta::microseconds(i64::try_from(k).unwrap_or(i64::MAX));
            let _ = ready(store.activate_invite(id, &code, &policy, at)).expect("activate");
            if k + 1 == count / 2 {
                mid = Some(ReferralCursor::new(at, id));
            }
        }
        *slot = (owner, mid);
    }
    println!(
        "# memory: 10, 100 and {n} referrals set up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        measure("memory", &store, &users, MEMORY_CALLS).await;
    });
}

async fn postgres(url: &str, n: u64) {
    let options = pg::fresh_database(url).await.expect("a bench database");
    let admin = sqlx::PgPool::connect_with(options.clone())
        .await
        .expect("a pool");
    let started = Instant::now();
    // Users 1, 2, 3 have 10, 100 and n referrals, from the users after them.
    let counts = [10, 100, n];
    pg::insert_users(&admin, 1, 3 + 110 + n, t0())
        .await
        .expect("users");
    let mut first = 4;
    let mut users = Vec::new();
    for (owner, count) in (1..=3).zip(counts) {
        pg::insert_activations(&admin, owner, first, first + count - 1, t0())
            .await
            .expect("activations");
        // Invitee k of this owner is user first + k, activated at t0 + k µs.
        let half = count / 2 - 1;
        let mid = ReferralCursor::new(
            t0() + TimeDelta::microseconds(i64::try_from(half).unwrap_or(0)),
            pg::user_id(first + half),
        );
        users.push((pg::user_id(owner), Some(mid)));
        first += count;
    }
    sqlx::query("VACUUM ANALYZE")
        .execute(&admin)
        .await
        .expect("analyze");
    println!(
        "# postgres: 10, 100 and {n} referrals bulk-inserted in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let store = PgStore::connect_with(PgStoreOptions::from_connect_options(options.clone()))
        .await
        .expect("a store");
    measure("postgres", &store, &users, PG_CALLS).await;
    store.pool().close().await;
    admin.close().await;
    pg::drop_database(url, &options).await.expect("drop");
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(1_000_000, |a| a.parse().expect("a number of referrals"));
    header(n);
    memory(n);
    let Some(url) = pg::database_url("scale") else {
        return;
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(postgres(&url, n));
}
