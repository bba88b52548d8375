-- Registrations and activations in parallel: no cluster-wide lock any more.
--
-- Before, every registration and activation took one advisory lock (the
-- "writer lock", referral_lock_writer) and held it until commit, so the
-- cluster committed one of them at a time, WAL flush included. Its two jobs
-- are now done by locks and orderings that only make related transactions
-- wait for each other:
--
-- 1. No referral cycle: tree locks (referral_activate, below). Each user has
--    at most one referrer, so the graph is a forest, and an activation of
--    user U with a code of owner O closes a cycle exactly when U is the root
--    of O's tree. The activation locks U's tree key EXCLUSIVELY and the key
--    of root(O) SHARED, both in key order, then re-checks root(O) in a new
--    statement. A root can only get a referrer by its own activation, which
--    holds its key exclusively, so the root seen after locking stays a root
--    until this transaction commits. Activations into different trees, or
--    into the same tree, never wait for each other; only an activation of a
--    root waits for (and makes wait) those joining its tree. The proof is in
--    referral-sqlx/README.md.
--
-- 2. A complete, ordered outbox: event ids follow transaction ids. An event
--    id is (xid8 of its transaction << 16) + its number in the transaction,
--    and a reader only returns events of transactions older than every
--    transaction of this database still running (events_after in
--    src/users.rs). A transaction that commits later has a larger xid, so its
--    events get larger ids than any returned before: a consumer passing the
--    last id it saw misses nothing, whatever the commit order, and a rolled
--    back transaction leaves a gap that is never filled.
--
-- 3. The referral count is sharded: each activation adds 1 to one of 16 rows
--    of the referrer (picked by the session's backend pid), and a profile
--    sums at most 16 rows. Before, every activation of one code updated the
--    referrer's row and so committed one after the other.
--
-- Needs PostgreSQL 13 or later (xid8, pg_current_xact_id, pg_snapshot_*).

-- ---------------------------------------------------------------------------
-- The sharded referral count
-- ---------------------------------------------------------------------------

CREATE TABLE referral_count_shards (
    user_id uuid     NOT NULL REFERENCES referral_users (id),
    shard   smallint NOT NULL CHECK (shard BETWEEN 0 AND 15),
    n       bigint   NOT NULL CHECK (n >= 0),
    PRIMARY KEY (user_id, shard)
);

INSERT INTO referral_count_shards (user_id, shard, n)
SELECT u.id, 0, u.referral_count FROM referral_users u WHERE u.referral_count > 0;

ALTER TABLE referral_users DROP COLUMN referral_count;

-- ---------------------------------------------------------------------------
-- Event ids that follow transaction ids
-- ---------------------------------------------------------------------------

ALTER TABLE referral_events ALTER COLUMN id DROP IDENTITY IF EXISTS;

-- Every id written before this migration was drawn by a transaction that
-- wrote an event, so there are fewer of them than transaction ids so far:
-- they all sort before the ids written from now on. Checked, not assumed.
DO $$
BEGIN
    IF (SELECT max(id) FROM referral_events) >= (pg_current_xact_id()::text::bigint << 16) THEN
        RAISE EXCEPTION 'referral_events holds ids past the new id range; contact the maintainers';
    END IF;
END $$;

-- The next event id of the current transaction: its xid8 shifted left by 16
-- bits, plus the number of events it wrote before (its own rows are visible
-- to it, and no other transaction writes in its range). Calling it assigns
-- the transaction an xid if it had none, before the id is used.
CREATE FUNCTION referral_next_event_id() RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_xid  bigint := pg_current_xact_id()::text::bigint;
    v_base bigint;
    v_last bigint;
BEGIN
    IF v_xid >= (1::bigint << 47) THEN
        RAISE EXCEPTION 'transaction id % is past the event id range', v_xid;
    END IF;
    v_base := v_xid << 16;
    SELECT max(e.id) INTO v_last
      FROM referral_events e
     WHERE e.id >= v_base AND e.id < v_base + 65536;
    IF v_last IS NULL THEN
        RETURN v_base;
    END IF;
    IF v_last + 1 >= v_base + 65536 THEN
        RAISE EXCEPTION 'more than 65536 events in one transaction';
    END IF;
    RETURN v_last + 1;
END $$;

-- The first event id a reader may NOT return yet: every event below it was
-- written by a transaction that has ended (committed: visible; rolled back:
-- never will be), and every transaction still able to commit an event has
-- an id at or above it. Computed from the snapshot of the calling statement
-- (so it agrees with the rows that statement sees): the oldest transaction
-- the snapshot sees running, skipping those known to belong to another
-- database (they cannot write this database's events; pg_stat_activity
-- tells, and an xid it does not show is counted as this database's), or the
-- snapshot's xmax when none runs.
CREATE FUNCTION referral_events_horizon() RETURNS bigint
LANGUAGE sql STABLE AS $$
    WITH s AS (SELECT pg_current_snapshot() AS snap)
    SELECT coalesce(
               (SELECT min(x)
                  FROM pg_snapshot_xip(s.snap) AS x
                 WHERE NOT EXISTS (
                       SELECT 1 FROM pg_stat_activity a
                        WHERE a.backend_xid = x::xid
                          AND a.datid IS DISTINCT FROM
                              (SELECT d.oid FROM pg_database d WHERE d.datname = current_database()))),
               pg_snapshot_xmax(s.snap))::text::bigint << 16
      FROM s
$$;

-- ---------------------------------------------------------------------------
-- Tree locks
-- ---------------------------------------------------------------------------

-- The advisory key of a user's tree lock. A collision between two users
-- only makes unrelated activations wait; it cannot break a rule.
CREATE FUNCTION referral_tree_key(p_user uuid) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtextextended('referral/tree/' || p_user::text, 0)
$$;

-- The root of a user's tree: the first user up the referrer chain without a
-- referrer (the user itself when it has none). UNION stops on a cycle,
-- which cannot exist, rather than loop.
CREATE FUNCTION referral_root(p_user uuid) RETURNS uuid
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE up (id) AS (
        SELECT p_user
        UNION
        SELECT a.referrer_id FROM referral_activations a JOIN up ON a.invitee_id = up.id
    )
    SELECT up.id FROM up
     WHERE NOT EXISTS (SELECT 1 FROM referral_activations a WHERE a.invitee_id = up.id)
     LIMIT 1
$$;

-- The writer lock is gone: nothing takes it any more.
DROP FUNCTION referral_lock_writer();

-- ---------------------------------------------------------------------------
-- ReferralStore::register: as in migration 1, without the writer lock.
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION referral_register(p_phone text, p_id uuid, p_created_at timestamptz, p_codes text[])
RETURNS TABLE (outcome text, id uuid, phone text, invite_code text, created_at timestamptz)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
AS $$
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
            INSERT INTO referral_events (id, at, kind, user_id, phone, invite_code)
            VALUES (referral_next_event_id(), p_created_at, 'user_registered', p_id, p_phone, v_code);
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

-- ---------------------------------------------------------------------------
-- ReferralStore::activate_invite: steps 1-5 as in migration 1 (under the
-- activating user's lock); step 6 under tree locks instead of the writer
-- lock; step 7 counts in a shard.
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
    INSERT INTO referral_count_shards AS c (user_id, shard, n)
    VALUES (v_owner, pg_backend_pid() % 16, 1)
    ON CONFLICT (user_id, shard) DO UPDATE SET n = c.n + 1;
    DELETE FROM referral_invite_failures f WHERE f.user_id = p_user;
    INSERT INTO referral_events (id, at, kind, user_id, invite_code, referrer_id)
    VALUES (referral_next_event_id(), p_now, 'invite_activated', p_user, v_code, v_owner);
    outcome := 'activated';
    referrer := v_owner;
    code := v_code;
    at := NULL;
END $$;
