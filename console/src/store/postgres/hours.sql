-- Migration 2: the rollup's marginal rows per hour (console/src/store/rollup.rs, `HOURS`): for
-- each field, value and hour, the events and sum of `count` over every type and effect, so that
-- a value's sum over a range with no condition on type or effect reads one row per hour (its
-- ~15 rows per hour of `audit_counts`, one per type and effect, lie among them in its key). The
-- counts in both indexes, as `audit_counts` has them, so that the reads are index-only. Filled
-- from `audit_counts` by ../rollup_hours.sql, which follows.
CREATE TABLE audit_hours (
    field  TEXT COLLATE "C" NOT NULL,
    value  TEXT COLLATE "C" NOT NULL,
    hour   BIGINT NOT NULL,
    events BIGINT NOT NULL,
    n      BIGINT NOT NULL,
    PRIMARY KEY (field, value, hour) INCLUDE (events, n)
);
CREATE INDEX audit_hours_by_hour ON audit_hours (field, hour, value, events, n);
