-- The react flow: received events (inbox, deduplicated by source + id) and the decisions
-- taken on them (the audit trail; also the guard against acting twice on one event).
-- (The PostgreSQL translation of migrations/sqlite/0002_react.sql.)
CREATE TABLE inbox (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    client TEXT NOT NULL,
    payload TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    done_at BIGINT,
    UNIQUE (source, event_id)
);
CREATE INDEX inbox_pending ON inbox (status, seq);

CREATE TABLE decisions (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    decided_at BIGINT NOT NULL,
    event_source TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    policy TEXT NOT NULL,
    application TEXT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL,
    chain_id TEXT,
    requests TEXT NOT NULL DEFAULT '[]',
    UNIQUE (event_source, event_id, policy, application)
);
CREATE INDEX decisions_cooldown ON decisions (policy, application, outcome, decided_at);
