-- Rewards: conversions, the reward ledger, per-user totals, and the welcome
-- reward of an activation (referral-core's RewardStore, and
-- InvitePolicy::welcome of ReferralStore::activate_invite).
--
-- Every operation is one call of one plpgsql function below (one statement,
-- one transaction, one round trip). The rules they decide are stated in
-- referral-core's `reward` module; what carries each one here:
--
--   * one conversion per external id: the primary key of
--     referral_conversions, claimed with INSERT ... ON CONFLICT DO NOTHING
--     (a concurrent identical call waits for the first to commit, then
--     finds its row: 'existing');
--   * a reversal never reverses more than was converted: the conversion row
--     is locked (FOR UPDATE) by every reversal of it, and the CHECK
--     reversed_amount <= amount holds whatever happens; a reversal id takes
--     effect once: the primary key of referral_reversals;
--   * the cap per referrer per currency: the referrer's totals row in
--     referral_reward_balances is locked (FOR UPDATE) before the rewards in
--     the cap window are summed in a new statement (which sees every reward
--     committed by the previous holder), and held until commit; every call
--     that creates a referrer reward takes it. Reversals only lower the
--     sum, so a conversion racing one can only see too much used, never
--     too little;
--   * the fixed part once per referee: the referee's activation row is
--     locked (FOR UPDATE) before earlier qualifying conversions in the
--     policy currency are looked up;
--   * approval and payment once: the reward row is locked; approval runs
--     take due rows with FOR UPDATE SKIP LOCKED, so many processes share
--     the work and none waits for another.
--
-- Lock order, the same in every function, so no two calls wait for each
-- other in a circle: a conversion row, then an activation row, then reward
-- rows (by id), then totals rows (by user, currency). No lock here is
-- cluster-wide: calls on different referrers never wait for each other.
--
-- Blocked users (later): record_conversion will read the block of the
-- referee and the referrer where it decides qualification (marked
-- "hook: blocked users" below), and approve_due_rewards will skip pending
-- rewards of blocked users in its SELECT; no signature changes.

-- ---------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------

-- The referral list shows whether the referee converted (had a qualifying
-- conversion, even if reversed later).
ALTER TABLE referral_activations ADD COLUMN converted boolean NOT NULL DEFAULT false;

CREATE TABLE referral_conversions (
    -- The host's external id: 1-128 characters from '!' to '~', compared
    -- exactly (byte order).
    id              text COLLATE "C" PRIMARY KEY CHECK (id ~ '^[!-~]{1,128}$'),
    user_id         uuid        NOT NULL REFERENCES referral_users (id),
    amount          bigint      NOT NULL CHECK (amount BETWEEN 1 AND 1000000000000000),
    currency        text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    kind            text COLLATE "C" NOT NULL CHECK (kind ~ '^[!-~]{1,32}$'),
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL,
    -- Whether it qualified under the policy when it was recorded.
    qualified       boolean     NOT NULL,
    reversed_amount bigint      NOT NULL DEFAULT 0,
    CHECK (reversed_amount >= 0 AND reversed_amount <= amount)
);

-- "Had the referee a qualifying conversion in this currency before?"
CREATE INDEX referral_conversions_qualified_idx
    ON referral_conversions (user_id, currency) WHERE qualified;

