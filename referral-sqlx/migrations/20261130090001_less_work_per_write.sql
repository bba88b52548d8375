-- Less CPU per registration and activation (issue 13: with every
-- cluster-wide lock gone, what kept these two under half of a one-INSERT
-- transaction was the work each call does). Profiled with
-- pg_stat_statements (track = all), track_functions and perf; the guarantees
-- and the locks are the same as before, only cheaper to reach:
--
-- 1. The outbox's checks. PostgreSQL turns a table's CHECK constraints from
--    their stored text into expressions again for every statement that
--    writes the table. The two of referral_events (the kind among twelve, and
--    a CASE over eleven kinds naming each kind's fields) cost more than the
--    rest of the INSERT: about 0.25 ms of CPU per event against 0.05 ms for
--    the row and its index. They become one constraint calling
--    referral_event_fields_ok, the same rule in plpgsql (compiled once per
--    session, and only the event's own kind's test is evaluated): about
--    0.04 ms. Every event row written so far is checked again by the ALTER.
--    To add a kind, replace the function (and check the rows if it narrows).
-- 2. Two SQL helpers that PostgreSQL could not inline, because their
--    bodies are less immutable than declared, were planned again in every
--    transaction: referral_count_key (text || integer is only STABLE; now
--    text || integer::text, the same keys) and referral_window_full_until
--    (timestamptz + interval is STABLE; the function now says so).
-- 3. referral_activate: the user lock and its isolation check in line
--    (two nested plpgsql calls fewer), the advisory locks taken in plpgsql
--    expressions rather than PERFORM queries; the user, its block, its
--    earlier activation, its failed codes and the code's owner read in one
--    statement instead of four, and the user's failed codes deleted only
--    when it has some; after the tree
--    locks, "is R still a root" is one index probe (R has no referrer)
--    instead of a second walk up from the owner, which gives the same
--    answer because the chain from the owner up to R never changes (one
--    activation per user, never deleted); when the root changed, the walk
--    starts again from R; the count shard chosen in line
--    (referral_count_referral, only called from here, is dropped).
-- 4. referral_register: the isolation check in line.

-- ---------------------------------------------------------------------------
-- 1. The outbox's checks
-- ---------------------------------------------------------------------------

-- Whether an event row has the fields its kind needs: the rule of the two
-- constraints of migration 20261130040001 (referral_events_kind_check and
-- referral_events_fields_check), together. An unknown kind is refused.
CREATE FUNCTION referral_event_fields_ok(
    p_kind          text,
    p_phone         text,
    p_invite_code   text,
    p_referrer_id   uuid,
    p_conversion_id text,
    p_reversal_id   text,
    p_reward_id     uuid,
    p_reward_kind   text,
    p_amount        bigint,
    p_currency      text,
    p_payout_ref    text,
    p_operator_id   uuid,
    p_reason        text
) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    CASE p_kind
    WHEN 'user_registered' THEN
        RETURN p_phone IS NOT NULL AND p_invite_code IS NOT NULL AND p_referrer_id IS NULL;
    WHEN 'invite_activated' THEN
        RETURN p_phone IS NULL AND p_invite_code IS NOT NULL AND p_referrer_id IS NOT NULL;
    WHEN 'conversion_recorded' THEN
        RETURN p_conversion_id IS NOT NULL AND p_amount IS NOT NULL AND p_currency IS NOT NULL;
    WHEN 'conversion_reversed' THEN
        RETURN p_conversion_id IS NOT NULL AND p_reversal_id IS NOT NULL AND p_amount IS NOT NULL;
    WHEN 'reward_created' THEN
        RETURN p_reward_id IS NOT NULL AND p_reward_kind IS NOT NULL
           AND p_amount IS NOT NULL AND p_currency IS NOT NULL;
    WHEN 'reward_adjusted' THEN
        RETURN p_reward_id IS NOT NULL AND p_amount IS NOT NULL AND p_currency IS NOT NULL;
    WHEN 'reward_approved', 'reward_voided' THEN
        RETURN p_reward_id IS NOT NULL;
    WHEN 'reward_paid' THEN
        RETURN p_reward_id IS NOT NULL AND p_payout_ref IS NOT NULL;
    WHEN 'user_blocked' THEN
        RETURN p_operator_id IS NOT NULL AND p_reason IS NOT NULL;
    WHEN 'user_unblocked' THEN
        RETURN p_operator_id IS NOT NULL;
    WHEN 'reward_voided_by_operator' THEN
        RETURN p_reward_id IS NOT NULL AND p_operator_id IS NOT NULL AND p_reason IS NOT NULL;
    ELSE
        RETURN false;
    END CASE;
END $$;

ALTER TABLE referral_events
    DROP CONSTRAINT referral_events_kind_check,
    DROP CONSTRAINT referral_events_fields_check,
    ADD CONSTRAINT referral_events_fields_check CHECK (referral_event_fields_ok(
        kind, phone, invite_code, referrer_id, conversion_id, reversal_id, reward_id,
        reward_kind, amount, currency, payout_ref, operator_id, reason));

-- ---------------------------------------------------------------------------
-- 2. Helpers PostgreSQL can inline
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION referral_count_key(p_user uuid, p_shard integer) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtextextended('referral/count/' || p_user::text || '/' || p_shard::text, 0)
$$;

CREATE OR REPLACE FUNCTION referral_window_full_until(p_ats timestamptz[], p_max integer, p_window interval)
RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN coalesce(cardinality(p_ats), 0) >= p_max
                THEN p_ats[cardinality(p_ats) - p_max + 1] + p_window
           END
$$;

-- ---------------------------------------------------------------------------
-- 3. ReferralStore::activate_invite: as in migration 20261130070001, same
--    steps, same locks in the same order.
-- ---------------------------------------------------------------------------

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
    v_window  interval := p_failure_window_us * interval '1 microsecond';
    v_ats     timestamptz[];
    v_failed  bigint;
    v_blocked boolean;
    v_owner   uuid;
    v_code    text;
    v_root    uuid;
    v_mine    bigint;
    v_theirs  bigint;
    v_home    integer;
    v_shard   integer;
    v_void    text;
BEGIN
    -- The user's lock (referral_lock_user's, in line).
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'referral-sqlx needs READ COMMITTED transactions, not %',
            current_setting('transaction_isolation')
            USING ERRCODE = '55000';
    END IF;
    -- The blocking locks are taken as plpgsql expressions (their void
    -- result as text, discarded), not PERFORM: an expression is evaluated
    -- in place, a PERFORM runs a query (an executor started and ended).
    v_void := pg_advisory_xact_lock(referral_user_key(p_user))::text;

    -- Steps 1 to 4 read in one statement, under the lock: the user, its
    -- block, its earlier activation, its failed codes (those in the window,
    -- and whether it has any), the owner of the code. Failures and blocks
    -- of this user are only written under its lock, so reading them first
    -- changes no answer; the steps still decide in their order.
    SELECT EXISTS (SELECT 1 FROM referral_blocks b WHERE b.user_id = u.id),
           a.referrer_id, r.invite_code, f.recent, f.failed, o.id, o.invite_code
      INTO v_blocked, referrer, code, v_ats, v_failed, v_owner, v_code
      FROM referral_users u
      LEFT JOIN referral_activations a ON a.invitee_id = u.id
      LEFT JOIN referral_users r ON r.id = a.referrer_id
     CROSS JOIN LATERAL (
           SELECT array_agg(x.at ORDER BY x.at) FILTER (WHERE x.at > p_now - v_window) AS recent,
                  count(*) AS failed
             FROM referral_invite_failures x
            WHERE x.user_id = u.id) f
      LEFT JOIN LATERAL (
           SELECT c.id, c.invite_code FROM referral_users c
            WHERE upper(c.invite_code) = upper(p_code)) o ON true
     WHERE u.id = p_user;

    -- 1. no such user
    IF NOT FOUND THEN
        outcome := 'user_not_found';
        RETURN;
    END IF;
    --    blocked (the block is written under this same lock)
    IF v_blocked THEN
        outcome := 'blocked';
        referrer := NULL;
        code := NULL;
        RETURN;
    END IF;

    -- 2. activated before
    IF referrer IS NOT NULL THEN
        outcome := CASE WHEN code = upper(p_code) THEN 'already_active' ELSE 'already_activated' END;
        RETURN;
    END IF;

    -- 3. rate limited
    at := referral_window_full_until(v_ats, p_max_failures, v_window);
    IF at IS NOT NULL THEN
        outcome := 'rate_limited';
        RETURN;
    END IF;

    -- 4. unknown code
    IF v_owner IS NULL THEN
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
    --    every activation committed before the locks were granted: the root
    --    R is still the owner's root exactly when R still has no referrer
    --    (the chain from the owner up to R never changes: one activation per
    --    user, never deleted). If so, it stays a root until this transaction
    --    ends (its own activation needs its key exclusively). If R was
    --    activated meanwhile, the locks are given back (the block's
    --    subtransaction is rolled back) and taken again for the new root,
    --    the root of R: locks are only ever taken in key order, so
    --    activations never wait for each other in a circle. The chain only
    --    grows upwards, so this ends.
    v_root := referral_root(v_owner);
    LOOP
        IF v_root = p_user THEN
            outcome := 'cycle';
            RETURN;
        END IF;
        BEGIN
            v_mine := referral_tree_key(p_user);
            v_theirs := referral_tree_key(v_root);
            IF v_mine = v_theirs THEN
                v_void := pg_advisory_xact_lock(v_mine)::text;
            ELSIF v_mine < v_theirs THEN
                v_void := pg_advisory_xact_lock(v_mine)::text;
                v_void := pg_advisory_xact_lock_shared(v_theirs)::text;
            ELSE
                v_void := pg_advisory_xact_lock_shared(v_theirs)::text;
                v_void := pg_advisory_xact_lock(v_mine)::text;
            END IF;
            -- Still a root: keep the locks (leaving the block keeps them).
            EXIT WHEN NOT EXISTS (SELECT 1 FROM referral_activations a WHERE a.invitee_id = v_root);
            RAISE EXCEPTION USING ERRCODE = 'RFR01';
        EXCEPTION WHEN SQLSTATE 'RFR01' THEN
            NULL; -- the locks are released; look up the new root
        END;
        v_root := referral_root(v_root);
    END LOOP;

    -- 7. activate
    INSERT INTO referral_activations (invitee_id, referrer_id, activated_at)
    VALUES (p_user, v_owner, p_now);
    -- The count: the first of the owner's 16 rows whose advisory key this
    -- transaction gets without waiting, its backend's own first; only when
    -- all 16 are held, wait for its own (as referral_count_referral of
    -- migration 20261130070001 did).
    v_home := pg_backend_pid() % 16;
    FOR i IN 0..15 LOOP
        IF pg_try_advisory_xact_lock(referral_count_key(v_owner, (v_home + i) % 16)) THEN
            v_shard := (v_home + i) % 16;
            EXIT;
        END IF;
    END LOOP;
    IF v_shard IS NULL THEN
        v_shard := v_home;
        v_void := pg_advisory_xact_lock(referral_count_key(v_owner, v_shard))::text;
    END IF;
    INSERT INTO referral_count_shards AS c (user_id, shard, n)
    VALUES (v_owner, v_shard, 1)
    ON CONFLICT (user_id, shard) DO UPDATE SET n = c.n + 1;
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
    IF v_failed > 0 THEN
        DELETE FROM referral_invite_failures f WHERE f.user_id = p_user;
    END IF;
    INSERT INTO referral_events (id, at, kind, user_id, invite_code, referrer_id)
    VALUES (referral_next_event_id(), p_now, 'invite_activated', p_user, v_code, v_owner);
    outcome := 'activated';
    referrer := v_owner;
    code := v_code;
    at := NULL;
