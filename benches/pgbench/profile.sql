-- pgbench: PgStore::profile's statement (referral-sqlx/src/users.rs, PROFILE:
-- one call of referral_profile since migration 20261130100002) for one of
-- the first :owners bench users (5 referrals each). See run.sh.
\set n random(1, :owners)
SELECT * FROM referral_profile(referral_bench_id(:n), 100);
