-- The rollup of audit counts (console/src/store/rollup.rs) built from the events already stored:
-- run by migration 11 right after it creates `audit_counts` and `audit_totals`, and by
-- bench/console-queries after it writes events by SQL. It assumes both tables empty.
--
-- Per UTC hour of an event's `time` (unix seconds / 3600), its type and its effect: how many
-- events (`events`) and the sum of their `count` (`n`), for every value of each rolled-up field
-- (named as the API names it; an event without the field adds nothing to it) and under field `*`,
-- value '', for every event. One pass over the events (each joined to the field names), one sort.
INSERT INTO audit_counts (field, value, hour, type, effect, events, n)
SELECT field, value, hour, type, effect, count(*), sum(count)
FROM (
    SELECT f.column1 AS field,
           CASE f.column1
               WHEN '*' THEN ''
               WHEN 'container' THEN a.container
               WHEN 'image' THEN a.image
               WHEN 'rule' THEN a.rule
               WHEN 'attack' THEN a.attack
               WHEN 'customRule' THEN a.custom_rule
               WHEN 'cluster' THEN a.cluster
               WHEN 'family' THEN a.family
               WHEN 'service' THEN a.service
               WHEN 'domain' THEN a.domain
               WHEN 'process' THEN a.process
           END AS value,
           CAST(strftime('%s', a.time) AS INTEGER) / 3600 AS hour,
           a.type AS type, a.effect AS effect, a.count AS count
    FROM audits AS a,
         (VALUES ('*'), ('container'), ('image'), ('rule'), ('attack'), ('customRule'),
                 ('cluster'), ('family'), ('service'), ('domain'), ('process')) AS f
)
WHERE value IS NOT NULL
GROUP BY field, value, hour, type, effect;

-- The same summed over all hours.
INSERT INTO audit_totals (field, value, type, effect, events, n)
SELECT field, value, type, effect, sum(events), sum(n)
FROM audit_counts
GROUP BY field, value, type, effect;
