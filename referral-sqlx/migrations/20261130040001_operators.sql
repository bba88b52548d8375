-- Operators (referral-core's OperatorStore): blocks, operator voids, user
-- search, the leaderboard, statistics and exports.
--
-- What a block does is stated in referral-core's `operator` module. What
-- carries it here:
--
--   * The block is a row of referral_blocks, written and deleted by
--     referral_block_user / referral_unblock_user under the user's advisory
--     lock ('referral/user/' || id, the lock referral_activate already takes
--     for the activating user) held EXCLUSIVELY, taken before anything is
--     written (so before the transaction has an id).
--   * Activation (referral_activate) holds that same lock exclusively from
--     its first step and refuses a blocked user: 'blocked'.
--   * Login (referral_register) answers 'blocked' for a blocked phone's user
--     (one statement: it reads the user and the block in one snapshot).
--   * A conversion (referral_record_conversion) takes the lock of the
--     referee and of the referrer SHARED, in key order, before it writes
--     anything, and decides qualification in a later statement: a block is
--     either committed before (seen: nothing earned) or waits until the
--     conversion commits. Conversions never wait for each other here.
--   * Approval (referral_approve_due_rewards) skips pending rewards marked
--     `held` (a block marks its user's pending rewards, an unblock clears
--     them, both under the lock, so a run never walks a blocked user's
--     rewards), then takes each owner's lock shared WITHOUT waiting
--     (pg_try_advisory_xact_lock_shared: an owner being blocked, unblocked or
--     activated at that instant waits for the next run), and drops the
--     rewards of blocked owners in a new statement.
--
-- Why the lock comes before any write: outbox event ids follow transaction
-- ids (migration 20261130020001), and a transaction gets its id at its
-- first write. With the lock taken first, of a block and a conversion (an
-- approval, an activation) the one that waited gets its id after the other
-- committed, so the outbox order is the order in which they took effect:
-- an event after a user's `user_blocked` never shows the block ignored.
--
-- Lock order, added to the one of migration 20261130010001: user locks
-- (advisory, by key) before any row lock; a block then locks its user's
-- pending rewards by id, as reversals do. No call waits for an advisory
-- lock while holding a row lock, except a conversion whose referee was
-- activated between its two reads of the activation (it then takes the new
-- referrer's lock shared; the holders of that lock exclusively wait for no
-- row a conversion holds).
--
-- The leaderboard: referral_referrer_rank keeps each referrer's total and
-- latest activation, indexed in leaderboard order, so the all-time board
-- reads `limit` index entries. An activation adds to it only when it can
-- lock the referrer's row without waiting (SKIP LOCKED), or create it
-- under the referrer's rank key taken without waiting; otherwise (another
-- activation of the same code holds the row or is creating it) it appends
-- a row to referral_rank_deltas, which the next activation of that referrer
-- that gets the row, or the next leaderboard read, folds in. So a viral code's
-- activations never queue on one row (the reason the count is sharded,
-- migration 20261130020001), and the board is exact when read. The
-- trade-off is described in referral-sqlx/README.md.

-- ---------------------------------------------------------------------------
-- Tables and indexes
-- ---------------------------------------------------------------------------

CREATE TABLE referral_blocks (
    user_id    uuid        PRIMARY KEY REFERENCES referral_users (id),
    reason     text        NOT NULL CHECK (reason <> '' AND char_length(reason) <= 500),
    blocked_at timestamptz NOT NULL,
    -- The operator's user id (not a foreign key: operators may be users of
    -- another system).
    blocked_by uuid        NOT NULL
);

-- Pending rewards of a blocked user are held: approval runs do not see them.
ALTER TABLE referral_rewards ADD COLUMN held boolean NOT NULL DEFAULT false;
CREATE INDEX referral_rewards_due_idx ON referral_rewards (created_at, id)
    WHERE status = 'pending' AND NOT held;
DROP INDEX referral_rewards_pending_idx;
-- The rewards export, by (created_at, id).
CREATE INDEX referral_rewards_created_idx ON referral_rewards (created_at, id);
-- A user's welcome reward (at most one): the leaderboard's `rewarded` is
-- their approved and paid totals less it.
CREATE INDEX referral_rewards_welcome_idx ON referral_rewards (user_id) WHERE kind = 'welcome';

