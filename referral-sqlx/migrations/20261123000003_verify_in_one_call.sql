-- OtpStore::verify_otp in one round trip. Code hashes no longer depend on the
-- challenge id (referral-core's OtpKey::hash, domain "referral/otp/v2"), so
-- the caller sends the guess's hash and the function compares it under the
-- phone's lock, in the same call that counts the guess. Before, the caller
-- read the live code, compared in the process and called the function with
-- the verdict: two round trips.
--
-- Live codes were hashed the v1 way and can never match a v2 guess: they are
-- dropped, so their phones are told to ask for a new code instead of being
-- charged wrong guesses. Their sends stay charged (cooldown, hourly cap).
-- Processes of an older version must be stopped before this migration runs.
DELETE FROM referral_otp_codes;

DROP FUNCTION referral_otp_verify(text, uuid, boolean, timestamptz, integer, bigint, integer);

CREATE FUNCTION referral_otp_verify(
    p_phone             text,
    p_guess             bytea,
    p_now               timestamptz,
    p_max_attempts      integer,
    p_failure_window_us bigint,
    p_max_failures      integer,
    OUT outcome         text,
    OUT at              timestamptz,
    OUT attempts_left   integer
)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_failure_window interval := p_failure_window_us * interval '1 microsecond';
    v_ats            timestamptz[];
    v_code           referral_otp_codes%ROWTYPE;
    v_wrong          integer;
BEGIN
    PERFORM referral_lock_phone(p_phone);

    -- 1. locked
    SELECT array_agg(f.at ORDER BY f.at) INTO v_ats
      FROM referral_otp_failures f
     WHERE f.phone = p_phone AND f.at > p_now - v_failure_window;
    at := referral_window_full_until(v_ats, p_max_failures, v_failure_window);
    IF at IS NOT NULL THEN
        outcome := 'locked';
        RETURN;
    END IF;

    -- 2. no live code
    SELECT * INTO v_code FROM referral_otp_codes c WHERE c.phone = p_phone;
    IF NOT FOUND THEN
        outcome := 'no_challenge';
        RETURN;
    END IF;

    -- 3. burned
    IF v_code.wrong_guesses >= p_max_attempts THEN
        outcome := 'burned';
        at := v_code.issued_at;
        RETURN;
    END IF;

    -- 4. expired
    IF p_now >= v_code.expires_at THEN
        outcome := 'expired';
        RETURN;
    END IF;

    -- 5. right: consume. The hash is an HMAC under a key the database never
    -- sees, so a timing difference in this comparison tells nothing usable.
    IF v_code.code_hash = p_guess THEN
        DELETE FROM referral_otp_codes c WHERE c.phone = p_phone;
        outcome := 'verified';
        RETURN;
    END IF;

    -- 6. wrong: count it on the code and for the phone
    UPDATE referral_otp_codes c SET wrong_guesses = c.wrong_guesses + 1
     WHERE c.phone = p_phone
    RETURNING c.wrong_guesses INTO v_wrong;
    DELETE FROM referral_otp_failures f
     WHERE f.phone = p_phone AND f.at <= p_now - v_failure_window;
    INSERT INTO referral_otp_failures (phone, at) VALUES (p_phone, p_now);
    outcome := 'mismatch';
    attempts_left := greatest(p_max_attempts - v_wrong, 0);
END $$;