CREATE TABLE referral_rewards (
    id              uuid        PRIMARY KEY,
    user_id         uuid        NOT NULL REFERENCES referral_users (id),
    kind            text        NOT NULL
        CHECK (kind IN ('referrer_fixed', 'referrer_percent', 'welcome', 'clawback')),
    currency        text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- What it is worth now, and when made (after the cap).
    amount          bigint      NOT NULL,
    original_amount bigint      NOT NULL,
    status          text        NOT NULL
        CHECK (status IN ('pending', 'approved', 'paid', 'voided')),
    conversion_id   text COLLATE "C" REFERENCES referral_conversions (id),
    referral_id     uuid        REFERENCES referral_users (id),
    -- On a clawback: the reward it takes back from.
    reverses        uuid        REFERENCES referral_rewards (id),
    created_at      timestamptz NOT NULL,
    approved_at     timestamptz,
    paid_at         timestamptz,
    payout_ref      text COLLATE "C" CHECK (payout_ref ~ '^[!-~]{1,128}$'),
    -- A clawback is negative and never changes; any other reward is
    -- positive and only shrinks.
    CHECK (CASE WHEN kind = 'clawback'
                THEN amount < 0 AND amount = original_amount AND reverses IS NOT NULL
                     AND conversion_id IS NOT NULL AND status IN ('approved', 'paid')
                ELSE amount > 0 AND amount <= original_amount AND reverses IS NULL END),
    CHECK ((kind = 'welcome') = (conversion_id IS NULL)),
    CHECK ((status IN ('approved', 'paid')) = (approved_at IS NOT NULL)),
    CHECK ((status = 'paid') = (paid_at IS NOT NULL AND payout_ref IS NOT NULL))
);

-- A user's reward page, newest first: seek on (created_at, id) descending.
CREATE INDEX referral_rewards_user_idx ON referral_rewards (user_id, created_at, id);
-- A conversion's rewards (and clawbacks).
CREATE INDEX referral_rewards_conversion_idx ON referral_rewards (conversion_id)
    WHERE conversion_id IS NOT NULL;
-- A reward's clawbacks.
CREATE INDEX referral_rewards_reverses_idx ON referral_rewards (reverses)
    WHERE reverses IS NOT NULL;
-- The cap: a referrer's live referrer-side rewards in a currency, by time.
CREATE INDEX referral_rewards_cap_idx ON referral_rewards (user_id, currency, created_at)
    INCLUDE (amount) WHERE kind <> 'welcome' AND status <> 'voided';
-- Approval runs: pending rewards, oldest first.
CREATE INDEX referral_rewards_pending_idx ON referral_rewards (created_at, id)
    WHERE status = 'pending';

-- One row per applied reversal of a conversion.
CREATE TABLE referral_reversals (
    conversion_id text COLLATE "C" NOT NULL REFERENCES referral_conversions (id),
    id            text COLLATE "C" NOT NULL CHECK (id ~ '^[!-~]{1,128}$'),
    amount        bigint      NOT NULL CHECK (amount > 0),
    -- The rewards it changed or added, in order.
    rewards       uuid[]      NOT NULL,
    at            timestamptz NOT NULL,
    PRIMARY KEY (conversion_id, id)
);

-- A user's totals per currency, kept by every call that changes a reward,
-- so a profile reads them in O(currencies). `live` counts the non-voided
-- rewards: a currency is shown while it is positive. The row of a referrer
-- is also the lock of their cap in that currency.
CREATE TABLE referral_reward_balances (
    user_id  uuid   NOT NULL REFERENCES referral_users (id),
    currency text   NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    pending  bigint NOT NULL DEFAULT 0,
    approved bigint NOT NULL DEFAULT 0,
    paid     bigint NOT NULL DEFAULT 0,
    live     bigint NOT NULL DEFAULT 0 CHECK (live >= 0),
    PRIMARY KEY (user_id, currency)
);

-- The outbox gains the reward events.
ALTER TABLE referral_events ALTER COLUMN invite_code DROP NOT NULL;
ALTER TABLE referral_events DROP CONSTRAINT referral_events_kind_check;
ALTER TABLE referral_events DROP CONSTRAINT referral_events_check;
ALTER TABLE referral_events
    ADD COLUMN conversion_id text,
    ADD COLUMN reversal_id   text,
    ADD COLUMN reward_id     uuid,
    ADD COLUMN reward_kind   text,
    ADD COLUMN amount        bigint,
    ADD COLUMN currency      text,
    ADD COLUMN payout_ref    text;
ALTER TABLE referral_events ADD CONSTRAINT referral_events_kind_check CHECK (kind IN (
    'user_registered', 'invite_activated', 'conversion_recorded', 'conversion_reversed',
    'reward_created', 'reward_adjusted', 'reward_approved', 'reward_voided', 'reward_paid'));
