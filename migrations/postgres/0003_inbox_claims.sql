-- Inbox claims: the gateway deciding a received event holds its row until a time (unix ms);
-- other gateways claim only unclaimed rows and rows whose claim expired.
ALTER TABLE inbox ADD COLUMN claimed_by TEXT;
ALTER TABLE inbox ADD COLUMN claimed_until BIGINT;

-- The claim query walks pending rows in seq order (FOR UPDATE SKIP LOCKED); the renewal
-- finds the pending rows of one owner. They replace inbox_pending (status, seq).
DROP INDEX inbox_pending;
CREATE INDEX inbox_claimable ON inbox (seq) WHERE status = 'pending';
CREATE INDEX inbox_claimed_by ON inbox (claimed_by) WHERE status = 'pending';
