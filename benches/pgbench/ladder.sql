-- A ceiling ladder for issue 13 (bin pg-ladder, script ladder.sh): what each
-- piece of an activation and of a registration costs in throughput, against
-- the one-INSERT floor. Each rung is one plpgsql call per transaction, as the
-- real functions are, and writes exactly what referral_activate /
-- referral_register write for that piece, in the same statements:
--
--   lad_a  the activation row only (its 3 indexes, its 2 foreign keys)
--   lad_b  lad_a + the invite_activated event as the function writes it
--   lad_c  lad_b + the count shard (try-locks, UPDATE, upsert when new)
--   lad_d  lad_c + the leaderboard statement (lock, fold, add; or a delta)
--   lad_f  referral_activate (as of migration 20261130110001) without the
--          leaderboard statement: every check and lock, no ranking row
--   reg_a  the user row only (INSERT ... ON CONFLICT DO NOTHING, 5 indexes)
--   reg_c  reg_a into a copy of referral_users whose phone is COLLATE "C"
--          with one unique index (no second phone index)
--   reg_b  reg_a + the user_registered event
--
-- The rungs take the owner's id and code from the caller (the real function
-- reads them in its statement of steps 1-4). Bench databases only: they
-- write activations without any check.

CREATE OR REPLACE FUNCTION lad_a(p_user uuid, p_owner uuid, p_code text, p_now timestamptz)
RETURNS text LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
BEGIN
    INSERT INTO referral_activations (invitee_id, referrer_id, activated_at)
    VALUES (p_user, p_owner, p_now);
    RETURN 'activated';
END $$;

CREATE OR REPLACE FUNCTION lad_b(p_user uuid, p_owner uuid, p_code text, p_now timestamptz)
RETURNS text LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
DECLARE v_base bigint; v_event bigint;
BEGIN
    INSERT INTO referral_activations (invitee_id, referrer_id, activated_at)
    VALUES (p_user, p_owner, p_now);
    v_base := pg_current_xact_id()::text::bigint;
    IF v_base >= (1::bigint << 47) THEN RAISE EXCEPTION 'x'; END IF;
    v_base := v_base << 16;
    INSERT INTO referral_events (id, at, kind, user_id, invite_code, referrer_id)
    SELECT coalesce(max(e.id) + 1, v_base), p_now, 'invite_activated', p_user, p_code, p_owner
      FROM referral_events e
     WHERE e.id >= v_base AND e.id < v_base + 65536
    RETURNING id INTO v_event;
    IF v_event >= v_base + 65536 THEN RAISE EXCEPTION 'y'; END IF;
    RETURN 'activated';
END $$;

CREATE OR REPLACE FUNCTION lad_c(p_user uuid, p_owner uuid, p_code text, p_now timestamptz)
RETURNS text LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
DECLARE v_base bigint; v_event bigint; v_home integer; v_shard integer; v_void text;
BEGIN
    INSERT INTO referral_activations (invitee_id, referrer_id, activated_at)
    VALUES (p_user, p_owner, p_now);
    v_home := pg_backend_pid() % 16;
    FOR i IN 0..15 LOOP
        IF pg_try_advisory_xact_lock(referral_count_key(p_owner, (v_home + i) % 16)) THEN
            v_shard := (v_home + i) % 16;
            EXIT;
        END IF;
    END LOOP;
    IF v_shard IS NULL THEN
        v_shard := v_home;
        v_void := pg_advisory_xact_lock(referral_count_key(p_owner, v_shard))::text;
    END IF;
    UPDATE referral_count_shards c SET n = c.n + 1 WHERE c.user_id = p_owner AND c.shard = v_shard;
    IF NOT FOUND THEN
        INSERT INTO referral_count_shards AS c (user_id, shard, n)
        VALUES (p_owner, v_shard, 1)
        ON CONFLICT (user_id, shard) DO UPDATE SET n = c.n + 1;
    END IF;
    v_base := pg_current_xact_id()::text::bigint;
    IF v_base >= (1::bigint << 47) THEN RAISE EXCEPTION 'x'; END IF;
    v_base := v_base << 16;
    INSERT INTO referral_events (id, at, kind, user_id, invite_code, referrer_id)
    SELECT coalesce(max(e.id) + 1, v_base), p_now, 'invite_activated', p_user, p_code, p_owner
      FROM referral_events e
     WHERE e.id >= v_base AND e.id < v_base + 65536
    RETURNING id INTO v_event;
    IF v_event >= v_base + 65536 THEN RAISE EXCEPTION 'y'; END IF;
    RETURN 'activated';