ALTER TABLE referral_events ADD CONSTRAINT referral_events_fields_check CHECK (CASE kind
    WHEN 'user_registered' THEN phone IS NOT NULL AND invite_code IS NOT NULL AND referrer_id IS NULL
    WHEN 'invite_activated' THEN phone IS NULL AND invite_code IS NOT NULL AND referrer_id IS NOT NULL
    WHEN 'conversion_recorded' THEN conversion_id IS NOT NULL AND amount IS NOT NULL AND currency IS NOT NULL
    WHEN 'conversion_reversed' THEN conversion_id IS NOT NULL AND reversal_id IS NOT NULL AND amount IS NOT NULL
    WHEN 'reward_created' THEN reward_id IS NOT NULL AND reward_kind IS NOT NULL
                               AND amount IS NOT NULL AND currency IS NOT NULL
    WHEN 'reward_adjusted' THEN reward_id IS NOT NULL AND amount IS NOT NULL AND currency IS NOT NULL
    WHEN 'reward_paid' THEN reward_id IS NOT NULL AND payout_ref IS NOT NULL
    ELSE reward_id IS NOT NULL
END);

-- A reward with the other side's phone: what every function returns.
CREATE VIEW referral_reward_rows AS
SELECT r.id, r.user_id, r.kind, r.currency, r.amount, r.original_amount, r.status,
       r.conversion_id, r.referral_id, o.phone AS referral_phone, r.reverses,
       r.created_at, r.approved_at, r.paid_at, r.payout_ref
  FROM referral_rewards r
  LEFT JOIN referral_users o ON o.id = r.referral_id;

-- ---------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------

-- Appends one reward event to the outbox (ids as every writer draws them:
-- referral_next_event_id, see migration 20261130020001).
CREATE FUNCTION referral_reward_event(
    p_at         timestamptz,
    p_kind       text,
    p_user       uuid,
    p_reward     uuid,
    p_reward_kind text,
    p_amount     bigint,
    p_currency   text,
    p_conversion text,
    p_reversal   text,
    p_payout_ref text
) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO referral_events (id, at, kind, user_id, reward_id, reward_kind, amount, currency,
                                 conversion_id, reversal_id, payout_ref)
    VALUES (referral_next_event_id(), p_at, p_kind, p_user, p_reward, p_reward_kind, p_amount,
            p_currency, p_conversion, p_reversal, p_payout_ref);
END $$;

-- Locks (creating it if needed) the totals row of (user, currency) until
-- commit.
CREATE FUNCTION referral_lock_balance(p_user uuid, p_currency text) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM 1 FROM referral_reward_balances b
      WHERE b.user_id = p_user AND b.currency = p_currency FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO referral_reward_balances (user_id, currency) VALUES (p_user, p_currency)
        ON CONFLICT DO NOTHING;
        PERFORM 1 FROM referral_reward_balances b
          WHERE b.user_id = p_user AND b.currency = p_currency FOR UPDATE;
    END IF;
END $$;