-- An operator voids approved rewards too (keeping approved_at: when it was
-- approved), and a voided reward's clawbacks with it.
ALTER TABLE referral_rewards DROP CONSTRAINT referral_rewards_check;
ALTER TABLE referral_rewards ADD CONSTRAINT referral_rewards_check CHECK (
    CASE WHEN kind = 'clawback'
         THEN amount < 0 AND amount = original_amount AND reverses IS NOT NULL
              AND conversion_id IS NOT NULL AND status IN ('approved', 'paid', 'voided')
         ELSE amount > 0 AND amount <= original_amount AND reverses IS NULL END);
ALTER TABLE referral_rewards DROP CONSTRAINT referral_rewards_check2;
ALTER TABLE referral_rewards ADD CONSTRAINT referral_rewards_check2 CHECK (CASE status
    WHEN 'pending' THEN approved_at IS NULL
    WHEN 'voided' THEN true
    ELSE approved_at IS NOT NULL END);

-- Search by phone prefix and in phone order: byte order whatever the
-- database's collation (a range on this index, never a scan).
CREATE INDEX referral_users_phone_c_idx ON referral_users (phone COLLATE "C");
-- Statistics per day.
CREATE INDEX referral_users_created_idx ON referral_users (created_at);
CREATE INDEX referral_conversions_recorded_idx ON referral_conversions (recorded_at);
-- The referrals export, by (activated_at, invitee_id); the windowed
-- leaderboard and statistics read ranges of it.
CREATE INDEX referral_activations_at_idx ON referral_activations (activated_at, invitee_id);

-- Each referrer's total and latest activation, in leaderboard order.
CREATE TABLE referral_referrer_rank (
    user_id   uuid        PRIMARY KEY REFERENCES referral_users (id),
    referrals bigint      NOT NULL CHECK (referrals > 0),
    latest    timestamptz NOT NULL
);
CREATE INDEX referral_referrer_rank_idx
    ON referral_referrer_rank (referrals DESC, latest, user_id);

-- Activations not yet in referral_referrer_rank (its row was locked by
-- another activation of the same referrer).
CREATE TABLE referral_rank_deltas (
    user_id uuid        NOT NULL REFERENCES referral_users (id),
    at      timestamptz NOT NULL
);
CREATE INDEX referral_rank_deltas_idx ON referral_rank_deltas (user_id);

INSERT INTO referral_referrer_rank (user_id, referrals, latest)
SELECT a.referrer_id, count(*), max(a.activated_at)
  FROM referral_activations a GROUP BY a.referrer_id;

-- The outbox gains the operators' events, naming the operator.
ALTER TABLE referral_events
    ADD COLUMN operator_id uuid,
    ADD COLUMN reason      text;
ALTER TABLE referral_events DROP CONSTRAINT referral_events_kind_check;
ALTER TABLE referral_events DROP CONSTRAINT referral_events_fields_check;
ALTER TABLE referral_events ADD CONSTRAINT referral_events_kind_check CHECK (kind IN (
    'user_registered', 'invite_activated', 'conversion_recorded', 'conversion_reversed',
    'reward_created', 'reward_adjusted', 'reward_approved', 'reward_voided', 'reward_paid',
    'user_blocked', 'user_unblocked', 'reward_voided_by_operator'));
ALTER TABLE referral_events ADD CONSTRAINT referral_events_fields_check CHECK (CASE kind
    WHEN 'user_registered' THEN phone IS NOT NULL AND invite_code IS NOT NULL AND referrer_id IS NULL
    WHEN 'invite_activated' THEN phone IS NULL AND invite_code IS NOT NULL AND referrer_id IS NOT NULL
    WHEN 'conversion_recorded' THEN conversion_id IS NOT NULL AND amount IS NOT NULL AND currency IS NOT NULL
    WHEN 'conversion_reversed' THEN conversion_id IS NOT NULL AND reversal_id IS NOT NULL AND amount IS NOT NULL
    WHEN 'reward_created' THEN reward_id IS NOT NULL AND reward_kind IS NOT NULL
                               AND amount IS NOT NULL AND currency IS NOT NULL
    WHEN 'reward_adjusted' THEN reward_id IS NOT NULL AND amount IS NOT NULL AND currency IS NOT NULL
    WHEN 'reward_paid' THEN reward_id IS NOT NULL AND payout_ref IS NOT NULL
    WHEN 'user_blocked' THEN operator_id IS NOT NULL AND reason IS NOT NULL
    WHEN 'user_unblocked' THEN operator_id IS NOT NULL
    WHEN 'reward_voided_by_operator' THEN reward_id IS NOT NULL AND operator_id IS NOT NULL
                                          AND reason IS NOT NULL
    ELSE reward_id IS NOT NULL
END);

