-- The referrer cap holds in every rolling window, not only in the one that
-- ends when a reward is made.
--
-- Until now a reward was cut to the cap minus the sum of the referrer's
-- rewards and clawbacks created in the window ending now. A clawback is
-- created after the reward it claws back: once that reward had left the
-- window, the clawback alone made room (its negative amount), and once the
-- clawback left too, the window held more than the cap. Found by the memory
-- store's property test (cap 40: a reward of 40, clawed back on day 14, let
-- a reward of 41 through on day 35; the window ending on day 45 held 41).
--
-- Now the cap's used room is the most that the window's rows sum to over
-- every suffix in time (all rows created at or after some instant, those of
-- one instant together), at least 0: exactly the windows still to come that
-- hold the new reward. Later rows only lower a window's sum (clawbacks,
-- reductions, voids) or check themselves the same way, so no window ever
-- passes the cap. API.md's worked example is unchanged (kit case
-- rewards_cap_holds_when_a_clawback_outlives_its_reward).
--
-- RewardStore::record_conversion: as in migration 20261130040001, but for
-- the cap's sum.
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
                -- What the cap has used: the most that the rewards and
                -- clawbacks of the window sum to in any later window that
                -- still holds the new reward, i.e. over every suffix of
                -- them in time (RANGE: the rows of one instant together),
                -- and at least 0.
                SELECT greatest(p_cap - greatest(coalesce(max(w.tail), 0), 0), 0) INTO v_left
                  FROM (SELECT sum(r.amount) OVER (ORDER BY r.created_at DESC
                                                   RANGE BETWEEN UNBOUNDED PRECEDING
                                                             AND CURRENT ROW) AS tail
                          FROM referral_rewards r
                         WHERE r.user_id = v_referrer AND r.currency = p_currency
                           AND r.kind <> 'welcome' AND r.status <> 'voided'
                           AND r.created_at > p_now - p_cap_window_us * interval '1 microsecond') AS w;
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