-- Creates a reward (the caller holds the owner's totals row) with its
-- totals and events: 'reward_created', and 'reward_approved' when it is
-- made approved.
CREATE FUNCTION referral_create_reward(
    p_id         uuid,
    p_user       uuid,
    p_kind       text,
    p_amount     bigint,
    p_currency   text,
    p_status     text,
    p_conversion text,
    p_referral   uuid,
    p_reverses   uuid,
    p_now        timestamptz
) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO referral_rewards (id, user_id, kind, currency, amount, original_amount, status,
                                  conversion_id, referral_id, reverses, created_at, approved_at)
    VALUES (p_id, p_user, p_kind, p_currency, p_amount, p_amount, p_status,
            p_conversion, p_referral, p_reverses, p_now,
            CASE WHEN p_status = 'approved' THEN p_now END);
    UPDATE referral_reward_balances b
       SET pending = b.pending + CASE WHEN p_status = 'pending' THEN p_amount ELSE 0 END,
           approved = b.approved + CASE WHEN p_status = 'approved' THEN p_amount ELSE 0 END,
           live = b.live + 1
     WHERE b.user_id = p_user AND b.currency = p_currency;
    PERFORM referral_reward_event(p_now, 'reward_created', p_user, p_id, p_kind, p_amount,
                                  p_currency, NULL, NULL, NULL);
    IF p_status = 'approved' THEN
        PERFORM referral_reward_event(p_now, 'reward_approved', p_user, p_id, NULL, NULL,
                                      NULL, NULL, NULL, NULL);
    END IF;
END $$;

-- ---------------------------------------------------------------------------
-- ReferralStore::activate_invite with a welcome reward
-- ---------------------------------------------------------------------------

-- referral_activate (whatever its latest definition), and, when it
-- activates, the welcome reward (approved at once, `referral` = the code's
-- owner) in the same transaction: a failure of either undoes both. Not a
-- redefinition of referral_activate, so later changes to that function
-- need nothing here.
CREATE FUNCTION referral_activate_welcome(
    p_user              uuid,
    p_code              text,
    p_now               timestamptz,
    p_failure_window_us bigint,
    p_max_failures      integer,
    p_welcome_id        uuid,
    p_welcome_amount    bigint,
    p_welcome_currency  text,
    OUT outcome         text,
    OUT referrer        uuid,
    OUT code            text,
    OUT at              timestamptz
)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
AS $$
BEGIN
    SELECT a.outcome, a.referrer, a.code, a.at INTO outcome, referrer, code, at
      FROM referral_activate(p_user, p_code, p_now, p_failure_window_us, p_max_failures) AS a;
    IF outcome = 'activated' THEN
        PERFORM referral_lock_balance(p_user, p_welcome_currency);
        PERFORM referral_create_reward(p_welcome_id, p_user, 'welcome', p_welcome_amount,
                                       p_welcome_currency, 'approved', NULL, referrer, NULL, p_now);
    END IF;
END $$;

-- ---------------------------------------------------------------------------
-- RewardStore::record_conversion
-- ---------------------------------------------------------------------------

-- Checks in the documented order and returns one row per reward of the
-- conversion (fixed first), or one row with NULL reward columns when it has
-- none. 'conflict' returns the conversion holding the id; 'user_not_found'
-- one row of NULLs.
CREATE FUNCTION referral_record_conversion(
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
    -- (Hook: blocked users: a blocked referee or referrer earns nothing.)
    SELECT a.referrer_id, a.activated_at INTO v_referrer, v_activated
      FROM referral_activations a WHERE a.invitee_id = v_user FOR UPDATE;
    IF v_referrer IS NOT NULL
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
-- RewardStore::reverse_conversion
-- ---------------------------------------------------------------------------

-- Checks in the documented order. Returns one row per reward changed or
-- added (in the order of the conversion's rewards), or one row with NULL
-- reward columns; `n` is the amount of a 'conflict' and what is left of an
-- 'exceeds_remaining'.
CREATE FUNCTION referral_reverse_conversion(
    p_conversion text,
    p_reversal   text,
    p_amount     bigint,   -- NULL: all that is left
    p_ids        uuid[],
    p_now        timestamptz
)
RETURNS TABLE (
    outcome text, n bigint,
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
    v_conv      referral_conversions%ROWTYPE;
    v_done      referral_reversals%ROWTYPE;
    v_remaining bigint;
    v_amount    bigint;
    v_left      bigint;
    v_reward    record;
    v_target    bigint;
    v_owner     uuid;
    v_next      integer := 1;
    v_changed   uuid[] := '{}';
BEGIN
    PERFORM referral_require_read_committed();

    -- 1. no such conversion; else lock it: its reversals run one at a time.
    SELECT * INTO v_conv FROM referral_conversions c WHERE c.id = p_conversion FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'conversion_not_found';
        RETURN NEXT;
        RETURN;
    END IF;

    -- 2. applied before
    SELECT * INTO v_done FROM referral_reversals v
     WHERE v.conversion_id = p_conversion AND v.id = p_reversal;
    IF FOUND THEN
        IF p_amount IS NULL OR p_amount = v_done.amount THEN
            outcome := 'existing';
            v_changed := v_done.rewards;
        ELSE
            outcome := 'conflict';
            n := v_done.amount;
            RETURN NEXT;
            RETURN;
        END IF;
    ELSE
        -- 3. more than is left
        v_remaining := v_conv.amount - v_conv.reversed_amount;
        v_amount := coalesce(p_amount, v_remaining);
        IF v_amount <= 0 OR v_amount > v_remaining THEN
            outcome := 'exceeds_remaining';
            n := v_remaining;
            RETURN NEXT;
            RETURN;
        END IF;

        -- 4. apply
        v_left := v_remaining - v_amount;
        UPDATE referral_conversions c SET reversed_amount = c.reversed_amount + v_amount
         WHERE c.id = p_conversion;
        PERFORM referral_reward_event(p_now, 'conversion_reversed', v_conv.user_id, NULL, NULL,
                                      v_amount, v_conv.currency, p_conversion, p_reversal, NULL);

        -- The conversion's rewards belong to one referrer, in its currency.
        SELECT r.user_id INTO v_owner FROM referral_rewards r
         WHERE r.conversion_id = p_conversion LIMIT 1;
        IF v_owner IS NOT NULL THEN
            -- Lock the rewards (an approval run holding one is waited for:
            -- the row read after it is the approved one), then the totals.
            PERFORM 1 FROM referral_rewards r
              WHERE r.conversion_id = p_conversion AND r.kind <> 'clawback'
              ORDER BY r.id FOR UPDATE;
            PERFORM referral_lock_balance(v_owner, v_conv.currency);
            FOR v_reward IN
                SELECT r.id, r.user_id, r.currency, r.amount, r.original_amount, r.status,
                       r.referral_id,
                       (SELECT coalesce(sum(k.amount), 0)::bigint FROM referral_rewards k
                         WHERE k.reverses = r.id) AS clawed
                  FROM referral_rewards r
                 WHERE r.conversion_id = p_conversion AND r.kind <> 'clawback'
                 ORDER BY r.kind
            LOOP
                v_target := div(v_reward.original_amount::numeric * v_left, v_conv.amount)::bigint;
                IF v_reward.status = 'pending' AND v_target <= 0 THEN
                    UPDATE referral_rewards r SET status = 'voided' WHERE r.id = v_reward.id;
                    UPDATE referral_reward_balances b
                       SET pending = b.pending - v_reward.amount, live = b.live - 1
                     WHERE b.user_id = v_reward.user_id AND b.currency = v_reward.currency;
                    PERFORM referral_reward_event(p_now, 'reward_voided', v_reward.user_id,
                                                  v_reward.id, NULL, NULL, NULL, NULL, NULL, NULL);
                    v_changed := v_changed || v_reward.id;
                ELSIF v_reward.status = 'pending' AND v_target < v_reward.amount THEN
                    UPDATE referral_rewards r SET amount = v_target WHERE r.id = v_reward.id;
                    UPDATE referral_reward_balances b
                       SET pending = b.pending + (v_target - v_reward.amount)
                     WHERE b.user_id = v_reward.user_id AND b.currency = v_reward.currency;
                    PERFORM referral_reward_event(p_now, 'reward_adjusted', v_reward.user_id,
                                                  v_reward.id, NULL, v_target, v_reward.currency,
                                                  NULL, NULL, NULL);
                    v_changed := v_changed || v_reward.id;
                ELSIF v_reward.status IN ('approved', 'paid')
                      AND v_target < v_reward.amount + v_reward.clawed THEN
                    PERFORM referral_create_reward(
                        p_ids[v_next], v_reward.user_id, 'clawback',
                        v_target - (v_reward.amount + v_reward.clawed), v_reward.currency,
                        'approved', p_conversion, v_reward.referral_id, v_reward.id, p_now);
                    v_changed := v_changed || p_ids[v_next];
                    v_next := v_next + 1;
                END IF;
            END LOOP;
        END IF;
        INSERT INTO referral_reversals (conversion_id, id, amount, rewards, at)
        VALUES (p_conversion, p_reversal, v_amount, v_changed, p_now);
        outcome := 'reversed';
    END IF;

    RETURN QUERY
        SELECT outcome, NULL::bigint, c.id::text, c.user_id, c.amount, c.currency, c.kind::text,
               c.occurred_at, c.recorded_at, c.reversed_amount,
               r.id, r.user_id, r.kind, r.currency, r.amount, r.original_amount,
               r.status, r.conversion_id::text, r.referral_id, r.referral_phone,
               r.reverses, r.created_at, r.approved_at, r.paid_at, r.payout_ref::text
          FROM referral_conversions c
          LEFT JOIN LATERAL unnest(v_changed) WITH ORDINALITY AS x (id, i) ON true
          LEFT JOIN referral_reward_rows r ON r.id = x.id
         WHERE c.id = p_conversion
         ORDER BY x.i;
END $$;

-- ---------------------------------------------------------------------------
-- RewardStore::mark_reward_paid
-- ---------------------------------------------------------------------------

CREATE FUNCTION referral_mark_reward_paid(p_reward uuid, p_payout_ref text, p_now timestamptz)
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
BEGIN
    PERFORM referral_require_read_committed();
    SELECT * INTO v_reward FROM referral_rewards r WHERE r.id = p_reward FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'not_found';
        RETURN NEXT;
        RETURN;
    END IF;
    IF v_reward.status = 'approved' THEN
        PERFORM referral_lock_balance(v_reward.user_id, v_reward.currency);
        UPDATE referral_rewards r
           SET status = 'paid', paid_at = p_now, payout_ref = p_payout_ref
         WHERE r.id = p_reward;
        UPDATE referral_reward_balances b
           SET approved = b.approved - v_reward.amount, paid = b.paid + v_reward.amount
         WHERE b.user_id = v_reward.user_id AND b.currency = v_reward.currency;
        PERFORM referral_reward_event(p_now, 'reward_paid', v_reward.user_id, p_reward, NULL,
                                      NULL, NULL, NULL, NULL, p_payout_ref);
        outcome := 'paid';
    ELSIF v_reward.status = 'paid' AND v_reward.payout_ref = p_payout_ref THEN
        outcome := 'already_paid';
    ELSE
        outcome := 'not_payable';
    END IF;
    RETURN QUERY
        SELECT outcome, r.id, r.user_id, r.kind, r.currency, r.amount, r.original_amount,
               r.status, r.conversion_id::text, r.referral_id, r.referral_phone,
               r.reverses, r.created_at, r.approved_at, r.paid_at, r.payout_ref::text
          FROM referral_reward_rows r WHERE r.id = p_reward;
END $$;

-- ---------------------------------------------------------------------------
-- RewardStore::approve_due_rewards
-- ---------------------------------------------------------------------------

-- Takes up to p_limit due pending rewards, oldest first, skipping rows
-- another call holds (an approval run or a reversal), approves them, and
-- moves their amounts in the totals (rows locked by user, currency).
CREATE FUNCTION referral_approve_due_rewards(p_hold_us bigint, p_now timestamptz, p_limit integer)
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
BEGIN
    PERFORM referral_require_read_committed();
    -- (Hook: blocked users: their pending rewards will be skipped here.)
    SELECT coalesce(array_agg(d.id ORDER BY d.created_at, d.id), '{}') INTO v_ids
      FROM (SELECT r.id, r.created_at FROM referral_rewards r
             WHERE r.status = 'pending'
               AND r.created_at <= p_now - p_hold_us * interval '1 microsecond'
             ORDER BY r.created_at, r.id
             LIMIT p_limit
             FOR UPDATE SKIP LOCKED) AS d;
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