-- ---------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------

-- The advisory key of a user's lock (referral_lock_user's).
CREATE FUNCTION referral_user_key(p_user uuid) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtextextended('referral/user/' || p_user::text, 0)
$$;

-- Takes the locks of these users SHARED (NULLs ignored), in key order.
CREATE FUNCTION referral_lock_users_shared(p_users uuid[]) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_key bigint;
BEGIN
    FOR v_key IN
        SELECT DISTINCT referral_user_key(u) FROM unnest(p_users) AS u
         WHERE u IS NOT NULL ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock_shared(v_key);
    END LOOP;
END $$;

-- The advisory key every writer of a new referral_referrer_rank row holds
-- (an activation only tries it, so it never waits for another's insert).
CREATE FUNCTION referral_rank_key(p_user uuid) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtextextended('referral/rank/' || p_user::text, 0)
$$;

-- Folds the pending deltas of every referrer into referral_referrer_rank
-- (in user order, each under its rank key, then its row: an activation
-- inserting or holding one is waited for, never the reverse); a referrer
-- whose first activation's insert was rolled back gets its row here.
CREATE FUNCTION referral_rank_fold() RETURNS void
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
AS $$
DECLARE
    v_user uuid;
BEGIN
    FOR v_user IN SELECT DISTINCT d.user_id FROM referral_rank_deltas d ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(referral_rank_key(v_user));
        PERFORM 1 FROM referral_referrer_rank r WHERE r.user_id = v_user FOR UPDATE;
        WITH gone AS (
            DELETE FROM referral_rank_deltas d WHERE d.user_id = v_user RETURNING d.at
        )
        INSERT INTO referral_referrer_rank AS r (user_id, referrals, latest)
        SELECT v_user, count(*), max(gone.at) FROM gone HAVING count(*) > 0
        ON CONFLICT (user_id) DO UPDATE
           SET referrals = r.referrals + excluded.referrals,
               latest = greatest(r.latest, excluded.latest);
    END LOOP;
END $$;

-- A referrer's approved and paid referrer-side rewards per currency (zero
-- totals left out): their totals rows less their welcome reward, O(the
-- user's currencies).
CREATE FUNCTION referral_rewarded(p_user uuid) RETURNS TABLE (currency text, amount bigint)
LANGUAGE sql STABLE AS $$
    SELECT m.currency, m.amount
      FROM (SELECT b.currency,
                   (b.approved + b.paid - coalesce(
                       (SELECT sum(w.amount) FROM referral_rewards w
                         WHERE w.user_id = p_user AND w.kind = 'welcome'
                           AND w.currency = b.currency AND w.status IN ('approved', 'paid')),
                       0))::bigint AS amount
              FROM referral_reward_balances b WHERE b.user_id = p_user) AS m
     WHERE m.amount <> 0
$$;

-- ---------------------------------------------------------------------------
-- OperatorStore::block_user / unblock_user
-- ---------------------------------------------------------------------------

-- Under the user's lock, exclusively: 'user_not_found', 'already_blocked'
-- (the first block), or 'blocked': the block, its event, and the user's
-- pending rewards held (locked by id first, the order reversals use).
CREATE FUNCTION referral_block_user(p_user uuid, p_reason text, p_by uuid, p_now timestamptz,
                                    OUT outcome text, OUT block_reason text,
                                    OUT block_at timestamptz, OUT block_by uuid)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
AS $$
BEGIN
    PERFORM referral_lock_user(p_user);
    IF NOT EXISTS (SELECT 1 FROM referral_users u WHERE u.id = p_user) THEN
        outcome := 'user_not_found';
        RETURN;
    END IF;
    SELECT b.reason, b.blocked_at, b.blocked_by INTO block_reason, block_at, block_by
      FROM referral_blocks b WHERE b.user_id = p_user;
    IF FOUND THEN
        outcome := 'already_blocked';
        RETURN;
    END IF;
    INSERT INTO referral_blocks (user_id, reason, blocked_at, blocked_by)
    VALUES (p_user, p_reason, p_now, p_by);
    INSERT INTO referral_events (id, at, kind, user_id, operator_id, reason)
    VALUES (referral_next_event_id(), p_now, 'user_blocked', p_user, p_by, p_reason);
    PERFORM 1 FROM referral_rewards r
      WHERE r.user_id = p_user AND r.status = 'pending' ORDER BY r.id FOR UPDATE;
    UPDATE referral_rewards r SET held = true
     WHERE r.user_id = p_user AND r.status = 'pending' AND NOT r.held;
    outcome := 'blocked';
    block_reason := p_reason;
    block_at := p_now;
    block_by := p_by;
END $$;

-- Under the user's lock, exclusively: 'user_not_found', 'not_blocked', or
-- 'unblocked' with the block removed: its event, and the user's held
-- rewards released for the next approval run.
CREATE FUNCTION referral_unblock_user(p_user uuid, p_by uuid, p_now timestamptz,
                                      OUT outcome text, OUT block_reason text,
                                      OUT block_at timestamptz, OUT block_by uuid)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
AS $$
BEGIN
    PERFORM referral_lock_user(p_user);
    IF NOT EXISTS (SELECT 1 FROM referral_users u WHERE u.id = p_user) THEN
        outcome := 'user_not_found';
        RETURN;
    END IF;
    DELETE FROM referral_blocks b WHERE b.user_id = p_user
    RETURNING b.reason, b.blocked_at, b.blocked_by INTO block_reason, block_at, block_by;
    IF NOT FOUND THEN
        outcome := 'not_blocked';
        RETURN;
    END IF;
    INSERT INTO referral_events (id, at, kind, user_id, operator_id)
    VALUES (referral_next_event_id(), p_now, 'user_unblocked', p_user, p_by);
    PERFORM 1 FROM referral_rewards r
      WHERE r.user_id = p_user AND r.status = 'pending' ORDER BY r.id FOR UPDATE;
    UPDATE referral_rewards r SET held = false WHERE r.user_id = p_user AND r.held;
    outcome := 'unblocked';
END $$;

-- ---------------------------------------------------------------------------
-- OperatorStore::void_reward
-- ---------------------------------------------------------------------------

-- Locks the reward, then its clawbacks (by id), then the owner's totals:
-- 'not_found', 'already_voided', 'not_voidable' (paid, a clawback, or a
-- paid clawback), or 'voided': it and its clawbacks voided at their
-- amounts, a 'reward_voided' event each and one 'reward_voided_by_operator'.
CREATE FUNCTION referral_void_reward(p_reward uuid, p_reason text, p_by uuid, p_now timestamptz)
RETURNS TABLE (
    outcome text,
    r_id uuid, r_user uuid, r_kind text, r_currency text, r_amount bigint, r_original bigint,
    r_status text, r_conversion text, r_referral uuid, r_referral_phone text, r_reverses uuid,
    r_created_at timestamptz, r_approved_at timestamptz, r_paid_at timestamptz, r_payout_ref text
)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
AS $$
DECLARE
    v_reward referral_rewards%ROWTYPE;
    v_row    record;
BEGIN
    PERFORM referral_require_read_committed();
    SELECT * INTO v_reward FROM referral_rewards r WHERE r.id = p_reward FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'not_found';
        RETURN NEXT;
        RETURN;
    END IF;
    IF v_reward.status = 'voided' THEN
        outcome := 'already_voided';
    ELSIF v_reward.status = 'paid' OR v_reward.kind = 'clawback' THEN
        outcome := 'not_voidable';
    ELSE
        PERFORM 1 FROM referral_rewards k WHERE k.reverses = p_reward ORDER BY k.id FOR UPDATE;
        IF EXISTS (SELECT 1 FROM referral_rewards k
                    WHERE k.reverses = p_reward AND k.status = 'paid') THEN
            outcome := 'not_voidable';
        ELSE
            PERFORM referral_lock_balance(v_reward.user_id, v_reward.currency);
            FOR v_row IN
                SELECT r.id, r.status, r.amount FROM referral_rewards r
                 WHERE r.id = p_reward AND r.status <> 'voided'
                UNION ALL
                (SELECT k.id, k.status, k.amount FROM referral_rewards k
                  WHERE k.reverses = p_reward AND k.status <> 'voided'
                  ORDER BY k.created_at, k.id)
            LOOP
                UPDATE referral_rewards r SET status = 'voided', held = false
                 WHERE r.id = v_row.id;
                UPDATE referral_reward_balances b
                   SET pending = b.pending - CASE WHEN v_row.status = 'pending'
                                                  THEN v_row.amount ELSE 0 END,
                       approved = b.approved - CASE WHEN v_row.status = 'approved'
                                                    THEN v_row.amount ELSE 0 END,
                       live = b.live - 1
                 WHERE b.user_id = v_reward.user_id AND b.currency = v_reward.currency;
                PERFORM referral_reward_event(p_now, 'reward_voided', v_reward.user_id, v_row.id,
                                              NULL, NULL, NULL, NULL, NULL, NULL);
            END LOOP;
            INSERT INTO referral_events (id, at, kind, user_id, reward_id, operator_id, reason)
            VALUES (referral_next_event_id(), p_now, 'reward_voided_by_operator',
                    v_reward.user_id, p_reward, p_by, p_reason);
            outcome := 'voided';
        END IF;
    END IF;
    RETURN QUERY
        SELECT outcome, r.id, r.user_id, r.kind, r.currency, r.amount, r.original_amount,
               r.status, r.conversion_id::text, r.referral_id, r.referral_phone,
               r.reverses, r.created_at, r.approved_at, r.paid_at, r.payout_ref::text
          FROM referral_reward_rows r WHERE r.id = p_reward;
END $$;

-- ---------------------------------------------------------------------------
-- OperatorStore::leaderboard, all time
-- ---------------------------------------------------------------------------

-- Folds the pending deltas, then reads the top p_limit referrers from
-- referral_referrer_rank_idx: one row per referrer and rewarded currency
-- (currency NULL when none), in board order, then currency order.
-- `rewarded`: approved and paid rewards less the welcome reward (the only
-- reward that is not referrer-side), from the totals rows.
CREATE FUNCTION referral_leaderboard(p_limit integer)
RETURNS TABLE (user_id uuid, phone text, referrals bigint, latest timestamptz,
               currency text, rewarded bigint)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
AS $$
BEGIN
    PERFORM referral_rank_fold();
    RETURN QUERY
        SELECT t.user_id, u.phone, t.referrals, t.latest, m.currency, m.amount
          FROM (SELECT r.user_id, r.referrals, r.latest FROM referral_referrer_rank r
                 ORDER BY r.referrals DESC, r.latest, r.user_id LIMIT p_limit) AS t
          JOIN referral_users u ON u.id = t.user_id
          LEFT JOIN LATERAL referral_rewarded(t.user_id) AS m ON true
         ORDER BY t.referrals DESC, t.latest, t.user_id, m.currency COLLATE "C";
END $$;

-- ---------------------------------------------------------------------------
-- ReferralStore::register: as in migration 20261130020001; a blocked user's
-- phone answers 'blocked' (the user and the block read in one statement).
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

-- ---------------------------------------------------------------------------
-- ReferralStore::activate_invite: as in migration 20261130020001; a blocked
-- user is refused after step 1 (under the user's lock, which a block takes
-- too), and step 7 keeps the leaderboard row.
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
    INSERT INTO referral_count_shards AS c (user_id, shard, n)
    VALUES (v_owner, pg_backend_pid() % 16, 1)
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
    DELETE FROM referral_invite_failures f WHERE f.user_id = p_user;
    INSERT INTO referral_events (id, at, kind, user_id, invite_code, referrer_id)
    VALUES (referral_next_event_id(), p_now, 'invite_activated', p_user, v_code, v_owner);
    outcome := 'activated';
    referrer := v_owner;
    code := v_code;
    at := NULL;
END $$;
-- ---------------------------------------------------------------------------
-- RewardStore::record_conversion: as in migration 20261130010001, with the
-- blocks of the referee and the referrer read under their locks.
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION referral_record_conversion(
    p_id             text,
    p_user           uuid,   -- the user by id, or
    p_phone          text,   -- by phone
    p_amount         bigint,
    p_currency       text,
    p_kind           text,
    p_occurred_at    timestamptz,  -- NULL: now
    p_now            timestamptz,
    p_ids            uuid[],
    p_fixed          bigint,
    p_bp             integer,
    p_window_us      bigint,
    p_min_amount     bigint,
    p_policy_currency text,
    p_cap            bigint,        -- NULL: no cap
    p_cap_window_us  bigint
)
RETURNS TABLE (
    outcome text,
    c_id text, c_user uuid, c_amount bigint, c_currency text, c_kind text,
    c_occurred_at timestamptz, c_recorded_at timestamptz, c_reversed bigint,
    r_id uuid, r_user uuid, r_kind text, r_currency text, r_amount bigint, r_original bigint,
    r_status text, r_conversion text, r_referral uuid, r_referral_phone text, r_reverses uuid,
    r_created_at timestamptz, r_approved_at timestamptz, r_paid_at timestamptz, r_payout_ref text
)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
AS $$
DECLARE
    v_user      uuid;
    v_conv      referral_conversions%ROWTYPE;
    v_occurred  timestamptz := coalesce(p_occurred_at, p_now);
    v_referrer  uuid;
    v_seen      uuid;
    v_activated timestamptz;
    v_qualified boolean := false;
    v_fixed     bigint := 0;
    v_percent   bigint := 0;
    v_left      bigint;
    v_next      integer := 1;
    v_made      uuid[] := '{}';
BEGIN
    PERFORM referral_require_read_committed();

    -- 1. no such user
    IF p_user IS NOT NULL THEN
        SELECT u.id INTO v_user FROM referral_users u WHERE u.id = p_user;
    ELSE
        SELECT u.id INTO v_user FROM referral_users u WHERE u.phone = p_phone;
    END IF;
    IF v_user IS NULL THEN
        outcome := 'user_not_found';
        RETURN NEXT;
        RETURN;
    END IF;

    -- Blocks: the referee's and the referrer's locks, shared, before
    -- anything is written (a block holds one exclusively while it writes).
    SELECT a.referrer_id INTO v_seen FROM referral_activations a WHERE a.invitee_id = v_user;
    PERFORM referral_lock_users_shared(ARRAY[v_user, v_seen]);

    -- 2. the id is taken: the same conversion, or a conflict. The insert
    --    waits for a concurrent one of the same id to commit or roll back.
    --    Whether it qualifies is decided under the activation's lock below,
    --    in this same transaction.
    INSERT INTO referral_conversions (id, user_id, amount, currency, kind, occurred_at,
                                      recorded_at, qualified)
    VALUES (p_id, v_user, p_amount, p_currency, p_kind, v_occurred, p_now, false)
    ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        SELECT * INTO v_conv FROM referral_conversions c WHERE c.id = p_id;
        IF v_conv.user_id = v_user AND v_conv.amount = p_amount AND v_conv.currency = p_currency
           AND v_conv.kind = p_kind
           AND (p_occurred_at IS NULL OR v_conv.occurred_at = p_occurred_at) THEN
            outcome := 'existing';
            RETURN QUERY
                SELECT outcome, c.id::text, c.user_id, c.amount, c.currency, c.kind::text,
                       c.occurred_at, c.recorded_at, c.reversed_amount,
                       r.id, r.user_id, r.kind, r.currency, r.amount, r.original_amount,
                       r.status, r.conversion_id::text, r.referral_id, r.referral_phone,
                       r.reverses, r.created_at, r.approved_at, r.paid_at, r.payout_ref::text
                  FROM referral_conversions c
                  LEFT JOIN referral_reward_rows r
                         ON r.conversion_id = c.id AND r.kind <> 'clawback'
                 WHERE c.id = p_id
                 ORDER BY r.kind;
        ELSE
            outcome := 'conflict';
            RETURN QUERY
                SELECT outcome, c.id::text, c.user_id, c.amount, c.currency, c.kind::text,
                       c.occurred_at, c.recorded_at, c.reversed_amount,
                       NULL::uuid, NULL::uuid, NULL::text, NULL::text, NULL::bigint, NULL::bigint,
                       NULL::text, NULL::text, NULL::uuid, NULL::text, NULL::uuid,
                       NULL::timestamptz, NULL::timestamptz, NULL::timestamptz, NULL::text
                  FROM referral_conversions c WHERE c.id = p_id;
        END IF;
        RETURN;
    END IF;

    -- 3. recorded
    PERFORM referral_reward_event(p_now, 'conversion_recorded', v_user, NULL, NULL, p_amount,
                                  p_currency, p_id, NULL, NULL);

    -- Qualification. The activation row is locked: conversions of one
    -- referee decide "first in the policy currency" one at a time.
    -- A blocked referee or referrer earns nothing: read in this new
    -- statement, after their locks were granted.
    SELECT a.referrer_id, a.activated_at INTO v_referrer, v_activated
      FROM referral_activations a WHERE a.invitee_id = v_user FOR UPDATE;
    IF v_referrer IS DISTINCT FROM v_seen THEN
        -- The referee was activated since the first look: lock the referrer.
        PERFORM referral_lock_users_shared(ARRAY[v_referrer]);
    END IF;
    IF v_referrer IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM referral_blocks b WHERE b.user_id IN (v_user, v_referrer))
       AND v_occurred >= v_activated
       AND v_occurred - v_activated <= p_window_us * interval '1 microsecond'
       AND p_amount >= p_min_amount THEN
        v_qualified := true;
    END IF;

    IF v_qualified THEN
        UPDATE referral_activations a SET converted = true
         WHERE a.invitee_id = v_user AND NOT a.converted;
        IF p_currency = p_policy_currency AND NOT EXISTS (
            SELECT 1 FROM referral_conversions c
             WHERE c.user_id = v_user AND c.currency = p_currency AND c.qualified
        ) THEN
            v_fixed := p_fixed;
        END IF;
        UPDATE referral_conversions c SET qualified = true WHERE c.id = p_id;
        -- floor(amount × bp ÷ 10000), exact (div truncates; both are >= 0).
        v_percent := div(p_amount::numeric * p_bp, 10000)::bigint;

        IF v_fixed > 0 OR v_percent > 0 THEN
            -- The cap: the referrer's totals row is the lock; the sum is
            -- read in the next statement, after the lock is granted.
            PERFORM referral_lock_balance(v_referrer, p_currency);
            IF p_cap IS NOT NULL THEN
                SELECT greatest(p_cap - coalesce(sum(r.amount), 0), 0) INTO v_left
                  FROM referral_rewards r
                 WHERE r.user_id = v_referrer AND r.currency = p_currency
                   AND r.kind <> 'welcome' AND r.status <> 'voided'
                   AND r.created_at > p_now - p_cap_window_us * interval '1 microsecond';
                v_fixed := least(v_fixed, v_left);
                v_left := v_left - v_fixed;
                v_percent := least(v_percent, v_left);
            END IF;
            IF v_fixed > 0 THEN
                PERFORM referral_create_reward(p_ids[v_next], v_referrer, 'referrer_fixed',
                                               v_fixed, p_currency, 'pending', p_id, v_user,
                                               NULL, p_now);
                v_made := v_made || p_ids[v_next];
                v_next := v_next + 1;
            END IF;
            IF v_percent > 0 THEN
                PERFORM referral_create_reward(p_ids[v_next], v_referrer, 'referrer_percent',
                                               v_percent, p_currency, 'pending', p_id, v_user,
                                               NULL, p_now);
                v_made := v_made || p_ids[v_next];
            END IF;
        END IF;
    END IF;

    outcome := 'recorded';
    RETURN QUERY
        SELECT outcome, p_id, v_user, p_amount, p_currency, p_kind, v_occurred, p_now, 0::bigint,
               r.id, r.user_id, r.kind, r.currency, r.amount, r.original_amount,
               r.status, r.conversion_id::text, r.referral_id, r.referral_phone,
               r.reverses, r.created_at, r.approved_at, r.paid_at, r.payout_ref::text
          FROM (SELECT 1) AS one
          LEFT JOIN referral_reward_rows r ON r.id = ANY (v_made)
         ORDER BY r.kind;
