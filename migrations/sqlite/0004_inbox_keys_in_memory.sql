-- The inbox's dedup key (source + id) leaves the file: the gateway holds the keys in memory
-- (src/store/inbox_keys.rs). With the random ids most CloudEvents SDKs make, the UNIQUE
-- index wrote a page of its own to the WAL for every new event.
--
-- SQLite cannot drop a table's constraint, so the table is rebuilt with its rows. Its
-- AUTOINCREMENT counter is carried over: a seq is never given twice, even one whose row was
-- pruned. Nothing refers to the inbox by a foreign key.
CREATE TABLE inbox_new (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    client TEXT NOT NULL,
    payload TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    done_at INTEGER,
    claimed_by TEXT,
    claimed_until INTEGER
);
INSERT INTO inbox_new (seq, source, event_id, event_type, client, payload, received_at,
                       status, done_at, claimed_by, claimed_until)
    SELECT seq, source, event_id, event_type, client, payload, received_at,
           status, done_at, claimed_by, claimed_until
    FROM inbox;
DELETE FROM sqlite_sequence WHERE name = 'inbox_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'inbox_new', seq FROM sqlite_sequence WHERE name = 'inbox';
DROP TABLE inbox;
ALTER TABLE inbox_new RENAME TO inbox;
CREATE INDEX inbox_claimable ON inbox (seq, claimed_until, claimed_by) WHERE status = 'pending';