END $$;

CREATE OR REPLACE FUNCTION lad_d(p_user uuid, p_owner uuid, p_code text, p_now timestamptz)
RETURNS text LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
DECLARE v_base bigint; v_event bigint; v_home integer; v_shard integer; v_void text;
BEGIN
    INSERT INTO referral_activations (invitee_id, referrer_id, activated_at)
    VALUES (p_user, p_owner, p_now);
    v_home := pg_backend_pid() % 16;
    FOR i IN 0..15 LOOP
        IF pg_try_advisory_xact_lock(referral_count_key(p_owner, (v_home + i) % 16)) THEN
            v_shard := (v_home + i) % 16;
            EXIT;
        END IF;
    END LOOP;
    IF v_shard IS NULL THEN
        v_shard := v_home;
        v_void := pg_advisory_xact_lock(referral_count_key(p_owner, v_shard))::text;
    END IF;
    UPDATE referral_count_shards c SET n = c.n + 1 WHERE c.user_id = p_owner AND c.shard = v_shard;
    IF NOT FOUND THEN
        INSERT INTO referral_count_shards AS c (user_id, shard, n)
        VALUES (p_owner, v_shard, 1)
        ON CONFLICT (user_id, shard) DO UPDATE SET n = c.n + 1;
    END IF;
    WITH mine AS (
        SELECT m.user_id FROM referral_referrer_rank m
         WHERE m.user_id = p_owner
           FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM referral_rank_deltas d
         WHERE d.user_id = (SELECT mine.user_id FROM mine)
        RETURNING d.at
    )
    UPDATE referral_referrer_rank r
       SET referrals = r.referrals + 1 + (SELECT count(*) FROM gone),
           latest = greatest(r.latest, p_now, (SELECT max(gone.at) FROM gone))
     WHERE r.user_id = (SELECT mine.user_id FROM mine);
    IF NOT FOUND THEN
        IF pg_try_advisory_xact_lock(referral_rank_key(p_owner)) THEN
            INSERT INTO referral_referrer_rank (user_id, referrals, latest)
            VALUES (p_owner, 1, p_now)
            ON CONFLICT (user_id) DO NOTHING;
            IF NOT FOUND THEN
                INSERT INTO referral_rank_deltas (user_id, at) VALUES (p_owner, p_now);
            END IF;
        ELSE
            INSERT INTO referral_rank_deltas (user_id, at) VALUES (p_owner, p_now);
        END IF;
    END IF;
    v_base := pg_current_xact_id()::text::bigint;
    IF v_base >= (1::bigint << 47) THEN RAISE EXCEPTION 'x'; END IF;
    v_base := v_base << 16;
    INSERT INTO referral_events (id, at, kind, user_id, invite_code, referrer_id)
    SELECT coalesce(max(e.id) + 1, v_base), p_now, 'invite_activated', p_user, p_code, p_owner
      FROM referral_events e
     WHERE e.id >= v_base AND e.id < v_base + 65536
    RETURNING id INTO v_event;
    IF v_event >= v_base + 65536 THEN RAISE EXCEPTION 'y'; END IF;
    RETURN 'activated';
END $$;