END $$;

-- ---------------------------------------------------------------------------
-- RewardStore::approve_due_rewards: as in migration 20261130010001, skipping
-- held rewards and the rewards of owners blocked (or being blocked).
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION referral_approve_due_rewards(p_hold_us bigint, p_now timestamptz, p_limit integer)
RETURNS TABLE (
    r_id uuid, r_user uuid, r_kind text, r_currency text, r_amount bigint, r_original bigint,
    r_status text, r_conversion text, r_referral uuid, r_referral_phone text, r_reverses uuid,
    r_created_at timestamptz, r_approved_at timestamptz, r_paid_at timestamptz, r_payout_ref text
)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
AS $$
DECLARE
    v_ids   uuid[];
    v_total record;
    v_id    uuid;
    v_user  uuid;
    v_skip  uuid[] := '{}';
BEGIN
    PERFORM referral_require_read_committed();
    -- Held rewards (of blocked users) are not in referral_rewards_due_idx.
    SELECT coalesce(array_agg(d.id ORDER BY d.created_at, d.id), '{}') INTO v_ids
      FROM (SELECT r.id, r.created_at FROM referral_rewards r
             WHERE r.status = 'pending' AND NOT r.held
               AND r.created_at <= p_now - p_hold_us * interval '1 microsecond'
             ORDER BY r.created_at, r.id
             LIMIT p_limit
             FOR UPDATE SKIP LOCKED) AS d;
    IF cardinality(v_ids) = 0 THEN
        RETURN;
    END IF;
    -- Each owner's lock, shared, without waiting: an owner being blocked
    -- (or unblocked, or activated) right now waits for the next run. Then,
    -- in a new statement, drop those and the rewards of blocked owners.
    FOR v_user IN
        SELECT DISTINCT r.user_id FROM referral_rewards r WHERE r.id = ANY (v_ids)
    LOOP
        IF NOT pg_try_advisory_xact_lock_shared(referral_user_key(v_user)) THEN
            v_skip := v_skip || v_user;
        END IF;
    END LOOP;
    SELECT coalesce(array_agg(r.id ORDER BY r.created_at, r.id), '{}') INTO v_ids
      FROM referral_rewards r
     WHERE r.id = ANY (v_ids) AND r.user_id <> ALL (v_skip)
       AND NOT EXISTS (SELECT 1 FROM referral_blocks b WHERE b.user_id = r.user_id);
    IF cardinality(v_ids) = 0 THEN
        RETURN;
    END IF;
    FOR v_total IN
        SELECT r.user_id, r.currency, sum(r.amount) AS amount
          FROM referral_rewards r WHERE r.id = ANY (v_ids)
         GROUP BY r.user_id, r.currency ORDER BY r.user_id, r.currency
    LOOP
        PERFORM referral_lock_balance(v_total.user_id, v_total.currency);
        UPDATE referral_reward_balances b
           SET pending = b.pending - v_total.amount, approved = b.approved + v_total.amount
         WHERE b.user_id = v_total.user_id AND b.currency = v_total.currency;
    END LOOP;
    UPDATE referral_rewards r SET status = 'approved', approved_at = p_now
     WHERE r.id = ANY (v_ids);
    FOR v_id, v_user IN
        SELECT r.id, r.user_id FROM referral_rewards r
          JOIN unnest(v_ids) WITH ORDINALITY AS x (id, i) ON x.id = r.id ORDER BY x.i
    LOOP
        PERFORM referral_reward_event(p_now, 'reward_approved', v_user, v_id, NULL, NULL, NULL,
                                      NULL, NULL, NULL);
    END LOOP;
    RETURN QUERY
        SELECT r.id, r.user_id, r.kind, r.currency, r.amount, r.original_amount,
               r.status, r.conversion_id::text, r.referral_id, r.referral_phone,
               r.reverses, r.created_at, r.approved_at, r.paid_at, r.payout_ref::text
          FROM unnest(v_ids) WITH ORDINALITY AS x (id, i)
          JOIN referral_reward_rows r ON r.id = x.id
         ORDER BY x.i;
END $$;
