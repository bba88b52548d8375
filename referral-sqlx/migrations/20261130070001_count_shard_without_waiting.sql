-- A referral count shard that no other transaction holds.
--
-- Since migration 20261130020001 an activation adds 1 to one of 16 count rows
-- of the referrer, the row of `pg_backend_pid() % 16`. Two activations of one
-- referrer's code from backends equal modulo 16 wanted the same row, and the
-- second waited for the first to commit: one chance in 16 for any two, and
-- the test that an activation held open makes no other activation wait
-- (an_open_activation_makes_no_unrelated_write_wait) failed now and then.
--
-- Now each count row has an advisory key, and a writer of a row holds it
-- until it commits (only referral_count_referral writes these rows). An
-- activation tries the 16 keys of its referrer without waiting, its own
-- backend's shard first, and writes the first row whose key it gets: no
-- running transaction has written that row, so the upsert cannot wait, not
-- even for a row another one has just inserted and not committed (which no
-- row lock could tell). Only when all 16 are held does it wait, for its own
-- backend's. A key collision between two referrers only moves a write to
-- another shard. The sum of the rows is the count, as before.

CREATE FUNCTION referral_count_key(p_user uuid, p_shard integer) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtextextended('referral/count/' || p_user::text || '/' || p_shard, 0)
$$;

CREATE FUNCTION referral_count_referral(p_owner uuid) RETURNS void
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
AS $$
DECLARE
    v_home  integer := pg_backend_pid() % 16;
    v_shard integer;
BEGIN
    FOR i IN 0..15 LOOP
        IF pg_try_advisory_xact_lock(referral_count_key(p_owner, (v_home + i) % 16)) THEN
            v_shard := (v_home + i) % 16;
            EXIT;
        END IF;
    END LOOP;
    IF v_shard IS NULL THEN
        v_shard := v_home;
        PERFORM pg_advisory_xact_lock(referral_count_key(p_owner, v_shard));
    END IF;
    INSERT INTO referral_count_shards AS c (user_id, shard, n)
    VALUES (p_owner, v_shard, 1)
    ON CONFLICT (user_id, shard) DO UPDATE SET n = c.n + 1;
END $$;

-- ReferralStore::activate_invite: as in migration 20261130040001; step 7
-- counts the referral through referral_count_referral.

CREATE OR REPLACE FUNCTION referral_activate(
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
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
AS $$
DECLARE
    v_window interval := p_failure_window_us * interval '1 microsecond';
    v_ats    timestamptz[];
    v_owner  uuid;
    v_code   text;
    v_root   uuid;
    v_seen   uuid;
    v_mine   bigint;
    v_theirs bigint;
BEGIN
    PERFORM referral_lock_user(p_user);

    -- 1. no such user
    IF NOT EXISTS (SELECT 1 FROM referral_users u WHERE u.id = p_user) THEN
        outcome := 'user_not_found';
        RETURN;
    END IF;
    --    blocked (the block is written under this same lock)
    IF EXISTS (SELECT 1 FROM referral_blocks b WHERE b.user_id = p_user) THEN
        outcome := 'blocked';
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

    -- 6. cycle: is the user the root of the owner's tree? The user has no
    --    referrer (step 2) and cannot get one while its user lock is held, so
    --    if it is the root now it stays the root: a cycle, no more locks.
    --    Otherwise lock the user's tree key exclusively and the root's
    --    shared, in key order, and look again in a new statement, which sees
    --    every activation committed before the locks were granted. If the
    --    root is still the same, it stays a root until this transaction ends
    --    (its own activation needs its key exclusively). If it changed (it
    --    was activated meanwhile), the locks are given back (the block's
    --    subtransaction is rolled back) and taken again for the new root:
    --    locks are only ever taken in key order, so activations never wait
    --    for each other in a circle. The chain only grows upwards, so this
    --    ends.
    LOOP
        v_root := referral_root(v_owner);
        IF v_root = p_user THEN
            outcome := 'cycle';
            RETURN;
        END IF;
        BEGIN
            v_mine := referral_tree_key(p_user);
            v_theirs := referral_tree_key(v_root);
            IF v_mine = v_theirs THEN
                PERFORM pg_advisory_xact_lock(v_mine);
            ELSIF v_mine < v_theirs THEN
                PERFORM pg_advisory_xact_lock(v_mine);
                PERFORM pg_advisory_xact_lock_shared(v_theirs);
            ELSE
                PERFORM pg_advisory_xact_lock_shared(v_theirs);
                PERFORM pg_advisory_xact_lock(v_mine);
            END IF;
            v_seen := referral_root(v_owner);
            -- Still the root: keep the locks (leaving the block keeps them).
            EXIT WHEN v_seen = v_root;
            RAISE EXCEPTION USING ERRCODE = 'RFR01';
        EXCEPTION WHEN SQLSTATE 'RFR01' THEN
            NULL; -- the locks are released; look up the new root
        END;
    END LOOP;

    -- 7. activate
    INSERT INTO referral_activations (invitee_id, referrer_id, activated_at)
    VALUES (p_user, v_owner, p_now);
    PERFORM referral_count_referral(v_owner);
    -- The owner's leaderboard row: folded in when it can be locked without
    -- waiting, with the deltas left by others; else left as a delta.
    PERFORM 1 FROM referral_referrer_rank r WHERE r.user_id = v_owner FOR UPDATE SKIP LOCKED;
    IF FOUND THEN
        WITH gone AS (
            DELETE FROM referral_rank_deltas d WHERE d.user_id = v_owner RETURNING d.at
        )
        UPDATE referral_referrer_rank r
           SET referrals = r.referrals + 1 + (SELECT count(*) FROM gone),
               latest = greatest(r.latest, p_now, (SELECT max(gone.at) FROM gone))
         WHERE r.user_id = v_owner;
    ELSIF pg_try_advisory_xact_lock(referral_rank_key(v_owner)) THEN
        -- No row yet, or one locked: every writer of a new row holds this
        -- lock until it commits, so this insert never waits.
        INSERT INTO referral_referrer_rank (user_id, referrals, latest)
        VALUES (v_owner, 1, p_now)
        ON CONFLICT (user_id) DO NOTHING;
        IF NOT FOUND THEN
            INSERT INTO referral_rank_deltas (user_id, at) VALUES (v_owner, p_now);
        END IF;
    ELSE
        INSERT INTO referral_rank_deltas (user_id, at) VALUES (v_owner, p_now);
    END IF;
    DELETE FROM referral_invite_failures f WHERE f.user_id = p_user;
    INSERT INTO referral_events (id, at, kind, user_id, invite_code, referrer_id)
    VALUES (referral_next_event_id(), p_now, 'invite_activated', p_user, v_code, v_owner);
    outcome := 'activated';
    referrer := v_owner;
    code := v_code;
    at := NULL;
END $$;
