-- The console's index. Times are milliseconds since the Unix epoch (bigint), as Spillway's
-- records carry them. Every statement creates only what is missing, so applying this file
-- again is harmless; a later change adds statements, and removes only statements that a later
-- one undoes. It is applied when its digest differs from the one stored in
-- spillway.schema_version (crates/index/src/schema.rs).

CREATE SCHEMA IF NOT EXISTS spillway;

-- The next offset to index per partition, written in the transaction of the rows it covers:
-- an indexer that restarts resumes exactly there, so nothing is indexed twice or skipped.
CREATE TABLE IF NOT EXISTS spillway.index_offsets (
    topic text NOT NULL,
    partition integer NOT NULL,
    next_offset bigint NOT NULL,
    PRIMARY KEY (topic, partition)
);

-- One row per accepted (or quarantined) event; the body stays in Kafka at (topic, partition,
-- record_offset).
CREATE TABLE IF NOT EXISTS spillway.events (
    event_id text PRIMARY KEY,
    source text NOT NULL,
    event_type text,
    dedupe_key text,
    received_ms bigint NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    record_offset bigint NOT NULL,
    content_type text,
    body_bytes bigint NOT NULL,
    object_uri text,
    batch_id text,
    test_for text,
    quarantine_reason text,
    headers jsonb NOT NULL,
    -- pending, delivered, retrying, dead_lettered or quarantined: from its deliveries.
    status text NOT NULL,
    last_http_status integer,
    last_attempt_ms bigint
);
CREATE INDEX IF NOT EXISTS events_by_time ON spillway.events (received_ms DESC, event_id DESC);
CREATE INDEX IF NOT EXISTS events_by_dedupe_key ON spillway.events (dedupe_key);

-- Where each event stands with each subscription: its latest attempt or dead letter.
CREATE TABLE IF NOT EXISTS spillway.deliveries (
    event_id text NOT NULL,
    subscription text NOT NULL,
    -- delivered, retrying or dead_lettered.
    status text NOT NULL,
    attempts integer NOT NULL,
    last_http_status integer,
    last_error text,
    last_ms bigint NOT NULL,
    next_due_ms bigint,
    dead_reason text,
    PRIMARY KEY (event_id, subscription)
);
CREATE INDEX IF NOT EXISTS deliveries_by_subscription ON spillway.deliveries (subscription, status, last_ms);

-- One row per attempt record, keyed by where the record is in the attempts topic.
CREATE TABLE IF NOT EXISTS spillway.attempts (
    partition integer NOT NULL,
    record_offset bigint NOT NULL,
    event_id text NOT NULL,
    subscription text NOT NULL,
    attempt integer NOT NULL,
    at_ms bigint NOT NULL,
    latency_ms bigint NOT NULL,
    outcome text NOT NULL,
    http_status integer,
    error text,
    response_head text,
    next_kind text NOT NULL,
    next_due_ms bigint,
    dead_reason text,
    test boolean NOT NULL,
    PRIMARY KEY (partition, record_offset)
);
CREATE INDEX IF NOT EXISTS attempts_by_event ON spillway.attempts (event_id, at_ms);
CREATE INDEX IF NOT EXISTS attempts_by_subscription ON spillway.attempts (subscription, at_ms);

-- Every action that changed something, by whom.
CREATE TABLE IF NOT EXISTS spillway.audit_log (
    id bigserial PRIMARY KEY,
    at_ms bigint NOT NULL,
    actor text NOT NULL,
    role text NOT NULL,
    action text NOT NULL,
    target jsonb NOT NULL,
    events bigint NOT NULL,
    outcome text NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_by_time ON spillway.audit_log (at_ms DESC);

-- Pages of one source, type, status or last HTTP status in the order a search returns them
-- (event_id too, so no sort is needed). They replace the indexes without event_id. The
-- planner still walks events_by_time and filters when it expects a match within the first
-- rows; a source common overall but absent lately costs a scan of the newer events
-- (docs/benchmarks.md measures one).
CREATE INDEX IF NOT EXISTS events_by_source_page ON spillway.events (source, received_ms DESC, event_id DESC);
CREATE INDEX IF NOT EXISTS events_by_type_page ON spillway.events (event_type, received_ms DESC, event_id DESC);
CREATE INDEX IF NOT EXISTS events_by_status_page ON spillway.events (status, received_ms DESC, event_id DESC);
CREATE INDEX IF NOT EXISTS events_by_http_status_page ON spillway.events (last_http_status, received_ms DESC, event_id DESC);
DROP INDEX IF EXISTS spillway.events_by_source;
DROP INDEX IF EXISTS spillway.events_by_type;
DROP INDEX IF EXISTS spillway.events_by_status;
DROP INDEX IF EXISTS spillway.events_by_http_status;
-- The health figures: attempts of the last hour, dead letters of the last hour.
CREATE INDEX IF NOT EXISTS attempts_by_time ON spillway.attempts (at_ms);
CREATE INDEX IF NOT EXISTS deliveries_by_status ON spillway.deliveries (status, last_ms);

-- The digest of the schema.sql last applied.
CREATE TABLE IF NOT EXISTS spillway.schema_version (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    sha256 text NOT NULL
);
