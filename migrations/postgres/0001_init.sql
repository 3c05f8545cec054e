-- argocd-cdevents store, version 1: per-app state, open incidents, the delivery outbox.
-- (The PostgreSQL translation of migrations/sqlite/0001_init.sql; times are unix ms.)

-- The last state the detector recorded for each Application (JSON of emit::detect::AppState).
CREATE TABLE app_state (
    app_key    TEXT PRIMARY KEY,          -- <namespace>/<name>
    state      TEXT NOT NULL,
    updated_at BIGINT NOT NULL            -- unix ms
);

-- Open incidents, one per app and cause (a queryable copy of AppState.incidents).
CREATE TABLE incidents (
    app_key     TEXT NOT NULL,
    cause       TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    description TEXT NOT NULL,
    opened_at   BIGINT NOT NULL,
    PRIMARY KEY (app_key, cause)
);

-- One row per (event, sink): each sink has its own delivery state and per-app order.
CREATE TABLE outbox (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sink            TEXT NOT NULL,
    app_key         TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    event_source    TEXT NOT NULL,
    event_time      TEXT NOT NULL,
    payload         TEXT NOT NULL,        -- the CDEvent JSON
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,      -- unix ms
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (sink, event_id)
);
CREATE INDEX outbox_pending_heads ON outbox (sink, app_key, seq) WHERE status = 'pending';
CREATE INDEX outbox_by_status ON outbox (status, seq);
