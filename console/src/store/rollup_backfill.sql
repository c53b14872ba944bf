-- The rollup of audit counts (console/src/store/rollup.rs) built from the events already stored:
-- run by migration 11 right after it creates `audit_counts` and `audit_totals`, and by
-- bench/console-queries after it writes events by SQL. It assumes both tables empty. Per UTC hour
-- of an event's `time` (unix seconds / 3600), its type and its effect: how many events (`events`)
-- and the sum of their `count` (`n`), for every value of each rolled-up field (field names as the
-- API spells them; an event without the field adds nothing to it) and under field `*`, value ''
-- for every event. `audit_totals` is the same summed over all hours.

INSERT INTO audit_counts (field, value, hour, type, effect, events, n)
SELECT 'container', container, CAST(strftime('%s', time) AS INTEGER) / 3600, type, effect, count(*), sum(count)
FROM audits
GROUP BY 2, 3, 4, 5;

INSERT INTO audit_counts (field, value, hour, type, effect, events, n)
SELECT 'image', image, CAST(strftime('%s', time) AS INTEGER) / 3600, type, effect, count(*), sum(count)
FROM audits
GROUP BY 2, 3, 4, 5;

INSERT INTO audit_counts (field, value, hour, type, effect, events, n)
SELECT 'rule', rule, CAST(strftime('%s', time) AS INTEGER) / 3600, type, effect, count(*), sum(count)
FROM audits
WHERE rule IS NOT NULL
GROUP BY 2, 3, 4, 5;

INSERT INTO audit_counts (field, value, hour, type, effect, events, n)
SELECT 'attack', attack, CAST(strftime('%s', time) AS INTEGER) / 3600, type, effect, count(*), sum(count)
FROM audits
WHERE attack IS NOT NULL
GROUP BY 2, 3, 4, 5;

INSERT INTO audit_counts (field, value, hour, type, effect, events, n)
SELECT 'customRule', custom_rule, CAST(strftime('%s', time) AS INTEGER) / 3600, type, effect, count(*), sum(count)
FROM audits
WHERE custom_rule IS NOT NULL
GROUP BY 2, 3, 4, 5;

INSERT INTO audit_counts (field, value, hour, type, effect, events, n)
SELECT 'cluster', cluster, CAST(strftime('%s', time) AS INTEGER) / 3600, type, effect, count(*), sum(count)
FROM audits
WHERE cluster IS NOT NULL
GROUP BY 2, 3, 4, 5;

INSERT INTO audit_counts (field, value, hour, type, effect, events, n)
SELECT 'family', family, CAST(strftime('%s', time) AS INTEGER) / 3600, type, effect, count(*), sum(count)
FROM audits
WHERE family IS NOT NULL
GROUP BY 2, 3, 4, 5;

INSERT INTO audit_counts (field, value, hour, type, effect, events, n)
SELECT 'service', service, CAST(strftime('%s', time) AS INTEGER) / 3600, type, effect, count(*), sum(count)
FROM audits
WHERE service IS NOT NULL
GROUP BY 2, 3, 4, 5;

INSERT INTO audit_counts (field, value, hour, type, effect, events, n)
SELECT 'domain', domain, CAST(strftime('%s', time) AS INTEGER) / 3600, type, effect, count(*), sum(count)
FROM audits
WHERE domain IS NOT NULL
GROUP BY 2, 3, 4, 5;

INSERT INTO audit_counts (field, value, hour, type, effect, events, n)
SELECT 'process', process, CAST(strftime('%s', time) AS INTEGER) / 3600, type, effect, count(*), sum(count)
FROM audits
GROUP BY 2, 3, 4, 5;

INSERT INTO audit_counts (field, value, hour, type, effect, events, n)
SELECT '*', '', CAST(strftime('%s', time) AS INTEGER) / 3600, type, effect, count(*), sum(count)
FROM audits
GROUP BY 3, 4, 5;

INSERT INTO audit_totals (field, value, type, effect, events, n)
SELECT field, value, type, effect, sum(events), sum(n)
FROM audit_counts
GROUP BY 1, 2, 3, 4;
