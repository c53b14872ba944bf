-- The PostgreSQL store's tables (console/src/store/postgres/), as migration 1 creates them: the
-- tables of the SQLite store at its migration 12, in PostgreSQL's types. Every integer is a
-- BIGINT (the plans bind 64-bit integers); every text the audit plans compare, sort or match is
-- COLLATE "C" (byte order, as SQLite's): a glob's values are read as the range of its literal
-- start, which a language's collation would not keep together.

CREATE TABLE policies (
    revision BIGINT PRIMARY KEY,
    document TEXT NOT NULL,
    updated  TEXT NOT NULL,
    author   TEXT
);
CREATE TABLE waas_policies (
    revision BIGINT PRIMARY KEY,
    document TEXT NOT NULL,
    updated  TEXT NOT NULL,
    author   TEXT
);

CREATE TABLE audits (
    -- Arrival order: given under the ingestion lock, so that it is also commit order (a webhook
    -- reading after its cursor never passes a row committed later with a smaller number).
    seq         BIGINT PRIMARY KEY,
    id          TEXT COLLATE "C" NOT NULL UNIQUE,
    time        TEXT COLLATE "C" NOT NULL,
    type        TEXT COLLATE "C" NOT NULL,
    effect      TEXT COLLATE "C" NOT NULL,
    rule        TEXT COLLATE "C",
    attack      TEXT COLLATE "C",
    custom_rule TEXT COLLATE "C",
    container   TEXT COLLATE "C" NOT NULL,
    image       TEXT COLLATE "C" NOT NULL,
    task        TEXT COLLATE "C",
    cluster     TEXT COLLATE "C",
    family      TEXT COLLATE "C",
    service     TEXT COLLATE "C",
    pid         BIGINT NOT NULL,
    process     TEXT COLLATE "C" NOT NULL,
    cmdline     TEXT COLLATE "C",
    parent      TEXT COLLATE "C",
    domain      TEXT COLLATE "C",
    ip          TEXT COLLATE "C",
    port        BIGINT,
    message     TEXT COLLATE "C" NOT NULL,
    count       BIGINT NOT NULL,
    received    TEXT NOT NULL,
    source      TEXT COLLATE "C",
    method      TEXT COLLATE "C",
    url         TEXT COLLATE "C",
    source_ip   TEXT COLLATE "C",
    field       TEXT COLLATE "C",
    request_id  TEXT COLLATE "C",
    -- The words of message, cmdline, process, domain, ip and url, for the text search.
    words       TSVECTOR NOT NULL
);
CREATE INDEX audits_by_time ON audits (time, seq);
CREATE INDEX audits_words ON audits USING gin (words);
CREATE INDEX audits_by_container ON audits (container, time, seq);
CREATE INDEX audits_by_image ON audits (image, time, seq);
CREATE INDEX audits_by_type ON audits (type, time, seq);
CREATE INDEX audits_by_effect ON audits (effect, time, seq);
CREATE INDEX audits_by_rule ON audits (rule, time, seq) WHERE rule IS NOT NULL;
CREATE INDEX audits_by_attack ON audits (attack, time, seq) WHERE attack IS NOT NULL;
CREATE INDEX audits_by_custom_rule ON audits (custom_rule, time, seq) WHERE custom_rule IS NOT NULL;
CREATE INDEX audits_by_task ON audits (task, time, seq) WHERE task IS NOT NULL;
CREATE INDEX audits_by_cluster ON audits (cluster, time, seq) WHERE cluster IS NOT NULL;
CREATE INDEX audits_by_family ON audits (family, time, seq) WHERE family IS NOT NULL;
CREATE INDEX audits_by_service ON audits (service, time, seq) WHERE service IS NOT NULL;
CREATE INDEX audits_by_process ON audits (process, time, seq);
CREATE INDEX audits_by_parent ON audits (parent, time, seq) WHERE parent IS NOT NULL;
CREATE INDEX audits_by_domain ON audits (domain, time, seq) WHERE domain IS NOT NULL;
CREATE INDEX audits_by_ip ON audits (ip, time, seq) WHERE ip IS NOT NULL;
CREATE INDEX audits_by_port ON audits (port, time, seq) WHERE port IS NOT NULL;
CREATE INDEX audits_by_method ON audits (method, time, seq) WHERE method IS NOT NULL;
CREATE INDEX audits_by_source_ip ON audits (source_ip, time, seq) WHERE source_ip IS NOT NULL;
CREATE INDEX audits_by_field ON audits (field, time, seq) WHERE field IS NOT NULL;
CREATE INDEX audits_by_request_id ON audits (request_id, time, seq) WHERE request_id IS NOT NULL;

-- The rollup of audit counts (console/src/store/rollup.rs): per hour, and over all time with
-- marginal rows (type or effect '' = any).
CREATE TABLE audit_counts (
    field  TEXT COLLATE "C" NOT NULL,
    value  TEXT COLLATE "C" NOT NULL,
    hour   BIGINT NOT NULL,
    type   TEXT COLLATE "C" NOT NULL,
    effect TEXT COLLATE "C" NOT NULL,
    events BIGINT NOT NULL,
    n      BIGINT NOT NULL,
    -- The counts carried in the key's index, so that a histogram or a count of one value (or of
    -- a glob's range) is read from the index alone, not a table page per row (EXPLAIN at
    -- 1,000,000 events: 7,099 table pages and 106 ms for the 30 days of `*`; 84 index pages and
    -- 9 ms with them; docs/console-api.md, "Indexes").
    PRIMARY KEY (field, value, hour, type, effect) INCLUDE (events, n)
);
CREATE INDEX audit_counts_by_hour ON audit_counts (field, hour, value, type, effect, events, n);
CREATE TABLE audit_totals (
    field  TEXT COLLATE "C" NOT NULL,
    value  TEXT COLLATE "C" NOT NULL,
    type   TEXT COLLATE "C" NOT NULL,
    effect TEXT COLLATE "C" NOT NULL,
    events BIGINT NOT NULL,
    n      BIGINT NOT NULL,
    PRIMARY KEY (field, value, type, effect)
);
CREATE INDEX audit_totals_by_n ON audit_totals (field, type, effect, n DESC, value);

