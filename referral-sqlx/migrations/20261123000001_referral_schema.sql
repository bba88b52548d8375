-- referral-sqlx schema, version 1.
--
-- Every rule of referral-core's store ports is decided here, by a constraint
-- or inside one function call (one statement, one round trip). The functions
-- are plpgsql and VOLATILE on purpose: under READ COMMITTED each statement of
-- a VOLATILE function takes a fresh snapshot, so a check made right after a
-- lock was granted sees everything committed by the transaction that held it.
-- (Inside one plain SQL statement it would not: a statement keeps the snapshot
-- it started with, even after waiting for a lock.)
--
-- Time never comes from the database clock: every timestamp is a parameter,
-- the caller's `now`. Rolling windows are `(now - window, now]`, counted as
-- `at > now - window` (nothing is ever recorded after the caller's `now` while
-- clocks move forwards; if two servers' clocks disagree slightly, counting a
-- "future" row is the safe side, and what referral-memory does as well).
--
-- Locks (all transaction-scoped, released at commit or rollback):
--   * per phone:   pg_advisory_xact_lock(hashtextextended('referral/otp/'  || phone, 0))
--   * per user:    pg_advisory_xact_lock(hashtextextended('referral/user/' || id, 0))
--   * writer lock: pg_advisory_xact_lock(1919247986, 1)  ('refr', 1)
-- The one-bigint and the two-int4 advisory key spaces do not overlap. A hash
-- collision between two phones or two users only makes them wait for each
-- other; it cannot break a rule. Lock order is always per-user, then writer,
-- so no two transactions can wait for each other in a circle.

-- ---------------------------------------------------------------------------
-- Users and the referral graph
-- ---------------------------------------------------------------------------

CREATE TABLE referral_users (
    id             uuid        PRIMARY KEY,
    -- E.164: '+' and 7 to 15 digits, never starting with 0.
    phone          text        NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    -- Stored upper case; unique ignoring case (index below).
    invite_code    text        NOT NULL CHECK (invite_code = upper(invite_code)),
    created_at     timestamptz NOT NULL,
    -- How many users activated this user's code, kept in the activation's
    -- transaction so a profile reads it in O(1).
    referral_count bigint      NOT NULL DEFAULT 0 CHECK (referral_count >= 0)
);

CREATE UNIQUE INDEX referral_users_phone_key ON referral_users (phone);
CREATE UNIQUE INDEX referral_users_invite_code_key ON referral_users (upper(invite_code));

-- One row per activated invite: the primary key on the invitee is the
-- one-invite rule itself.
CREATE TABLE referral_activations (
    invitee_id   uuid        PRIMARY KEY REFERENCES referral_users (id),
    referrer_id  uuid        NOT NULL REFERENCES referral_users (id),
    activated_at timestamptz NOT NULL,
    CHECK (invitee_id <> referrer_id)
);

-- Keyset pagination of a user's referrals: seek on (activated_at, invitee_id).
CREATE INDEX referral_activations_referrer_idx
    ON referral_activations (referrer_id, activated_at, invitee_id);

-- Unknown invite codes tried, for the per-user rolling window.
CREATE TABLE referral_invite_failures (
    user_id uuid        NOT NULL REFERENCES referral_users (id),
    at      timestamptz NOT NULL
);

CREATE INDEX referral_invite_failures_idx ON referral_invite_failures (user_id, at);

-- The outbox. Rows are written in the transaction of the change they record,
-- and only while holding the writer lock (taken before the id is drawn, held
-- until commit), so ids become visible in increasing order: a consumer that
-- reads `id > last_seen` never skips an id that commits later.
CREATE TABLE referral_events (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('user_registered', 'invite_activated')),
    -- user_registered: the new user; invite_activated: the referred user.
    user_id     uuid        NOT NULL,
    -- user_registered: the new user's phone.
    phone       text,
    -- user_registered: the new user's code; invite_activated: the code activated.
    invite_code text        NOT NULL,
    -- invite_activated: the code's owner.
    referrer_id uuid,
    CHECK (CASE kind
        WHEN 'user_registered' THEN phone IS NOT NULL AND referrer_id IS NULL
        ELSE phone IS NULL AND referrer_id IS NOT NULL
    END)
);

-- ---------------------------------------------------------------------------
-- Login codes
-- ---------------------------------------------------------------------------

-- The phone's live code, if any. Consumed or revoked codes are deleted.
CREATE TABLE referral_otp_codes (
    phone         text        PRIMARY KEY,
    challenge_id  uuid        NOT NULL,
    -- HMAC-SHA256 of the code; the key never reaches the database.
    code_hash     bytea       NOT NULL CHECK (length(code_hash) = 32),
    issued_at     timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    wrong_guesses integer     NOT NULL DEFAULT 0 CHECK (wrong_guesses >= 0)
);

-- Charged sends, for the resend cooldown and the send window.
CREATE TABLE referral_otp_sends (
    phone        text        NOT NULL,
    challenge_id uuid        NOT NULL,
    sent_at      timestamptz NOT NULL,
    PRIMARY KEY (phone, challenge_id)
);

