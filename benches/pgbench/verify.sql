-- pgbench: PgStore::verify_otp's two statements for the next bench phone with
-- a live code (sequence referral_bench_next_code): read the live code, then
-- apply the verdict. pgbench cannot hold the HMAC key, so the verdict is
-- "matched" without the check (PgStore does it in Rust between the two).
SELECT s.phone, c.challenge_id AS challenge,
       referral_window_full_until(w.ats, 10, 86400000000 * interval '1 microsecond') AS locked_until,
       c.code_hash, c.issued_at, c.expires_at, c.wrong_guesses
  FROM (SELECT referral_bench_phone(nextval('referral_bench_next_code')) AS phone) AS s
  CROSS JOIN LATERAL (SELECT array_agg(f.at ORDER BY f.at) AS ats
          FROM referral_otp_failures f
         WHERE f.phone = s.phone AND f.at > now() - 86400000000 * interval '1 microsecond') AS w
  LEFT JOIN referral_otp_codes c ON c.phone = s.phone
\gset
SELECT outcome, at, attempts_left
  FROM referral_otp_verify(:phone, :challenge, true, now(), 5, 86400000000, 10);
