-- The user search, the windowed leaderboard and a user's referral pages,
-- planned once per session instead of on every call (issue 12).
--
-- Until now PgStore sent each as a prepared statement ending in `LIMIT $n`.
-- On a large database PostgreSQL planned them afresh on every call: the
-- generic plan must guess `LIMIT $n` (10 % of the rows it reads) and `> $1`
-- on a time (a third of the table), so it was priced far above a custom
-- plan, and the plan cache kept making custom plans. Measured with
-- pg_stat_statements on 1,000,000 users (100 referrers of ~10,000 each):
-- 12 plans for 12 calls of each, 0.35-1.6 ms of planning per call against
-- 0.1-0.6 ms of execution, while a database of 1,000 users cached a generic
-- plan after five calls. That was the whole of the search by code's 2.48x
-- and the windowed leaderboard's 3.13x (1 M users against 1 000).
--
-- What migration 20261130080001 did for the rewards page: each read is a
-- plpgsql function whose queries are planned once per session, the plan
-- forced generic (whatever the limit or the window), sequential scans off
-- as in the other functions (a plan made while a table was small is still
-- the seek once it has grown), JIT off (the generic plan's row guesses
-- would price it past jit_above_cost and compile it on every call) and no
-- parallel workers (a guess of a third of the activations would otherwise
-- start workers for a window of a few hundred rows). The generic plans
-- were read on the million (EXPLAIN ANALYZE EXECUTE under these settings):
-- every one seeks an index and reads the page or the window, nothing more;
-- referral-sqlx's test operator_reads_seek_indexes checks them. Phones of
-- other users are scalar subqueries on the users' primary key, so a plan
-- has no join order left to choose by a guessed row count.

-- OperatorStore::search_users: phones in [p_lo, p_hi) (a prefix as a byte
-- range; none when p_lo is NULL), or the user whose code is p_code (none
-- when NULL), after the phone p_after, in byte order of the phone, at most
-- p_limit rows. The statement PgStore sent until now, unchanged.
CREATE FUNCTION referral_user_search(
    p_lo    text,
    p_hi    text,
    p_after text,
    p_code  text,
    p_limit bigint
)
RETURNS TABLE (
    id             uuid,
    phone          text,
    invite_code    text,
    created_at     timestamptz,
    referral_count bigint,
    blocked        boolean
)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
SET max_parallel_workers_per_gather = 0
AS $$
BEGIN
    RETURN QUERY
    SELECT m.id, m.phone, m.invite_code, m.created_at,
           (SELECT coalesce(sum(c.n), 0)::bigint
              FROM referral_count_shards c WHERE c.user_id = m.id),
           EXISTS (SELECT 1 FROM referral_blocks b WHERE b.user_id = m.id)
      FROM ((SELECT u.id, u.phone, u.invite_code, u.created_at FROM referral_users u
              WHERE u.phone COLLATE "C" >= p_lo AND u.phone COLLATE "C" < p_hi
                AND u.phone COLLATE "C" > p_after
              ORDER BY u.phone COLLATE "C" LIMIT p_limit)
            UNION
            (SELECT u.id, u.phone, u.invite_code, u.created_at FROM referral_users u
              WHERE upper(u.invite_code) = p_code AND u.phone COLLATE "C" > p_after)) AS m
     ORDER BY m.phone COLLATE "C"
     LIMIT p_limit;
END $$;

-- OperatorStore::leaderboard with a window: the activations after p_since,
-- read from referral_activations_at_idx, grouped by referrer; one row per
-- referrer and rewarded currency (currency NULL when none), best first.
CREATE FUNCTION referral_window_board(p_since timestamptz, p_limit bigint)
RETURNS TABLE (
    user_id   uuid,
    phone     text,
    referrals bigint,
    latest    timestamptz,
    currency  text,
    rewarded  bigint
)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
SET max_parallel_workers_per_gather = 0
AS $$
BEGIN
    RETURN QUERY
    SELECT t.referrer_id,
           (SELECT u.phone FROM referral_users u WHERE u.id = t.referrer_id),
           t.n, t.last, m.currency, m.amount
      FROM (SELECT a.referrer_id, count(*) AS n, max(a.activated_at) AS last
              FROM referral_activations a WHERE a.activated_at > p_since
             GROUP BY a.referrer_id
             ORDER BY n DESC, last, a.referrer_id
             LIMIT p_limit) AS t
      LEFT JOIN LATERAL referral_rewarded(t.referrer_id) AS m ON true
     ORDER BY t.n DESC, t.last, t.referrer_id, m.currency COLLATE "C";
END $$;

-- ReferralStore::referrals: a page of a user's referrals, oldest first,
-- from the first one or after the cursor (p_after_at, p_after_id): one row
-- per referral, one row of NULLs when the page is empty, none when no such
-- user. Seeks referral_activations_referrer_idx.
CREATE FUNCTION referral_referral_page(
    p_user     uuid,
    p_limit    bigint,
    p_after_at timestamptz,  -- the cursor, or NULL for the first page
    p_after_id uuid
)
RETURNS TABLE (
    invitee_id   uuid,
    phone        text,
    activated_at timestamptz,
    converted    boolean
)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off
SET max_parallel_workers_per_gather = 0
AS $$
BEGIN
    IF p_after_at IS NULL THEN
        RETURN QUERY
        SELECT p.invitee_id, (SELECT i.phone FROM referral_users i WHERE i.id = p.invitee_id),
               p.activated_at, p.converted
          FROM referral_users u
          LEFT JOIN LATERAL (
                SELECT a.invitee_id, a.activated_at, a.converted
                  FROM referral_activations a
                 WHERE a.referrer_id = u.id
                 ORDER BY a.activated_at, a.invitee_id
                 LIMIT p_limit) AS p ON true
         WHERE u.id = p_user
         ORDER BY p.activated_at, p.invitee_id;
    ELSE
        RETURN QUERY
        SELECT p.invitee_id, (SELECT i.phone FROM referral_users i WHERE i.id = p.invitee_id),
               p.activated_at, p.converted
          FROM referral_users u
          LEFT JOIN LATERAL (
                SELECT a.invitee_id, a.activated_at, a.converted
                  FROM referral_activations a
                 WHERE a.referrer_id = u.id
                   AND (a.activated_at, a.invitee_id) > (p_after_at, p_after_id)
                 ORDER BY a.activated_at, a.invitee_id
                 LIMIT p_limit) AS p ON true
         WHERE u.id = p_user
         ORDER BY p.activated_at, p.invitee_id;
    END IF;
END $$;
