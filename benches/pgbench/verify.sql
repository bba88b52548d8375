-- pgbench: PgStore::verify_otp's one statement for the next bench phone with
-- a live code (sequence referral_bench_next_code). pgbench cannot hold the
-- HMAC key, so the guess's hash is read from the code's row in the same
-- statement (PgStore computes it in Rust before the call).
SELECT v.outcome, v.at, v.attempts_left
  FROM (SELECT referral_bench_phone(nextval('referral_bench_next_code')) AS phone) AS s
  CROSS JOIN LATERAL referral_otp_verify(
           s.phone,
           (SELECT c.code_hash FROM referral_otp_codes c WHERE c.phone = s.phone),
           now(), 5, 86400000000, 10, 8) AS v;
