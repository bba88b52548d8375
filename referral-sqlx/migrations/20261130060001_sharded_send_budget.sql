-- The global send budget without a cluster-wide lock (issue 13).
--
-- Until now every code issue took one advisory lock (1919247986, 2) while a
-- global budget was set, held to commit: issues of all phones ran one commit
-- at a time. Now the budget B is split into 16 shards, shard s owning
-- B / 16 places, plus one for s < B % 16 (the quotas sum to B exactly). A
-- charged send is a row of referral_otp_global_sends that names its shard,
-- and a shard's window is counted like the global one was: sends in
-- (now - send_window, now]. Only the shard's row lock (a row of
-- referral_otp_budget_shards) is held to commit, so issues charging
-- different shards never wait for each other.
--
-- Exact: a send is charged to shard s only while s's row is locked and a
-- statement started after the lock was granted counted fewer than s's
-- quota; every charge of s holds the same lock to commit, so s never holds
-- more than its quota and the window never more than B.
--
-- No early refusal: referral_otp_budget_charge answers "spent" only after it
-- has seen every shard full, either in a statement's committed state (a shard
-- that looks full is skipped without locking: only a revoke can free a place
-- before the window moves, and that revoke then came after this call) or
-- under its lock. A shard another issue holds is skipped at first (SKIP
-- LOCKED) and waited for only if no other shard has room.
--
-- No deadlock: the first pass never waits, and runs in a subtransaction
-- rolled back when it charges nothing, which releases every shard lock it
-- took; the second pass takes the skipped shards in increasing order. So a
-- transaction waiting for a shard lock holds only lower ones, and one
-- holding a shard waits for nothing after it (the phone's and the client's
-- advisory locks come before, the rest of the issue takes no lock that
-- can wait).

-- One row per shard: the lock of its places.
CREATE TABLE referral_otp_budget_shards (
    shard smallint PRIMARY KEY CHECK (shard BETWEEN 0 AND 15)
);
INSERT INTO referral_otp_budget_shards (shard) SELECT generate_series(0, 15);

-- The shard a send was charged to. Sends charged before this migration are
-- dealt out newest first, round robin from shard 0: the k newest then hold
-- k / 16 rows of each shard plus one of each shard below k % 16, so however
-- many of them are still in the window, no shard holds more than its quota
-- of a budget that allowed them.
ALTER TABLE referral_otp_global_sends ADD COLUMN shard smallint;
UPDATE referral_otp_global_sends g
   SET shard = n.shard
  FROM (SELECT challenge_id,
               ((row_number() OVER (ORDER BY sent_at DESC, challenge_id) - 1) % 16)::smallint
                   AS shard
          FROM referral_otp_global_sends) n
 WHERE g.challenge_id = n.challenge_id;
ALTER TABLE referral_otp_global_sends ALTER COLUMN shard SET NOT NULL;
ALTER TABLE referral_otp_global_sends
    ADD CONSTRAINT referral_otp_global_sends_shard_check CHECK (shard BETWEEN 0 AND 15);
CREATE INDEX referral_otp_global_sends_shard_idx ON referral_otp_global_sends (shard, sent_at);

-- Shard p_shard's places of budget p_budget; the 16 quotas sum to it.
CREATE FUNCTION referral_otp_budget_quota(p_budget integer, p_shard integer) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT greatest(p_budget, 0) / 16
         + CASE WHEN p_shard < greatest(p_budget, 0) % 16 THEN 1 ELSE 0 END
$$;

-- When shard p_shard of budget p_budget has a free place again at p_now
-- (NULL: it has one now). Counts in a statement of its own, so under the
-- shard's lock it sees every charge committed before the lock was granted.
CREATE FUNCTION referral_otp_budget_full_until(
    p_shard  integer,
    p_budget integer,
    p_now    timestamptz,
    p_window interval
) RETURNS timestamptz
LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
DECLARE
    v_ats timestamptz[];
BEGIN
    SELECT array_agg(g.sent_at ORDER BY g.sent_at) INTO v_ats
      FROM referral_otp_global_sends g
     WHERE g.shard = p_shard AND g.sent_at > p_now - p_window;
    RETURN referral_window_full_until(v_ats, referral_otp_budget_quota(p_budget, p_shard),
                                      p_window);
END $$;

