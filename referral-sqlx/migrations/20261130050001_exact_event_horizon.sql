-- Reading the outbox without a needless hold-back.
--
-- referral_events_horizon() (migration 20261130020001) takes the calling
-- statement's snapshot and then reads pg_stat_activity to skip the running
-- transactions of other databases. A transaction of another database that
-- ends between the two is no longer found there, so it is counted as this
-- database's and holds the horizon back for that read: nothing is missed,
-- but a reader may be shown nothing new although every write of this
-- database has ended (a busy cluster with many databases does this all the
-- time). Readers may expect the opposite: once no write is running, every
-- event of a finished operation is readable.
--
-- referral_events_after() orders its reads so that no transaction is
-- misjudged:
--   1. the snapshot S (its running transactions and xmax);
--   2. pg_stat_activity, later than S: a transaction of S still running
--      now is found with its database and kind of backend; one not found
--      has ended. Those of other databases, and of backends that are not
--      clients (autovacuum's ANALYZE takes an xid in this database), never
--      write this outbox and are skipped;
--   3. the commit log, later still: whether each transaction of S, not
--      known to be another database's, has ended by now;
--   4. the events, in a statement of its own, so with a snapshot taken
--      after 3 (READ COMMITTED, which every function here requires).
-- A transaction that ended before 3 is settled in the snapshot of 4
-- (committed: its events are there; rolled back: they never will be), so
-- the horizon is the oldest transaction of S still running at 3 that is not
-- another database's, or S's xmax when there is none. A transaction given
-- its xid after S has an xid at or above S's xmax, so at or above the
-- horizon. A backend of another role whose backend_xid pg_stat_activity
-- hides (without pg_read_all_stats) is counted as this database's while it
-- runs: later, never wrong.
--
-- referral_events_horizon() stays for processes of the previous version
-- during a rolling deploy; nothing of this version calls it.
CREATE FUNCTION referral_events_after(p_after bigint, p_limit bigint)
RETURNS SETOF referral_events
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_snap    pg_snapshot;
    v_other   xid[];
    v_horizon bigint;
BEGIN
    PERFORM referral_require_read_committed();
    v_snap := pg_current_snapshot();
    SELECT coalesce(array_agg(a.backend_xid), '{}') INTO v_other
      FROM pg_stat_activity a
     WHERE a.backend_xid IS NOT NULL
       AND (a.backend_type <> 'client backend'
            OR a.datid IS DISTINCT FROM
               (SELECT d.oid FROM pg_database d WHERE d.datname = current_database()));
    SELECT coalesce(min(x), pg_snapshot_xmax(v_snap))::text::bigint << 16 INTO v_horizon
      FROM pg_snapshot_xip(v_snap) AS x
     WHERE x::xid <> ALL (v_other)
       AND pg_xact_status(x) = 'in progress';
    RETURN QUERY
        SELECT * FROM referral_events e
         WHERE e.id > p_after AND e.id < v_horizon
         ORDER BY e.id
         LIMIT p_limit;
END $$;
