-- pgbench: PgStore::profile's statement (referral-sqlx/src/users.rs, PROFILE)
-- for one of the first :owners bench users (5 referrals each). See run.sh.
\set n random(1, :owners)
SELECT u.id, u.phone, u.invite_code, u.created_at,
       (SELECT coalesce(sum(c.n), 0)::bigint
          FROM referral_count_shards c WHERE c.user_id = u.id) AS referral_count,
       r.invite_code AS activated_invite_code,
       ARRAY(SELECT i.phone
               FROM referral_activations a
               JOIN referral_users i ON i.id = a.invitee_id
              WHERE a.referrer_id = u.id
              ORDER BY a.activated_at, a.invitee_id
              LIMIT 100) AS referrals
  FROM referral_users u
  LEFT JOIN referral_activations me ON me.invitee_id = u.id
  LEFT JOIN referral_users r ON r.id = me.referrer_id
 WHERE u.id = referral_bench_id(:n);