-- Charges challenge p_challenge's send at p_now to a shard of budget
-- p_budget with a free place, trying shard p_first first (the caller
-- spreads it, by the phone's hash), then the next ones. Returns NULL when
-- charged; otherwise the budget is spent and the result is when a place
-- frees (p_now + p_window for a budget below 1, which never has one).
CREATE FUNCTION referral_otp_budget_charge(
    p_challenge uuid,
    p_now       timestamptz,
    p_window    interval,
    p_budget    integer,
    p_first     integer
) RETURNS timestamptz
LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
DECLARE
    v_shard   integer;
    v_until   timestamptz;
    v_retry   timestamptz;
    v_skipped integer[] := '{}';
BEGIN
    -- Pass 1, never waiting: the first shard that looks free and is not
    -- held. Its subtransaction is rolled back if nothing was charged, which
    -- releases the locks of the shards found full under them.
    BEGIN
        FOR i IN 0..15 LOOP
            v_shard := (p_first + i) % 16;
            CONTINUE WHEN referral_otp_budget_quota(p_budget, v_shard) = 0;
            v_until := referral_otp_budget_full_until(v_shard, p_budget, p_now, p_window);
            IF v_until IS NULL THEN
                PERFORM 1 FROM referral_otp_budget_shards b
                 WHERE b.shard = v_shard FOR UPDATE SKIP LOCKED;
                IF NOT FOUND THEN
                    v_skipped := v_skipped || v_shard;
                    CONTINUE;
                END IF;
                v_until := referral_otp_budget_full_until(v_shard, p_budget, p_now, p_window);
                IF v_until IS NULL THEN
                    PERFORM referral_otp_budget_take(p_challenge, p_now, p_window, v_shard);
                    RETURN NULL;
                END IF;
            END IF;
            v_retry := least(v_retry, v_until);
        END LOOP;
        RAISE SQLSTATE 'RFB01';
    EXCEPTION WHEN SQLSTATE 'RFB01' THEN
        NULL;
    END;

    -- Pass 2: the shards other issues held, waiting for each in increasing
    -- order (their holders wait for no shard lock below).
    v_skipped := ARRAY(SELECT s FROM unnest(v_skipped) s ORDER BY s);
    FOREACH v_shard IN ARRAY v_skipped LOOP
        PERFORM 1 FROM referral_otp_budget_shards b WHERE b.shard = v_shard FOR UPDATE;
        v_until := referral_otp_budget_full_until(v_shard, p_budget, p_now, p_window);
        IF v_until IS NULL THEN
            PERFORM referral_otp_budget_take(p_challenge, p_now, p_window, v_shard);
            RETURN NULL;
        END IF;
        v_retry := least(v_retry, v_until);
    END LOOP;
    RETURN coalesce(v_retry, p_now + p_window);
END $$;

-- Records the charge under the shard's lock, and deletes a few of the
-- shard's sends that left the window (rows another transaction holds, a
-- revoke's, are skipped).
CREATE FUNCTION referral_otp_budget_take(
    p_challenge uuid,
    p_now       timestamptz,
    p_window    interval,
    p_shard     integer
) RETURNS void
LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
BEGIN
    DELETE FROM referral_otp_global_sends
     WHERE ctid = ANY (ARRAY(
         SELECT g.ctid FROM referral_otp_global_sends g
          WHERE g.shard = p_shard AND g.sent_at <= p_now - p_window
          ORDER BY g.sent_at LIMIT 8 FOR UPDATE SKIP LOCKED));
    INSERT INTO referral_otp_global_sends (challenge_id, sent_at, shard)
    VALUES (p_challenge, p_now, p_shard);
END $$;

-- OtpStore::issue_otp: cooldown, send window, client limit, global budget,
-- then issue (the step-up hash when the phone is stepped up).
CREATE OR REPLACE FUNCTION referral_otp_issue(
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

    -- 4. the global budget, when one is set: charged to one of its 16 shards
    --    (referral_otp_budget_charge), no cluster-wide lock.
    IF p_max_global IS NOT NULL THEN
        at := referral_otp_budget_charge(p_challenge, p_now, v_send_window, p_max_global,
                                         (hashtextextended(p_phone, 0) & 15)::integer);
        IF at IS NOT NULL THEN
            outcome := 'budget_spent';
            RETURN;
        END IF;
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

