//! The SQL both stores run word for word (their placeholders and types agree), so that the
//! two implementations of [`super::Store`] cannot drift apart on it. Statements that differ
//! (SQLite's `json_each` against PostgreSQL's arrays, claims, casts) stay with their store.

/// The columns of an outbox row ([`super::OutboxRow`]), on the alias `o`.
macro_rules! row_columns {
    () => {
        "o.seq, o.sink, o.app_key, o.event_id, o.event_type, o.event_source, o.event_time, \
         o.payload, o.status, o.attempts, o.next_attempt_at, o.last_error, o.created_at, \
         o.updated_at"
    };
}
pub(super) use row_columns;

/// For each app, the oldest pending row of a sink, if it is due.
pub(super) const DUE_DELIVERIES: &str = concat!(
    "SELECT ",
    row_columns!(),
    " FROM outbox o \
     JOIN (SELECT MIN(seq) AS head FROM outbox WHERE sink = $1 AND status = 'pending' \
           GROUP BY app_key) h ON o.seq = h.head \
     WHERE o.next_attempt_at <= $2 ORDER BY o.seq LIMIT $3"
);

pub(super) const LOAD_APP_STATES: &str = "SELECT app_key, state FROM app_state ORDER BY app_key";

pub(super) const UPSERT_APP_STATE: &str = "INSERT INTO app_state (app_key, state, updated_at) VALUES ($1, $2, $3) ON CONFLICT \
     (app_key) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at";

pub(super) const UPSERT_INCIDENT: &str = "INSERT INTO incidents (app_key, cause, incident_id, description, opened_at) VALUES \
     ($1, $2, $3, $4, $5) ON CONFLICT (app_key, cause) DO UPDATE SET opened_at = CASE \
     WHEN incidents.incident_id = excluded.incident_id THEN incidents.opened_at ELSE \
     excluded.opened_at END, incident_id = excluded.incident_id, description = \
     excluded.description";

pub(super) const DELETE_APP_STATE: &str = "DELETE FROM app_state WHERE app_key = $1";

pub(super) const NEXT_DUE_AT: &str = "SELECT MIN(o.next_attempt_at) FROM outbox o JOIN (SELECT MIN(seq) AS head FROM \
     outbox WHERE sink = $1 AND status = 'pending' GROUP BY app_key) h ON o.seq = h.head";

pub(super) const MARK_DELIVERED: &str = "UPDATE outbox SET status = 'delivered', attempts = attempts + 1, last_error = NULL, \
     updated_at = $2 WHERE seq = $1";

pub(super) const MARK_RETRY: &str = "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $2, last_error = $3, \
     updated_at = $4 WHERE seq = $1";

pub(super) const MARK_DEAD: &str = "UPDATE outbox SET status = 'dead', attempts = attempts + 1, last_error = $2, \
     updated_at = $3 WHERE seq = $1";

pub(super) const OUTBOX_COUNTS: &str = "SELECT sink, status, COUNT(*) AS count FROM outbox GROUP BY sink, status ORDER BY \
     sink, status";

pub(super) const PRUNE_DELIVERED: &str =
    "DELETE FROM outbox WHERE status = 'delivered' AND updated_at < $1";

pub(super) const OPEN_INCIDENTS: &str = "SELECT app_key, cause, incident_id, description, opened_at FROM incidents ORDER BY \
     app_key, cause";

pub(super) const PING: &str = "SELECT 1";

pub(super) const RENEW_INBOX_CLAIMS: &str =
    "UPDATE inbox SET claimed_until = $2 WHERE status = 'pending' AND claimed_by = $1";

pub(super) const FINISH_INBOX: &str =
    "UPDATE inbox SET status = 'done', done_at = $2 WHERE seq = $1";

pub(super) const RECORD_DECISION: &str = "INSERT INTO decisions (decided_at, event_source, event_id, event_type, policy, \
     application, action, outcome, reason, chain_id, requests) VALUES ($1, $2, $3, $4, \
     $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (event_source, event_id, policy, \
     application) DO NOTHING";

pub(super) const SETTLE_DECISION: &str = "UPDATE decisions SET outcome = $1, reason = $2, requests = $3, decided_at = $4 WHERE \
     event_source = $5 AND event_id = $6 AND policy = $7 AND application = $8";

pub(super) const SETTLE_INTERRUPTED: &str = "UPDATE decisions SET outcome = 'failed', decided_at = $1, reason = 'interrupted: the \
     gateway stopped while calling Argo CD; not retried (the call may have been made)' \
     WHERE outcome = 'acting' AND decided_at < $2";

pub(super) const LAST_ACTED: &str = "SELECT MAX(decided_at) FROM decisions WHERE policy = $1 AND application = $2 AND \
     outcome IN ('acted', 'acting')";

pub(super) const LIST_DECISIONS: &str = "SELECT seq, decided_at, event_source, event_id, event_type, policy, application, \
     action, outcome, reason, chain_id, requests FROM decisions ORDER BY seq DESC LIMIT \
     $1";

/// Delete up to `$2` decided inbox rows received before `$1`, oldest first. Rows are found
/// in seq order up to the first one received since `$1` (seqs grow with time), so the scan
/// stops there instead of reading the whole table.
macro_rules! prune_inbox {
    () => {
        "DELETE FROM inbox WHERE seq IN (SELECT seq FROM inbox WHERE status = 'done' AND \
         seq < COALESCE((SELECT seq FROM inbox WHERE received_at >= $1 ORDER BY seq LIMIT 1), \
         9223372036854775807) ORDER BY seq LIMIT $2)"
    };
}
pub(super) const PRUNE_INBOX: &str = prune_inbox!();
/// [`PRUNE_INBOX`] telling the keys (source, id) of the rows it deleted, for the SQLite
/// store's keys in memory.
pub(super) const PRUNE_INBOX_RETURNING_KEYS: &str =
    concat!(prune_inbox!(), " RETURNING source, event_id");

/// Every inbox row's key (source, id), for the SQLite store's keys in memory.
pub(super) const INBOX_KEYS: &str = "SELECT source, event_id FROM inbox";

/// Delete up to `$2` settled decisions last decided before `$1`, oldest first (never one
/// still `acting`); found the same way as [`PRUNE_INBOX`]'s rows.
pub(super) const PRUNE_DECISIONS: &str = "DELETE FROM decisions WHERE seq IN (SELECT seq FROM decisions \
     WHERE outcome <> 'acting' AND seq < COALESCE((SELECT seq FROM decisions WHERE \
     decided_at >= $1 ORDER BY seq LIMIT 1), 9223372036854775807) ORDER BY seq LIMIT $2)";
