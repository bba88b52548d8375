-- A user's rewards page, planned once per session instead of on every call.
--
-- Until now `PgStore::rewards` sent one SELECT (the user's row, a LATERAL
-- seek of referral_rewards_user_idx with `LIMIT $2`, joined to the view
-- referral_reward_rows). Its execution took ~0.1 ms, but PostgreSQL planned
-- it again on every call (0.35-0.45 ms on the bench's data, more under
-- load): a prepared statement's generic plan must guess `LIMIT $2` (10 % of
-- the user's rewards), and with that guess the view's join became a hash join
-- over a sequential scan of every reward (470 ms, measured), so the plan
-- cache rightly kept making custom plans, each planned from scratch. That
-- made a page of 10 cost about four times the profile call.
--
-- Here the page is a function whose two queries (first page, and after a
-- cursor) have nothing left to choose but the seek: the referee's phone is a
-- scalar subquery on the users' primary key (no join order to pick), the
-- plan is forced generic (made once per session, whatever the limit), and
-- sequential scans are off as in the other functions, so a plan made while
-- the table was small is still the seek when it has grown. JIT is off: the
-- generic plan's row guess prices the page past jit_above_cost, and compiling
-- it took ~20 ms per call (measured) for a plan that runs in 0.1 ms. Rows: one per
-- reward, newest first, or one row of NULLs when the user has none on this
-- page; none when no such user.

CREATE FUNCTION referral_reward_page(
    p_user      uuid,
    p_limit     bigint,
    p_before_at timestamptz,  -- the cursor, or NULL for the first page
    p_before_id uuid
)
RETURNS TABLE (
    r_id             uuid,
    r_user           uuid,
    r_kind           text,
    r_currency       text,
    r_amount         bigint,
    r_original       bigint,
    r_status         text,
    r_conversion     text,
    r_referral       uuid,
    r_referral_phone text,
    r_reverses       uuid,
    r_created_at     timestamptz,
    r_approved_at    timestamptz,
    r_paid_at        timestamptz,
    r_payout_ref     text
)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
AS $$
BEGIN
    IF p_before_at IS NULL THEN
        RETURN QUERY
        SELECT x.id, x.user_id, x.kind, x.currency, x.amount, x.original_amount, x.status,
               x.conversion_id::text, x.referral_id,
               (SELECT o.phone FROM referral_users o WHERE o.id = x.referral_id),
               x.reverses, x.created_at, x.approved_at, x.paid_at, x.payout_ref::text
          FROM referral_users u
          LEFT JOIN LATERAL (
                SELECT * FROM referral_rewards y
                 WHERE y.user_id = u.id
                 ORDER BY y.created_at DESC, y.id DESC
                 LIMIT p_limit) AS x ON true
         WHERE u.id = p_user
         ORDER BY x.created_at DESC, x.id DESC;
    ELSE
        RETURN QUERY
        SELECT x.id, x.user_id, x.kind, x.currency, x.amount, x.original_amount, x.status,
               x.conversion_id::text, x.referral_id,
               (SELECT o.phone FROM referral_users o WHERE o.id = x.referral_id),
               x.reverses, x.created_at, x.approved_at, x.paid_at, x.payout_ref::text
          FROM referral_users u
          LEFT JOIN LATERAL (
                SELECT * FROM referral_rewards y
                 WHERE y.user_id = u.id
                   AND (y.created_at, y.id) < (p_before_at, p_before_id)
                 ORDER BY y.created_at DESC, y.id DESC
                 LIMIT p_limit) AS x ON true
         WHERE u.id = p_user
         ORDER BY x.created_at DESC, x.id DESC;
    END IF;
END $$;
