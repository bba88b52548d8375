-- pgbench: PgStore::activate_invite's statement: the next fresh bench user
-- (sequence referral_bench_next) activates the code of one of the first
-- :owners users. One statement, one round trip. See run.sh.
\set owner random(1, :owners)
SELECT outcome, referrer, code, at
  FROM referral_activate(referral_bench_id(nextval('referral_bench_next')),
                         referral_bench_code(:owner), now(), 3600000000, 10);
