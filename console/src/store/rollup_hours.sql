-- The marginal rows of `audit_counts` per hour (console/src/store/rollup.rs): for each field,
-- value and hour, its events and sum of `count` over every type and effect, in `audit_hours`.
-- Made from `audit_counts` alone (no event read): run by SQLite's migration 13, PostgreSQL's
-- migration 2 and bench/console-queries after rollup_backfill.sql. Any rows there were are
-- replaced. `audit_counts` is read in its key's order, already grouped by field, value and hour.
-- PostgreSQL's words of the text search (field `word`, its migration 3) have no rows here.
DELETE FROM audit_hours;
INSERT INTO audit_hours (field, value, hour, events, n)
SELECT field, value, hour, sum(events), sum(n)
FROM audit_counts
WHERE field <> 'word'
GROUP BY field, value, hour;
