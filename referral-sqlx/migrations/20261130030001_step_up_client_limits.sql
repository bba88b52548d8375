-- Login abuse without lockout (referral-core's OtpStore contract):
--
-- * Step-up instead of lock: a phone whose wrong guesses in the failure
--   window reach the daily budget is no longer refused. The guess that
--   reaches it burns the live code; every code issued while the budget is
--   spent is the step-up one (the caller sends two candidate hashes, the
--   function keeps one and says its length). A live code shorter than the
--   step-up length never verifies while the phone is stepped up.
-- * Per-client limit: charged sends per client address (an IPv4 address or
--   an IPv6 /64, as text) in the send window, under the client's advisory
--   lock (taken after the phone's, never before).
-- * Bounded state: each issue deletes a few rows of ANY phone or client that
--   no window counts any more, found through an index on their time (never
--   a scan of the table), so rows of phones that never come back do not pile
--   up. PgStore::purge stays for deleting everything old at once.

-- The live code's length: 0 for codes issued before this migration, which
-- counts as shorter than any step-up length.
ALTER TABLE referral_otp_codes ADD COLUMN code_length smallint NOT NULL DEFAULT 0;

-- The client a send was charged to (NULL: none), for revoke_otp.
ALTER TABLE referral_otp_sends ADD COLUMN client text;

-- Charged sends per client address, for the per-client limit.
CREATE TABLE referral_otp_client_sends (
    client       text        NOT NULL,
    challenge_id uuid        NOT NULL,
    sent_at      timestamptz NOT NULL
);

CREATE INDEX referral_otp_client_sends_idx ON referral_otp_client_sends (client, sent_at);

-- Time indexes for pruning other phones' and clients' old rows.
CREATE INDEX referral_otp_client_sends_at_idx ON referral_otp_client_sends (sent_at);
CREATE INDEX referral_otp_sends_sent_at_idx ON referral_otp_sends (sent_at);
CREATE INDEX referral_otp_failures_at_idx ON referral_otp_failures (at);
CREATE INDEX referral_otp_codes_expires_idx ON referral_otp_codes (expires_at);

-- Deletes up to p_batch rows of each OTP table that no window counts any
-- more at p_now, oldest first, skipping rows another transaction holds.
-- Each DELETE walks the time index from its low end and stops after p_batch
-- rows: its cost does not grow with the table.
CREATE FUNCTION referral_otp_prune(
    p_now            timestamptz,
    p_send_span      interval,
    p_send_window    interval,
    p_failure_window interval,
    p_batch          integer
) RETURNS void
LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
BEGIN
    DELETE FROM referral_otp_sends
     WHERE ctid = ANY (ARRAY(
         SELECT s.ctid FROM referral_otp_sends s
          WHERE s.sent_at <= p_now - p_send_span
          ORDER BY s.sent_at LIMIT p_batch FOR UPDATE SKIP LOCKED));
    DELETE FROM referral_otp_failures
     WHERE ctid = ANY (ARRAY(
         SELECT f.ctid FROM referral_otp_failures f
          WHERE f.at <= p_now - p_failure_window
          ORDER BY f.at LIMIT p_batch FOR UPDATE SKIP LOCKED));
    -- A code expired a whole send window ago: verify would only have said
    -- "expired"; it says "no code" once the row is gone.
    DELETE FROM referral_otp_codes
     WHERE ctid = ANY (ARRAY(
         SELECT c.ctid FROM referral_otp_codes c
          WHERE c.expires_at <= p_now - p_send_window
          ORDER BY c.expires_at LIMIT p_batch FOR UPDATE SKIP LOCKED));
    DELETE FROM referral_otp_client_sends
     WHERE ctid = ANY (ARRAY(
         SELECT c.ctid FROM referral_otp_client_sends c
          WHERE c.sent_at <= p_now - p_send_window
          ORDER BY c.sent_at LIMIT p_batch FOR UPDATE SKIP LOCKED));
END $$;

DROP FUNCTION referral_otp_issue(text, uuid, bytea, timestamptz, timestamptz, timestamptz,
                                 bigint, bigint, integer, bigint, integer, integer);

-- OtpStore::issue_otp: cooldown, send window, client limit, global budget,
-- then issue (the step-up hash when the phone is stepped up).
CREATE FUNCTION referral_otp_issue(
    p_phone             text,
    p_challenge         uuid,
    p_hash              bytea,
    p_step_up_hash      bytea,
    p_issued_at         timestamptz,
    p_expires_at        timestamptz,
    p_now               timestamptz,
    p_client            text,
    p_cooldown_us       bigint,
    p_send_window_us    bigint,
    p_max_sends         integer,
    p_failure_window_us bigint,
    p_max_failures      integer,
    p_max_client        integer,
    p_max_global        integer,
    p_length            integer,
    p_step_up_length    integer,
    OUT outcome         text,
    OUT at              timestamptz,
    OUT code_length     integer
)
LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
DECLARE
    v_cooldown       interval := p_cooldown_us * interval '1 microsecond';
    v_send_window    interval := p_send_window_us * interval '1 microsecond';
    v_failure_window interval := p_failure_window_us * interval '1 microsecond';
    v_client         text := CASE WHEN p_max_client IS NOT NULL THEN p_client END;
    v_ats            timestamptz[];
    v_last           timestamptz;
    v_global         timestamptz[];
    v_failures       integer;
BEGIN
    PERFORM referral_lock_phone(p_phone);

    -- 1. resend cooldown
    SELECT max(s.sent_at) INTO v_last FROM referral_otp_sends s WHERE s.phone = p_phone;
    IF v_last > p_now - v_cooldown THEN
        outcome := 'cooldown';
        at := v_last + v_cooldown;
        RETURN;
    END IF;

    -- 2. send window
    SELECT array_agg(s.sent_at ORDER BY s.sent_at) INTO v_ats
      FROM referral_otp_sends s
     WHERE s.phone = p_phone AND s.sent_at > p_now - v_send_window;
    at := referral_window_full_until(v_ats, p_max_sends, v_send_window);
    IF at IS NOT NULL THEN
        outcome := 'too_many_sends';
        RETURN;
    END IF;

    -- 3. the client's limit, under the client's lock (after the phone's).
    IF v_client IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('referral/client/' || v_client, 0));
        SELECT array_agg(c.sent_at ORDER BY c.sent_at) INTO v_global
          FROM referral_otp_client_sends c
         WHERE c.client = v_client AND c.sent_at > p_now - v_send_window;
        at := referral_window_full_until(v_global, p_max_client, v_send_window);
        IF at IS NOT NULL THEN
            outcome := 'client_limited';
            RETURN;
        END IF;
    END IF;

    -- 4. the global budget, when one is set: under its own lock (taken after
    --    the phone's and the client's, always in this order).
    IF p_max_global IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(1919247986, 2);
        DELETE FROM referral_otp_global_sends g WHERE g.sent_at <= p_now - v_send_window;
        SELECT array_agg(g.sent_at ORDER BY g.sent_at) INTO v_global
          FROM referral_otp_global_sends g;
        at := referral_window_full_until(v_global, p_max_global, v_send_window);
        IF at IS NOT NULL THEN
            outcome := 'budget_spent';
            RETURN;
        END IF;
        INSERT INTO referral_otp_global_sends (challenge_id, sent_at) VALUES (p_challenge, p_now);
    END IF;

    -- 5. issue: prune this phone's old rows, charge the send, and replace the
    --    live code with the candidate the phone's failures call for.
    DELETE FROM referral_otp_sends s
     WHERE s.phone = p_phone AND s.sent_at <= p_now - greatest(v_send_window, v_cooldown);
    DELETE FROM referral_otp_failures f
     WHERE f.phone = p_phone AND f.at <= p_now - v_failure_window;
    SELECT count(*) INTO v_failures
      FROM referral_otp_failures f
     WHERE f.phone = p_phone AND f.at > p_now - v_failure_window;
    code_length := CASE WHEN v_failures >= p_max_failures THEN p_step_up_length ELSE p_length END;
    INSERT INTO referral_otp_sends (phone, challenge_id, sent_at, client)
    VALUES (p_phone, p_challenge, p_now, v_client);
    IF v_client IS NOT NULL THEN
        INSERT INTO referral_otp_client_sends (client, challenge_id, sent_at)
        VALUES (v_client, p_challenge, p_now);
    END IF;
    INSERT INTO referral_otp_codes AS c
           (phone, challenge_id, code_hash, issued_at, expires_at, wrong_guesses, code_length)
    VALUES (p_phone, p_challenge,
            CASE WHEN v_failures >= p_max_failures THEN p_step_up_hash ELSE p_hash END,
            p_issued_at, p_expires_at, 0, code_length)
    ON CONFLICT (phone) DO UPDATE
       SET challenge_id = EXCLUDED.challenge_id,
           code_hash = EXCLUDED.code_hash,
           issued_at = EXCLUDED.issued_at,
           expires_at = EXCLUDED.expires_at,
           wrong_guesses = 0,
           code_length = EXCLUDED.code_length;

    -- Bounded state: a few rows of phones and clients long gone.
    PERFORM referral_otp_prune(p_now, greatest(v_send_window, v_cooldown), v_send_window,
                               v_failure_window, 8);

    SELECT array_agg(x ORDER BY x) INTO v_ats
      FROM unnest(array_append(v_ats, p_now)) AS x;
    outcome := 'issued';
    -- greatest() ignores the NULL of a window that is not full.
    at := greatest(p_now + v_cooldown,
                   referral_window_full_until(v_ats, p_max_sends, v_send_window));
END $$;

-- OtpStore::revoke_otp also gives the send's place back to its client.
CREATE OR REPLACE FUNCTION referral_otp_revoke(p_phone text, p_challenge uuid) RETURNS void
LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
DECLARE
    v_client text;
BEGIN
    PERFORM referral_lock_phone(p_phone);
    DELETE FROM referral_otp_codes c WHERE c.phone = p_phone AND c.challenge_id = p_challenge;
    DELETE FROM referral_otp_sends s WHERE s.phone = p_phone AND s.challenge_id = p_challenge
    RETURNING s.client INTO v_client;
    IF v_client IS NOT NULL THEN
        DELETE FROM referral_otp_client_sends c
         WHERE c.client = v_client AND c.challenge_id = p_challenge;
    END IF;
    DELETE FROM referral_otp_global_sends g WHERE g.challenge_id = p_challenge;
END $$;

DROP FUNCTION referral_otp_verify(text, bytea, timestamptz, integer, bigint, integer);

-- OtpStore::verify_otp, one round trip under the phone's lock: no lock-out
-- any more; a stepped-up phone's short code is burned, and the wrong guess that steps the phone up
-- burns the live code.
CREATE FUNCTION referral_otp_verify(
    p_phone             text,
    p_guess             bytea,
    p_now               timestamptz,
    p_max_attempts      integer,
    p_failure_window_us bigint,
    p_max_failures      integer,
    p_step_up_length    integer,
    OUT outcome         text,
    OUT at              timestamptz,
    OUT attempts_left   integer
)
LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
DECLARE
    v_failure_window interval := p_failure_window_us * interval '1 microsecond';
    v_code           referral_otp_codes%ROWTYPE;
    v_failures       integer;
    v_wrong          integer;
BEGIN
    PERFORM referral_lock_phone(p_phone);

    -- 1. no live code
    SELECT * INTO v_code FROM referral_otp_codes c WHERE c.phone = p_phone;
    IF NOT FOUND THEN
        outcome := 'no_challenge';
        RETURN;
    END IF;

    -- 2. burned: by its own wrong guesses, or short on a stepped-up phone
    SELECT count(*) INTO v_failures
      FROM referral_otp_failures f
     WHERE f.phone = p_phone AND f.at > p_now - v_failure_window;
    IF v_code.wrong_guesses >= p_max_attempts
       OR (v_failures >= p_max_failures AND v_code.code_length < p_step_up_length) THEN
        outcome := 'burned';
        at := v_code.issued_at;
        RETURN;
    END IF;

    -- 3. expired
    IF p_now >= v_code.expires_at THEN
        outcome := 'expired';
        RETURN;
    END IF;

    -- 4. right: consume. The hash is an HMAC under a key the database never
    -- sees, so a timing difference in this comparison tells nothing usable.
    IF v_code.code_hash = p_guess THEN
        DELETE FROM referral_otp_codes c WHERE c.phone = p_phone;
        outcome := 'verified';
        RETURN;
    END IF;

    -- 5. wrong: count it on the code and for the phone; the guess that
    --    spends the phone's budget burns the code.
    UPDATE referral_otp_codes c
       SET wrong_guesses = CASE
               WHEN v_failures < p_max_failures AND v_failures + 1 >= p_max_failures
               THEN greatest(p_max_attempts, c.wrong_guesses + 1)
               ELSE c.wrong_guesses + 1
           END
     WHERE c.phone = p_phone
    RETURNING c.wrong_guesses INTO v_wrong;
    DELETE FROM referral_otp_failures f
     WHERE f.phone = p_phone AND f.at <= p_now - v_failure_window;
    INSERT INTO referral_otp_failures (phone, at) VALUES (p_phone, p_now);
    outcome := 'mismatch';
    attempts_left := greatest(p_max_attempts - v_wrong, 0);
END $$;