END $$;

DROP FUNCTION referral_count_referral(uuid);

-- ---------------------------------------------------------------------------
-- 4. ReferralStore::register: as in migration 20261130040001, the isolation
--    check in line.
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION referral_register(p_phone text, p_id uuid, p_created_at timestamptz, p_codes text[])
RETURNS TABLE (outcome text, id uuid, phone text, invite_code text, created_at timestamptz)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
AS $$
DECLARE
    v_code text;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'referral-sqlx needs READ COMMITTED transactions, not %',
            current_setting('transaction_isolation')
            USING ERRCODE = '55000';
    END IF;
    RETURN QUERY
        SELECT CASE WHEN EXISTS (SELECT 1 FROM referral_blocks b WHERE b.user_id = u.id)
                    THEN 'blocked' ELSE 'existing' END, u.id, u.phone, u.invite_code, u.created_at
          FROM referral_users u WHERE u.phone = p_phone;
    IF FOUND THEN
        RETURN;
    END IF;

    FOREACH v_code IN ARRAY p_codes LOOP
        INSERT INTO referral_users (id, phone, invite_code, created_at)
        VALUES (p_id, p_phone, v_code, p_created_at)
        ON CONFLICT DO NOTHING;
        IF FOUND THEN
            INSERT INTO referral_events (id, at, kind, user_id, phone, invite_code)
            VALUES (referral_next_event_id(), p_created_at, 'user_registered', p_id, p_phone, v_code);
            RETURN QUERY SELECT 'created'::text, p_id, p_phone, v_code, p_created_at;
            RETURN;
        END IF;

        RETURN QUERY
            SELECT CASE WHEN EXISTS (SELECT 1 FROM referral_blocks b WHERE b.user_id = u.id)
                        THEN 'blocked' ELSE 'existing' END, u.id, u.phone, u.invite_code, u.created_at
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
