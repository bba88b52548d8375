-- A user's profile, planned once per session instead of on every call.
--
-- PgStore::profile sent one prepared statement whose referral list ends in
-- `LIMIT $2`. Its generic plan must guess that limit (10 % of the rows) and
-- the referrals of one referrer (the table's rows over its distinct
-- referrers), so when referrers have many referrals on average the generic
-- plan is priced far above a custom one and PostgreSQL plans the statement
-- afresh on every call. Measured with operator-scale (1,000,000 users, 100
-- referrers of ~10,000 each, against 1,000 users): 0 generic and 2,200
-- custom plans in 2,200 calls, a profile with 5 referrals 379 us against
-- 114 us on the small database, which cached a generic plan after 5 calls.
--
-- As migrations 20261130080001 and 20261130100001 did for the other reads:
-- a plpgsql function whose query is planned once per session, the plan
-- forced generic, sequential scans, JIT and parallel workers off. The
-- query is the statement's, with the referrer's invite code and each
-- referral's phone as scalar subqueries on primary keys (no join order
-- left to choose by a guessed row count; an activation's primary key is
-- the invitee, so at most one referrer). The generic plan, read on the
-- million: the user by primary key, the count shards by primary key, the
-- referral list from referral_activations_referrer_idx, limit rows.
-- Rows: one, or none when no such user.

CREATE FUNCTION referral_profile(p_user uuid, p_limit bigint)
RETURNS TABLE (
    id                    uuid,
    phone                 text,
    invite_code           text,
    created_at            timestamptz,
    referral_count        bigint,
    activated_invite_code text,
    referrals             text[]
)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
SET max_parallel_workers_per_gather = 0
AS $$
BEGIN
    RETURN QUERY
    SELECT u.id, u.phone, u.invite_code, u.created_at,
           (SELECT coalesce(sum(c.n), 0)::bigint
              FROM referral_count_shards c WHERE c.user_id = u.id),
           (SELECT r.invite_code
              FROM referral_activations me
              JOIN referral_users r ON r.id = me.referrer_id
             WHERE me.invitee_id = u.id),
           ARRAY(SELECT (SELECT i.phone FROM referral_users i WHERE i.id = a.invitee_id)
                   FROM referral_activations a
                  WHERE a.referrer_id = u.id
                  ORDER BY a.activated_at, a.invitee_id
                  LIMIT p_limit)
      FROM referral_users u
     WHERE u.id = p_user;
END $$;
