-- Inbox claims: the gateway deciding a received event holds its row until a time (unix ms).
-- On SQLite one gateway uses a file, so a claim mostly records who decided the row; a
-- restarted gateway (a new owner) takes over the rows of its predecessor at once.
ALTER TABLE inbox ADD COLUMN claimed_by TEXT;
ALTER TABLE inbox ADD COLUMN claimed_until INTEGER;

-- The claim query: pending rows in seq order, filtered on the claim without reading the row.
-- It replaces inbox_pending (status, seq), which only served the same scan.
DROP INDEX inbox_pending;
CREATE INDEX inbox_claimable ON inbox (seq, claimed_until, claimed_by) WHERE status = 'pending';
