-- The words' rows and runs (words.sql) built from the events already stored: run by migration 3
-- right after it creates `audit_word_runs`, and by bench/console-queries after it writes events
-- by SQL. It assumes no 'word' rows in `audit_counts` and no runs.
--
-- `unnest(words)` gives each lexeme of an event once, as the console's `tsvector` made it (the
-- same words ingestion counts). A word is counted when it is made of the 26 lowercase ASCII
-- letters alone (`ltrim` of them leaves nothing: rollup.rs `letters`, character for character);
-- otherwise its leading run of them, when not empty, is a run. One pass over the events each.
-- The rows' hour is taken once per event (`OFFSET 0` keeps the subquery from being merged into
-- the outer query, which took it once per word: 68 s instead of 40 s at 1,000,000 events).
INSERT INTO audit_counts (field, value, hour, type, effect, events, n)
SELECT 'word', w.lexeme, e.hour, e.type, e.effect, count(*), sum(e.count)
FROM (SELECT a.type, a.effect, a.count, a.words,
             CAST(floor(extract(epoch FROM CAST(a.time AS timestamptz)) / 3600) AS BIGINT) AS hour
      FROM audits AS a OFFSET 0) AS e,
     unnest(e.words) AS w
WHERE ltrim(w.lexeme, 'abcdefghijklmnopqrstuvwxyz') = ''
GROUP BY 2, 3, 4, 5;

INSERT INTO audit_word_runs (run, hour)
SELECT left(w.lexeme, length(w.lexeme) - length(ltrim(w.lexeme, 'abcdefghijklmnopqrstuvwxyz'))),
       max(CAST(floor(extract(epoch FROM CAST(a.time AS timestamptz)) / 3600) AS BIGINT))
FROM audits AS a, unnest(a.words) AS w
WHERE ltrim(w.lexeme, 'abcdefghijklmnopqrstuvwxyz') NOT IN ('', w.lexeme)
GROUP BY 1;