CREATE INDEX referral_otp_sends_at_idx ON referral_otp_sends (phone, sent_at);

-- Wrong guesses, for the per-phone failure window (across codes).
CREATE TABLE referral_otp_failures (
    phone text        NOT NULL,
    at    timestamptz NOT NULL
);

CREATE INDEX referral_otp_failures_idx ON referral_otp_failures (phone, at);

-- ---------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------

-- The checks below rely on READ COMMITTED (a fresh snapshot per statement).
-- Under REPEATABLE READ or SERIALIZABLE a check after a lock would read a
-- stale snapshot, so refuse loudly instead of deciding wrongly.
CREATE FUNCTION referral_require_read_committed() RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'referral-sqlx needs READ COMMITTED transactions, not %',
            current_setting('transaction_isolation')
            USING ERRCODE = '55000';
    END IF;
END $$;

CREATE FUNCTION referral_lock_phone(p_phone text) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM referral_require_read_committed();
    PERFORM pg_advisory_xact_lock(hashtextextended('referral/otp/' || p_phone, 0));
END $$;

CREATE FUNCTION referral_lock_user(p_user uuid) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM referral_require_read_committed();
    PERFORM pg_advisory_xact_lock(hashtextextended('referral/user/' || p_user::text, 0));
END $$;

-- Serialises every transaction that changes the referral graph or writes an
-- outbox row: see the comments of referral_activate and referral_events.
CREATE FUNCTION referral_lock_writer() RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM referral_require_read_committed();
    PERFORM pg_advisory_xact_lock(1919247986, 1);
END $$;

-- When a rolling window holding the sorted timestamps `p_ats` frees a place
-- if it is full (`max` or more), else NULL: the (n - max + 1)-th oldest
-- leaves the window at its time + window.
CREATE FUNCTION referral_window_full_until(p_ats timestamptz[], p_max integer, p_window interval)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN coalesce(cardinality(p_ats), 0) >= p_max
                THEN p_ats[cardinality(p_ats) - p_max + 1] + p_window
           END
$$;

-- ---------------------------------------------------------------------------
-- OtpStore
-- ---------------------------------------------------------------------------

-- OtpStore::issue_otp, checks in the documented order under the phone's lock.
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

    -- 4. issue: prune what no window counts any more, charge the send, and
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

-- OtpStore::revoke_otp.
CREATE FUNCTION referral_otp_revoke(p_phone text, p_challenge uuid) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM referral_lock_phone(p_phone);
    DELETE FROM referral_otp_codes c WHERE c.phone = p_phone AND c.challenge_id = p_challenge;
    DELETE FROM referral_otp_sends s WHERE s.phone = p_phone AND s.challenge_id = p_challenge;
END $$;

