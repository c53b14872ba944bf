-- Migration 3 (the text search's words in the rollup of counts, console/src/store/rollup.rs
-- `WORD`; words_backfill.sql, appended, counts the events already stored): the count of a search
-- of one common word read from the hours' rows instead of a table page per match.
--
-- Per word of lowercase ASCII letters alone, `audit_counts` has rows under field 'word' (hours
-- only, no `audit_totals` rows). Every other word (digits, other letters) is not counted; its
-- leading run of those letters, if any, is kept here with the newest hour it was seen in, so that
-- a prefix some uncounted word begins with is answered from the events: a prefix of letters
-- begins such a word exactly when it begins its run. Retention deletes the runs last seen before
-- its cutoff, with the events that had them.
CREATE TABLE audit_word_runs (
    run  TEXT COLLATE "C" PRIMARY KEY,
    hour BIGINT NOT NULL
);
