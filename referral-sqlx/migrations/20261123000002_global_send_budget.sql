-- The global send budget (OtpPolicy::max_global_sends_per_window): a cost
-- circuit breaker counting the charged sends of ALL phones in the send
-- window. Rows are kept only while a budget is configured.
CREATE TABLE referral_otp_global_sends (
    challenge_id uuid        PRIMARY KEY,
    sent_at      timestamptz NOT NULL
);

CREATE INDEX referral_otp_global_sends_at_idx ON referral_otp_global_sends (sent_at);

-- OtpStore::issue_otp gains step 4, the global budget (NULL: no budget).
DROP FUNCTION referral_otp_issue(text, uuid, bytea, timestamptz, timestamptz, timestamptz,
                                 bigint, bigint, integer, bigint, integer);

CREATE FUNCTION referral_otp_issue(
    p_phone             text,
    p_challenge         uuid,
    p_hash              bytea,
    p_issued_at         timestamptz,
    p_expires_at        timestamptz,
    p_now               timestamptz,
    p_cooldown_us       bigint,
    p_send_window_us    bigint,
    p_max_sends         integer,
    p_failure_window_us bigint,
    p_max_failures      integer,
    p_max_global        integer,
    OUT outcome         text,
    OUT at              timestamptz
)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_cooldown       interval := p_cooldown_us * interval '1 microsecond';
    v_send_window    interval := p_send_window_us * interval '1 microsecond';
    v_failure_window interval := p_failure_window_us * interval '1 microsecond';
    v_ats            timestamptz[];
    v_last           timestamptz;
    v_global         timestamptz[];
BEGIN
    PERFORM referral_lock_phone(p_phone);

    -- 1. locked by wrong guesses
    SELECT array_agg(f.at ORDER BY f.at) INTO v_ats
      FROM referral_otp_failures f
     WHERE f.phone = p_phone AND f.at > p_now - v_failure_window;
    at := referral_window_full_until(v_ats, p_max_failures, v_failure_window);
    IF at IS NOT NULL THEN
        outcome := 'locked';
        RETURN;
    END IF;

    -- 2. resend cooldown
    SELECT max(s.sent_at) INTO v_last FROM referral_otp_sends s WHERE s.phone = p_phone;
    IF v_last > p_now - v_cooldown THEN
        outcome := 'cooldown';
        at := v_last + v_cooldown;
        RETURN;
    END IF;

    -- 3. send window
    SELECT array_agg(s.sent_at ORDER BY s.sent_at) INTO v_ats
      FROM referral_otp_sends s
     WHERE s.phone = p_phone AND s.sent_at > p_now - v_send_window;
    at := referral_window_full_until(v_ats, p_max_sends, v_send_window);
    IF at IS NOT NULL THEN
        outcome := 'too_many_sends';
        RETURN;
    END IF;

    -- 4. the global budget, when one is set: under its own lock (taken after
    --    the phone's, always in this order), so concurrent issues for
    --    different phones cannot overspend it.
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

    -- 5. issue: prune what no window counts any more, charge the send, and
    --    replace the live code.
    DELETE FROM referral_otp_sends s
     WHERE s.phone = p_phone AND s.sent_at <= p_now - greatest(v_send_window, v_cooldown);
    DELETE FROM referral_otp_failures f
     WHERE f.phone = p_phone AND f.at <= p_now - v_failure_window;
    INSERT INTO referral_otp_sends (phone, challenge_id, sent_at)
    VALUES (p_phone, p_challenge, p_now);
    INSERT INTO referral_otp_codes AS c (phone, challenge_id, code_hash, issued_at, expires_at, wrong_guesses)
    VALUES (p_phone, p_challenge, p_hash, p_issued_at, p_expires_at, 0)
    ON CONFLICT (phone) DO UPDATE
       SET challenge_id = EXCLUDED.challenge_id,
           code_hash = EXCLUDED.code_hash,
           issued_at = EXCLUDED.issued_at,
           expires_at = EXCLUDED.expires_at,
           wrong_guesses = 0;

    SELECT array_agg(x ORDER BY x) INTO v_ats
      FROM unnest(array_append(v_ats, p_now)) AS x;
    outcome := 'issued';
    -- greatest() ignores the NULL of a window that is not full.
    at := greatest(p_now + v_cooldown,
                   referral_window_full_until(v_ats, p_max_sends, v_send_window));
END $$;


-- OtpStore::revoke_otp also gives the send's place in the budget back.
CREATE OR REPLACE FUNCTION referral_otp_revoke(p_phone text, p_challenge uuid) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM referral_lock_phone(p_phone);
    DELETE FROM referral_otp_codes c WHERE c.phone = p_phone AND c.challenge_id = p_challenge;
    DELETE FROM referral_otp_sends s WHERE s.phone = p_phone AND s.challenge_id = p_challenge;
    DELETE FROM referral_otp_global_sends g WHERE g.challenge_id = p_challenge;
END $$;
