//! The ceiling ladder's rungs (`pgbench/ladder.sql`, run by the `pg-ladder`
//! bin and `pgbench/ladder.sh`) still load on the schema of every migration,
//! and each still writes the rows its bench counts it for: a bench figure of
//! a rung that no longer wrote them would measure nothing. Needs
//! `DATABASE_URL`; without it the test says so and passes, or fails when `CI`
//! is set.

use chrono::{DateTime, Utc};
use referral_benches::pg;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time")
}

/// Rows in `sql`'s count (one bind: a user id).
async fn count(pool: &PgPool, sql: &str, user: u64) -> i64 {
    sqlx::query_scalar(sql)
        .bind(pg::user_id(user).as_uuid())
        .fetch_one(pool)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
}

/// An activation rung, the table its activation row goes to, the table its
/// event goes to (if it writes one), and whether it adds to the count.
const ACTIVATIONS: [(&str, &str, Option<&str>, bool); 9] = [
    ("lad_a0", "lad_act", None, false),
    ("lad_b0", "lad_act", Some("lad_ev"), false),
    ("lad_n0", "lad_act", None, true),
    ("lad_c0", "lad_act", Some("lad_ev"), true),
    ("lad_a", "referral_activations", None, false),
    (
        "lad_b",
        "referral_activations",
        Some("referral_events"),
        false,
    ),
    (
        "lad_c",
        "referral_activations",
        Some("referral_events"),
        true,
    ),
    (
        "lad_d",
        "referral_activations",
        Some("referral_events"),
        true,
    ),
    (
        "lad_f",
        "referral_activations",
        Some("referral_events"),
        true,
    ),
];

/// A registration rung, the table its user row goes to and the table its
/// event goes to (if it writes one).
const REGISTRATIONS: [(&str, &str, Option<&str>); 4] = [
    ("reg_a", "referral_users", None),
    ("reg_c", "ru_c", None),
    ("reg_b0", "ru_c", Some("lad_ev")),
    ("reg_b", "referral_users", Some("referral_events")),
];

#[tokio::test]
async fn every_rung_loads_and_writes_its_rows() {
    let Some(url) = pg::test_database_url("ladder") else {
        return;
    };
    let options = pg::fresh_database(&url).await.expect("a bench database");
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await
        .expect("a pool");
    sqlx::raw_sql(pg::LADDER_SQL)
        .execute(&pool)
        .await
        .expect("the ladder loads on the current schema");
    // User 1 owns the code; 2.. activate it, one per rung.
    pg::insert_users(&pool, 1, 20, t0()).await.expect("users");
    let owner = 1;
    let shards = "SELECT coalesce(sum(n), 0)::bigint FROM referral_count_shards WHERE user_id = $1";

    for (k, (rung, activations, events, counts)) in ACTIVATIONS.into_iter().enumerate() {
        let user = 2 + k as u64;
        let before = count(&pool, shards, owner).await;
        let outcome: String = sqlx::query_scalar(&pg::ladder_activation_call(rung))
            .bind(pg::user_id(user).as_uuid())
            .bind(pg::user_id(owner).as_uuid())
            .bind(pg::invite_code(owner).as_str())
            .bind(t0())
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|error| panic!("{rung}: {error}"));
        assert_eq!(outcome, "activated", "{rung}");
        let row = format!(
            "SELECT count(*) FROM {activations} WHERE invitee_id = $1 AND referrer_id = '{}'",
            pg::user_id(owner).as_uuid()
        );
        assert_eq!(
            count(&pool, &row, user).await,
            1,
            "{rung}: its activation row"
        );
        for table in ["lad_ev", "referral_events"] {
            let event = format!(
                "SELECT count(*) FROM {table} WHERE user_id = $1 AND kind = 'invite_activated'"
            );
            let expected = i64::from(events == Some(table));
            assert_eq!(
                count(&pool, &event, user).await,
                expected,
                "{rung}: {table}"
            );
        }
        let added = count(&pool, shards, owner).await - before;
        assert_eq!(added, i64::from(counts), "{rung}: the count");
    }

    for (k, (rung, users, events)) in REGISTRATIONS.into_iter().enumerate() {
        let n = 1_000 + k as u64;
        let outcome: String = sqlx::query_scalar(&format!("SELECT {rung}($1, $2, $3, $4)"))
            .bind(pg::phone(n).to_e164())
            .bind(pg::user_id(n).as_uuid())
            .bind(t0())
            .bind(vec![pg::invite_code(n).as_str().to_owned()])
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|error| panic!("{rung}: {error}"));
        assert_eq!(outcome, "created", "{rung}");
        let row = format!("SELECT count(*) FROM {users} WHERE id = $1");
        assert_eq!(count(&pool, &row, n).await, 1, "{rung}: its user row");
        for table in ["lad_ev", "referral_events"] {
            let event = format!(
                "SELECT count(*) FROM {table} WHERE user_id = $1 AND kind = 'user_registered'"
            );
            let expected = i64::from(events == Some(table));
            assert_eq!(count(&pool, &event, n).await, expected, "{rung}: {table}");
        }
    }

    pool.close().await;
    pg::drop_database(&url, &options).await.expect("drop");
}
