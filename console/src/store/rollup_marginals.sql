-- The marginal rows of `audit_totals` (console/src/store/rollup.rs) made from its rows by type
-- and effect: run by migration 12 and by bench/console-queries after rollup_backfill.sql. Any
-- marginal rows there were are replaced.
--
-- For each field and value, besides its rows per (type, effect): one per type over every effect
-- (effect ''), one per effect over every type (type ''), and one over both (''). No event has an
-- empty type or effect, so '' stands for "any". With them, the top values of a field for any
-- exact type and effect (or none) are the first rows of one index range, read in order.
DELETE FROM audit_totals WHERE type = '' OR effect = '';
INSERT INTO audit_totals (field, value, type, effect, events, n)
SELECT field, value, type, '', sum(events), sum(n) FROM audit_totals GROUP BY field, value, type
UNION ALL
SELECT field, value, '', effect, sum(events), sum(n) FROM audit_totals GROUP BY field, value, effect
UNION ALL
SELECT field, value, '', '', sum(events), sum(n) FROM audit_totals GROUP BY field, value;