CREATE TABLE defenders (
    id         TEXT PRIMARY KEY,
    container  TEXT NOT NULL,
    image      TEXT NOT NULL,
    task       TEXT,
    version    TEXT NOT NULL,
    revision   TEXT,
    first_seen TEXT NOT NULL,
    last_seen  TEXT NOT NULL,
    cluster    TEXT,
    family     TEXT,
    service    TEXT,
    protects   TEXT -- a JSON array of ports
);
CREATE INDEX defenders_by_time ON defenders (last_seen);

CREATE TABLE observations (
    container  TEXT NOT NULL,
    image      TEXT NOT NULL,
    cluster    TEXT,
    family     TEXT,
    service    TEXT,
    kind       TEXT NOT NULL,
    value      TEXT NOT NULL,
    count      BIGINT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen  TEXT NOT NULL,
    PRIMARY KEY (container, image, kind, value)
);
CREATE INDEX observations_by_time ON observations (last_seen);

CREATE TABLE users (
    name    TEXT PRIMARY KEY,
    role    TEXT NOT NULL,
    hash    TEXT NOT NULL, -- Argon2id, PHC string
    created TEXT NOT NULL
);
CREATE TABLE sessions (
    id_hash   TEXT PRIMARY KEY, -- SHA-256 of the cookie's session id
    "user"    TEXT NOT NULL,
    role      TEXT NOT NULL,
    csrf      TEXT NOT NULL,
    created   TEXT NOT NULL,
    last_seen TEXT NOT NULL
);
CREATE INDEX sessions_by_user ON sessions ("user");
CREATE INDEX sessions_by_time ON sessions (last_seen);
CREATE TABLE tokens (
    name        TEXT PRIMARY KEY, -- never reused
    role        TEXT NOT NULL,
    hash        TEXT NOT NULL UNIQUE, -- SHA-256 of the token
    collections TEXT,
    created     TEXT NOT NULL,
    last_used   TEXT,
    revoked     TEXT
);
CREATE TABLE activity (
    seq    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time   TEXT COLLATE "C" NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL -- JSON
);
CREATE INDEX activity_by_time ON activity (time, seq);

-- The webhooks' delivery cursors, by the SHA-256 of the URL.
CREATE TABLE deliveries (
    target TEXT PRIMARY KEY,
    seq    BIGINT NOT NULL
);

-- Periodic work that one instance of the fleet does per period (retention): when it last started.
CREATE TABLE turns (
    task TEXT PRIMARY KEY,
    at   TEXT NOT NULL
);
