-- Helpers of the PostgreSQL benches (benches/benches/postgres.rs, the scale
-- bin and the pgbench scripts beside this file). Run on a bench database
-- after referral-sqlx's migrations; never on a real one.
--
-- Bench user n (n >= 1) has a deterministic id, phone and invite code, so
-- Rust code and pgbench scripts address the same rows without a lookup:
--   id          00000000-0000-0000-0000-<n in hex>
--   phone       +7900 and n in 8 digits (as referral_benches::phone(n))
--   invite code n in base 31 over the invite alphabet, 6 characters
-- The rows are the ones PgStore would write: a user row and its
-- user_registered event; an activation row, the referrer's count and the
-- invite_activated event. Each call writes at most 65 536 events (one
-- transaction's event id range): callers insert in chunks.

CREATE OR REPLACE FUNCTION referral_bench_id(n bigint) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT lpad(to_hex(n), 32, '0')::uuid $$;

CREATE OR REPLACE FUNCTION referral_bench_phone(n bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT '+7900' || lpad(n::text, 8, '0') $$;

CREATE OR REPLACE FUNCTION referral_bench_code(n bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT string_agg(substr('23456789ABCDEFGHJKMNPQRSTUVWXYZ',
                             ((n / (31::bigint ^ i::bigint)::bigint) % 31)::int + 1, 1),
                      '' ORDER BY i DESC)
      FROM generate_series(0, 5) AS i
$$;

-- Users p_from..p_to, as referral_register creates them. Event ids as
-- referral_next_event_id() draws them: at most 65 536 events in one
-- transaction, so bulk loads insert in chunks of at most that many users.
CREATE OR REPLACE FUNCTION referral_bench_users(p_from bigint, p_to bigint, p_at timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_base bigint;
BEGIN
    INSERT INTO referral_users (id, phone, invite_code, created_at)
    SELECT referral_bench_id(n), referral_bench_phone(n), referral_bench_code(n), p_at
      FROM generate_series(p_from, p_to) AS n;
    v_base := referral_next_event_id();
    IF (v_base & 65535) + (p_to - p_from) >= 65536 THEN
        RAISE EXCEPTION 'too many events for one transaction: insert in chunks';
    END IF;
    INSERT INTO referral_events (id, at, kind, user_id, phone, invite_code)
    SELECT v_base + (n - p_from), p_at, 'user_registered', referral_bench_id(n),
           referral_bench_phone(n), referral_bench_code(n)
      FROM generate_series(p_from, p_to) AS n;
END $$;

-- Users p_from..p_to activate the code of user p_referrer, one microsecond
-- apart from p_at, as referral_activate records them (the count in shard 0).
CREATE OR REPLACE FUNCTION referral_bench_activations(p_referrer bigint, p_from bigint, p_to bigint, p_at timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_base bigint;
BEGIN
    INSERT INTO referral_activations (invitee_id, referrer_id, activated_at)
    SELECT referral_bench_id(n), referral_bench_id(p_referrer), p_at + (n - p_from) * interval '1 microsecond'
      FROM generate_series(p_from, p_to) AS n;
    INSERT INTO referral_count_shards AS c (user_id, shard, n)
    VALUES (referral_bench_id(p_referrer), 0, p_to - p_from + 1)
    ON CONFLICT (user_id, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    v_base := referral_next_event_id();
    IF (v_base & 65535) + (p_to - p_from) >= 65536 THEN
        RAISE EXCEPTION 'too many events for one transaction: insert in chunks';
    END IF;
    INSERT INTO referral_events (id, at, kind, user_id, invite_code, referrer_id)
    SELECT v_base + (n - p_from), p_at + (n - p_from) * interval '1 microsecond', 'invite_activated',
           referral_bench_id(n), referral_bench_code(p_referrer), referral_bench_id(p_referrer)
      FROM generate_series(p_from, p_to) AS n;
END $$;

-- Live login codes for the phones of users p_from..p_to, as referral_otp_issue
-- leaves them (the code row and the charged send); the challenge id of phone
-- n is referral_bench_id(n), its hash the matching element of p_hashes
-- (computed by the caller, who holds the key).
CREATE OR REPLACE FUNCTION referral_bench_codes(p_from bigint, p_hashes bytea[], p_at timestamptz)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO referral_otp_codes (phone, challenge_id, code_hash, issued_at, expires_at, wrong_guesses)
    SELECT referral_bench_phone(p_from + i - 1), referral_bench_id(p_from + i - 1), h,
           p_at, p_at + interval '1 day', 0
      FROM unnest(p_hashes) WITH ORDINALITY AS t (h, i);
    INSERT INTO referral_otp_sends (phone, challenge_id, sent_at)
    SELECT referral_bench_phone(p_from + i - 1), referral_bench_id(p_from + i - 1), p_at
      FROM unnest(p_hashes) WITH ORDINALITY AS t (h, i);
$$;

CREATE SEQUENCE IF NOT EXISTS referral_bench_next START 1;
CREATE SEQUENCE IF NOT EXISTS referral_bench_next_code START 1;