-- referral_activate of migration 20261130110001 without the leaderboard statement.
CREATE OR REPLACE FUNCTION lad_f(
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
    v_window    interval := p_failure_window_us * interval '1 microsecond';
    v_ats       timestamptz[];
    v_failed    bigint;
    v_blocked   boolean;
    v_owner     uuid;
    v_owner_ref uuid;
    v_code      text;
    v_root      uuid;
    v_mine      bigint;
    v_theirs    bigint;
    v_home      integer;
    v_shard     integer;
    v_base      bigint;
    v_event     bigint;
    v_void      text;
BEGIN
    -- The user's lock.
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
    -- block, its earlier referrer, its failed codes (those in the window,
    -- and whether it has any), the owner of the code and the owner's own
    -- referrer (for step 6). Failures and blocks of this user are only
    -- written under its lock, so reading them first changes no answer; the
    -- steps still decide in their order.
    SELECT EXISTS (SELECT 1 FROM referral_blocks b WHERE b.user_id = u.id),
           a.referrer_id, f.recent, f.failed, o.id, o.invite_code, o.referrer_id
      INTO v_blocked, referrer, v_ats, v_failed, v_owner, v_code, v_owner_ref
      FROM referral_users u
      LEFT JOIN referral_activations a ON a.invitee_id = u.id
     CROSS JOIN LATERAL (
           SELECT array_agg(x.at ORDER BY x.at) FILTER (WHERE x.at > p_now - v_window) AS recent,
                  count(*) AS failed
             FROM referral_invite_failures x
            WHERE x.user_id = u.id) f
      LEFT JOIN LATERAL (
           SELECT c.id, c.invite_code, ca.referrer_id
             FROM referral_users c
             LEFT JOIN referral_activations ca ON ca.invitee_id = c.id
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

    -- 2. activated before (the referrer's code read only then)
    IF referrer IS NOT NULL THEN
        SELECT r.invite_code INTO code FROM referral_users r WHERE r.id = referrer;
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
    --    The first R: the owner when it had no referrer at the read above
    --    (a root then; the re-check below covers a referrer it got since),
    --    else the root of its referrer, which is the owner's root.
    v_root := CASE WHEN v_owner_ref IS NULL THEN v_owner ELSE referral_root(v_owner_ref) END;
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
    -- all 16 are held, wait for its own. Every writer of a count row holds
    -- its key, so the UPDATE finds it unlocked; the upsert only for a shard
    -- without a row yet.
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
    UPDATE referral_count_shards c SET n = c.n + 1 WHERE c.user_id = v_owner AND c.shard = v_shard;
    IF NOT FOUND THEN
        INSERT INTO referral_count_shards AS c (user_id, shard, n)
        VALUES (v_owner, v_shard, 1)
        ON CONFLICT (user_id, shard) DO UPDATE SET n = c.n + 1;
    END IF;
    IF v_failed > 0 THEN
        DELETE FROM referral_invite_failures f WHERE f.user_id = p_user;
    END IF;
    -- The event, its id as referral_next_event_id() draws it, in the INSERT.
    v_base := pg_current_xact_id()::text::bigint;
    IF v_base >= (1::bigint << 47) THEN
        RAISE EXCEPTION 'transaction id % is past the event id range', v_base;
    END IF;
    v_base := v_base << 16;
    INSERT INTO referral_events (id, at, kind, user_id, invite_code, referrer_id)
    SELECT coalesce(max(e.id) + 1, v_base), p_now, 'invite_activated', p_user, v_code, v_owner
      FROM referral_events e
     WHERE e.id >= v_base AND e.id < v_base + 65536
    RETURNING id INTO v_event;
    IF v_event >= v_base + 65536 THEN
        RAISE EXCEPTION 'more than 65536 events in one transaction';
    END IF;
    outcome := 'activated';
    referrer := v_owner;
    code := v_code;
    at := NULL;
END $$;

CREATE TABLE ru_c (
    id          uuid PRIMARY KEY,
    phone       text COLLATE "C" NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    invite_code text NOT NULL CHECK (invite_code = upper(invite_code)),
    created_at  timestamptz NOT NULL
);
CREATE UNIQUE INDEX ru_c_phone_key ON ru_c (phone);
CREATE UNIQUE INDEX ru_c_code_key ON ru_c (upper(invite_code));
CREATE INDEX ru_c_created_idx ON ru_c (created_at);

CREATE OR REPLACE FUNCTION reg_a(p_phone text, p_id uuid, p_created_at timestamptz, p_codes text[])
RETURNS text LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
BEGIN
    INSERT INTO referral_users (id, phone, invite_code, created_at)
    VALUES (p_id, p_phone, p_codes[1], p_created_at) ON CONFLICT DO NOTHING;
    RETURN 'created';
END $$;
CREATE OR REPLACE FUNCTION reg_c(p_phone text, p_id uuid, p_created_at timestamptz, p_codes text[])
RETURNS text LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
BEGIN
    INSERT INTO ru_c (id, phone, invite_code, created_at)
    VALUES (p_id, p_phone, p_codes[1], p_created_at) ON CONFLICT DO NOTHING;
    RETURN 'created';
END $$;
CREATE OR REPLACE FUNCTION reg_b(p_phone text, p_id uuid, p_created_at timestamptz, p_codes text[])
RETURNS text LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
DECLARE v_base bigint; v_event bigint;
BEGIN
    INSERT INTO referral_users (id, phone, invite_code, created_at)
    VALUES (p_id, p_phone, p_codes[1], p_created_at) ON CONFLICT DO NOTHING;
    v_base := pg_current_xact_id()::text::bigint;
    IF v_base >= (1::bigint << 47) THEN RAISE EXCEPTION 'x'; END IF;
    v_base := v_base << 16;
    INSERT INTO referral_events (id, at, kind, user_id, phone, invite_code)
    SELECT coalesce(max(e.id) + 1, v_base), p_created_at, 'user_registered', p_id, p_phone, p_codes[1]
      FROM referral_events e
     WHERE e.id >= v_base AND e.id < v_base + 65536
    RETURNING referral_events.id INTO v_event;
    IF v_event >= v_base + 65536 THEN RAISE EXCEPTION 'y'; END IF;
    RETURN 'created';
END $$;

-- The cheapest conceivable writes of the same rows, to bound every design:
--   lad_a0  the activation row into a copy of referral_activations with its
--           3 indexes and its CHECK but no foreign keys
--   lad_b0  lad_a0 + the event into a copy of referral_events with its
--           primary key only (no CHECK), its id computed without a query
--   lad_c0  lad_b0 + the count: an UPDATE of the backend's shard row (an
--           upsert when new), without any advisory lock
--   lad_n0  lad_a0 + that count, no event (as if the activation row could
--           also serve as the outbox entry)
--   reg_b0  reg_c + the event as in lad_b0
-- None of them checks anything (user, block, code, cycle) or locks any key.
CREATE TABLE lad_act (LIKE referral_activations INCLUDING ALL);
CREATE TABLE lad_ev (LIKE referral_events INCLUDING DEFAULTS);
ALTER TABLE lad_ev ADD PRIMARY KEY (id);

CREATE OR REPLACE FUNCTION lad_a0(p_user uuid, p_owner uuid, p_code text, p_now timestamptz)
RETURNS text LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
BEGIN
    INSERT INTO lad_act (invitee_id, referrer_id, activated_at) VALUES (p_user, p_owner, p_now);
    RETURN 'activated';
END $$;

CREATE OR REPLACE FUNCTION lad_b0(p_user uuid, p_owner uuid, p_code text, p_now timestamptz)
RETURNS text LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
BEGIN
    INSERT INTO lad_act (invitee_id, referrer_id, activated_at) VALUES (p_user, p_owner, p_now);
    INSERT INTO lad_ev (id, at, kind, user_id, invite_code, referrer_id)
    VALUES (pg_current_xact_id()::text::bigint << 16, p_now, 'invite_activated', p_user, p_code, p_owner);
    RETURN 'activated';
END $$;

CREATE OR REPLACE FUNCTION lad_c0(p_user uuid, p_owner uuid, p_code text, p_now timestamptz)
RETURNS text LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
DECLARE v_shard integer := pg_backend_pid() % 16;
BEGIN
    INSERT INTO lad_act (invitee_id, referrer_id, activated_at) VALUES (p_user, p_owner, p_now);
    UPDATE referral_count_shards c SET n = c.n + 1 WHERE c.user_id = p_owner AND c.shard = v_shard;
    IF NOT FOUND THEN
        INSERT INTO referral_count_shards AS c (user_id, shard, n)
        VALUES (p_owner, v_shard, 1)
        ON CONFLICT (user_id, shard) DO UPDATE SET n = c.n + 1;
    END IF;
    INSERT INTO lad_ev (id, at, kind, user_id, invite_code, referrer_id)
    VALUES (pg_current_xact_id()::text::bigint << 16, p_now, 'invite_activated', p_user, p_code, p_owner);
    RETURN 'activated';
END $$;

CREATE OR REPLACE FUNCTION lad_n0(p_user uuid, p_owner uuid, p_code text, p_now timestamptz)
RETURNS text LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
DECLARE v_shard integer := pg_backend_pid() % 16;
BEGIN
    INSERT INTO lad_act (invitee_id, referrer_id, activated_at) VALUES (p_user, p_owner, p_now);
    UPDATE referral_count_shards c SET n = c.n + 1 WHERE c.user_id = p_owner AND c.shard = v_shard;
    IF NOT FOUND THEN
        INSERT INTO referral_count_shards AS c (user_id, shard, n)
        VALUES (p_owner, v_shard, 1)
        ON CONFLICT (user_id, shard) DO UPDATE SET n = c.n + 1;
    END IF;
    RETURN 'activated';
END $$;

CREATE OR REPLACE FUNCTION reg_b0(p_phone text, p_id uuid, p_created_at timestamptz, p_codes text[])
RETURNS text LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
BEGIN
    INSERT INTO ru_c (id, phone, invite_code, created_at)
    VALUES (p_id, p_phone, p_codes[1], p_created_at) ON CONFLICT DO NOTHING;
    INSERT INTO lad_ev (id, at, kind, user_id, phone, invite_code)
    VALUES (pg_current_xact_id()::text::bigint << 16, p_created_at, 'user_registered', p_id, p_phone, p_codes[1]);
    RETURN 'created';
END $$;
