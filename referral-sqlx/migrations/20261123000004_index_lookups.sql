-- Every lookup inside the rule functions goes through an index, whatever the
-- table's size was when a session first planned it.
--
-- PL/pgSQL caches each statement's plan per session and, after five calls,
-- may keep a generic plan. A session that plans while a table is tiny (a
-- fresh deployment, or referral_otp_codes after a quiet spell: its rows are
-- deleted on every verify) gets a sequential scan and keeps it while the
-- table grows or fills with dead rows. Measured (PERFORMANCE.md): the pool
-- whose connections planned first ran verify_otp at half the speed of a
-- second pool for the whole run; pg_stat_user_tables showed 5 258 sequential
-- scans reading 1.7 M tuples of referral_otp_codes (3 300 live rows, 51 910
-- dead, 771 pages). With sequential scans disabled inside the functions both
-- pools ran at the same speed. Every statement in them has an index to use
-- (primary keys, the phone/user indexes, referral_otp_global_sends_at_idx),
-- so this only removes the bad choice.
ALTER FUNCTION referral_otp_issue(text, uuid, bytea, timestamptz, timestamptz, timestamptz,
                                  bigint, bigint, integer, bigint, integer, integer)
    SET enable_seqscan = off;
ALTER FUNCTION referral_otp_revoke(text, uuid) SET enable_seqscan = off;
ALTER FUNCTION referral_otp_verify(text, bytea, timestamptz, integer, bigint, integer)
    SET enable_seqscan = off;
ALTER FUNCTION referral_register(text, uuid, timestamptz, text[]) SET enable_seqscan = off;
ALTER FUNCTION referral_activate(uuid, text, timestamptz, bigint, integer)
    SET enable_seqscan = off;