-- OtpStore::verify_otp, second half. The store first reads the live code
-- (one plain SELECT), checks the guess against its hash in Rust (the HMAC
-- key is not in the database), then calls this with the verdict. Under the
-- phone's lock it re-checks everything in the documented order and applies
-- the verdict only if `p_challenge` is still the live code; a code's hash
-- never changes, so the verdict is still right. 'replaced' means a new code
-- was issued in between: the store reads again.
CREATE FUNCTION referral_otp_verify(
    p_phone             text,
    p_challenge         uuid,
    p_matched           boolean,
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

    -- 2. no live code (or another one than was checked)
    SELECT * INTO v_code FROM referral_otp_codes c WHERE c.phone = p_phone;
    IF NOT FOUND THEN
        outcome := 'no_challenge';
        RETURN;
    END IF;
    IF v_code.challenge_id <> p_challenge THEN
        outcome := 'replaced';
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

    -- 5. right: consume
    IF p_matched THEN
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

-- ---------------------------------------------------------------------------
-- ReferralStore
-- ---------------------------------------------------------------------------

-- ReferralStore::register. The unique indexes decide: each candidate code is
-- tried with INSERT ... ON CONFLICT DO NOTHING, which waits for a concurrent
-- insert of the same phone or code to commit or roll back. After a conflict,
-- a fresh snapshot tells whether the phone now has a user ('existing') or
-- the code was taken (try the next candidate).
CREATE FUNCTION referral_register(p_phone text, p_id uuid, p_created_at timestamptz, p_codes text[])
RETURNS TABLE (outcome text, id uuid, phone text, invite_code text, created_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_code text;
BEGIN
    PERFORM referral_require_read_committed();
    RETURN QUERY
        SELECT 'existing'::text, u.id, u.phone, u.invite_code, u.created_at
          FROM referral_users u WHERE u.phone = p_phone;
    IF FOUND THEN
        RETURN;
    END IF;

    FOREACH v_code IN ARRAY p_codes LOOP
        INSERT INTO referral_users (id, phone, invite_code, created_at)
        VALUES (p_id, p_phone, v_code, p_created_at)
        ON CONFLICT DO NOTHING;
        IF FOUND THEN
            PERFORM referral_lock_writer();
            INSERT INTO referral_events (at, kind, user_id, phone, invite_code)
            VALUES (p_created_at, 'user_registered', p_id, p_phone, v_code);
            RETURN QUERY SELECT 'created'::text, p_id, p_phone, v_code, p_created_at;
            RETURN;
        END IF;

        RETURN QUERY
            SELECT 'existing'::text, u.id, u.phone, u.invite_code, u.created_at
              FROM referral_users u WHERE u.phone = p_phone;
        IF FOUND THEN
            RETURN;
        END IF;
        IF EXISTS (SELECT 1 FROM referral_users u WHERE u.id = p_id) THEN
            RAISE EXCEPTION 'user id % is taken by another phone', p_id USING ERRCODE = '23505';
        END IF;
    END LOOP;

    RETURN QUERY SELECT 'codes_exhausted'::text, NULL::uuid, NULL::text, NULL::text, NULL::timestamptz;
END $$;

-- ReferralStore::activate_invite, checks in the documented order.
--
-- How the cycle check and the insert are serialised: steps 1-5 only concern
-- the activating user (and codes, which never change), so they run under
-- that user's lock. An activation that passes them takes the writer lock, a
-- single advisory lock held until commit, and only then walks the code
-- owner's chain of referrers (in a new statement, so with a snapshot that
-- sees every activation committed before the lock was granted) and inserts.
-- Activations are thus serialised one after the other, and a cycle can never
-- form: not when two users activate each other's codes at the same instant,
-- and not for longer chains closed by several concurrent activations (which
-- locking only the two endpoint rows would let through). Activations happen
-- once per user in a lifetime, so one at a time is plenty; the cost is one
-- commit's latency per activation cluster-wide.
CREATE FUNCTION referral_activate(
    p_user              uuid,
    p_code              text,
    p_now               timestamptz,
    p_failure_window_us bigint,
    p_max_failures      integer,
    OUT outcome         text,
    OUT referrer        uuid,
    OUT code            text,
    OUT at              timestamptz
)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_window interval := p_failure_window_us * interval '1 microsecond';
    v_ats    timestamptz[];
    v_owner  uuid;
    v_code   text;
BEGIN
    PERFORM referral_lock_user(p_user);

    -- 1. no such user
    IF NOT EXISTS (SELECT 1 FROM referral_users u WHERE u.id = p_user) THEN
        outcome := 'user_not_found';
        RETURN;
    END IF;

    -- 2. activated before
    SELECT a.referrer_id, r.invite_code INTO referrer, code
      FROM referral_activations a
      JOIN referral_users r ON r.id = a.referrer_id
     WHERE a.invitee_id = p_user;
    IF FOUND THEN
        outcome := CASE WHEN code = upper(p_code) THEN 'already_active' ELSE 'already_activated' END;
        RETURN;
    END IF;

    -- 3. rate limited
    SELECT array_agg(f.at ORDER BY f.at) INTO v_ats
      FROM referral_invite_failures f
     WHERE f.user_id = p_user AND f.at > p_now - v_window;
    at := referral_window_full_until(v_ats, p_max_failures, v_window);
    IF at IS NOT NULL THEN
        outcome := 'rate_limited';
        RETURN;
    END IF;

    -- 4. unknown code
    SELECT u.id, u.invite_code INTO v_owner, v_code
      FROM referral_users u WHERE upper(u.invite_code) = upper(p_code);
    IF NOT FOUND THEN
        DELETE FROM referral_invite_failures f
         WHERE f.user_id = p_user AND f.at <= p_now - v_window;
        INSERT INTO referral_invite_failures (user_id, at) VALUES (p_user, p_now);
        outcome := 'unknown_code';
        RETURN;
    END IF;

    -- 5. own code
    IF v_owner = p_user THEN
        outcome := 'self_referral';
        RETURN;
    END IF;

    -- 6. cycle: is the user the owner's referrer, or its referrer's, ...?
    PERFORM referral_lock_writer();
    IF EXISTS (
        WITH RECURSIVE up (id) AS (
            SELECT a.referrer_id FROM referral_activations a WHERE a.invitee_id = v_owner
            UNION
            SELECT a.referrer_id FROM referral_activations a JOIN up ON a.invitee_id = up.id
        )
        SELECT 1 FROM up WHERE up.id = p_user
    ) THEN
        outcome := 'cycle';
        RETURN;
    END IF;

    -- 7. activate
    INSERT INTO referral_activations (invitee_id, referrer_id, activated_at)
    VALUES (p_user, v_owner, p_now);
    UPDATE referral_users u SET referral_count = u.referral_count + 1 WHERE u.id = v_owner;
    DELETE FROM referral_invite_failures f WHERE f.user_id = p_user;
    INSERT INTO referral_events (at, kind, user_id, invite_code, referrer_id)
    VALUES (p_now, 'invite_activated', p_user, v_code, v_owner);
    outcome := 'activated';
    referrer := v_owner;
    code := v_code;
    at := NULL;
END $$;
