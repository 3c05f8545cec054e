//! The store: everything the gateway must not forget across restarts — per-app state, open
//! incidents, the outbox with each delivery's state, the react flow's inbox (deduplicated
//! received events) and its decisions (the audit trail).
//!
//! One trait, [`Store`], with two implementations of the same semantics: SQLite
//! ([`sqlite::SqliteStore`], the embedded default, one gateway per file) and PostgreSQL
//! ([`postgres::PostgresStore`], shared by several gateways, which claim inbox rows).
//! Callers pass the time in; the store never reads the clock, never decides what to emit and
//! never talks to anything but its database.

mod inbox_keys;
pub mod postgres;
mod sql;
pub mod sqlite;

use crate::config::StoreUrl;
use crate::emit::detect::AppState;
use async_trait::async_trait;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// How often the gateway deletes history past its retention: delivered outbox rows
/// (`delivery.retainDelivered`), decided inbox rows and settled decisions
/// (`react.retainEvents`, `react.retainDecisions`).
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The unix-ms time before which rows kept for `keep` may go, at `now_ms` (the epoch for a
/// retention too long to count).
pub fn cutoff(now_ms: i64, keep: Duration) -> i64 {
    now_ms.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX))
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("applying store migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored state for {key} is unreadable: {message}")]
    Corrupt { key: String, message: String },
    #[error("no store at {0}")]
    Missing(String),
    /// The PostgreSQL server refused the connection (authentication, no such database, TLS).
    /// Like [`StoreError::Unreachable`] it names the host, never the URL (it may hold a
    /// password).
    #[error("cannot connect to PostgreSQL at {host}: {error}")]
    Connect { host: String, error: sqlx::Error },
    /// No connection to the PostgreSQL server within the connect timeout.
    #[error(
        "PostgreSQL at {host} did not accept a connection within {timeout_s} s (is it running and reachable from here?)"
    )]
    Unreachable { host: String, timeout_s: u64 },
}

/// An event to put in the outbox for one sink.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub sink: String,
    pub app_key: String,
    pub event_id: String,
    pub event_type: String,
    pub event_source: String,
    pub event_time: String,
    pub payload: String,
}

/// Everything one pass of the emit pipeline commits, atomically.
#[derive(Debug, Default, Clone)]
pub struct EmitBatch {
    /// New state per app (`None`: the app is gone).
    pub states: Vec<(String, Option<AppState>)>,
    pub deliveries: Vec<NewDelivery>,
}

impl EmitBatch {
    pub fn is_empty(&self) -> bool {
        self.states.is_empty() && self.deliveries.is_empty()
    }
}

/// The delivery state of an outbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct OutboxRow {
    pub seq: i64,
    pub sink: String,
    pub app_key: String,
    pub event_id: String,
    pub event_type: String,
    pub event_source: String,
    pub event_time: String,
    #[serde(skip)]
    pub payload: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Filter for listing the outbox.
#[derive(Debug, Clone, Default)]
pub struct OutboxFilter {
    pub status: Option<DeliveryStatus>,
    pub sink: Option<String>,
    pub limit: i64,
}

/// An open incident as stored.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct IncidentRow {
    pub app_key: String,
    pub cause: String,
    pub incident_id: String,
    pub description: String,
    pub opened_at: i64,
}

/// Count of outbox rows per sink and status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct OutboxCount {
    pub sink: String,
    pub status: DeliveryStatus,
    pub count: i64,
}

/// A received event to put in the inbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewInbound {
    pub source: String,
    pub event_id: String,
    pub event_type: String,
    pub client: String,
    /// `Some`: the event as JSON (`react::inbound::Inbound`), to be decided; the row is
    /// pending. `None`: no policy asked for the event's type when it arrived, so there is
    /// nothing to decide; the row is stored done, its payload empty (nothing reads it), and
    /// its columns keep the event for deduplication and the record.
    pub payload: Option<String>,
}

impl NewInbound {
    /// The row waits for the engine (it carries the event to decide).
    pub fn pending(&self) -> bool {
        self.payload.is_some()
    }

    /// The `payload` column: the event, or empty for a row stored done.
    pub fn payload_column(&self) -> &str {
        self.payload.as_deref().unwrap_or_default()
    }
}

/// One inbox row.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct InboxRow {
    pub seq: i64,
    pub source: String,
    pub event_id: String,
    pub event_type: String,
    pub client: String,
    #[serde(skip)]
    pub payload: String,
    pub received_at: i64,
    pub status: String,
}

/// Who holds claimed inbox rows, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxClaim {
    /// The gateway process (one id per process, e.g. `<hostname>-<uuid>`).
    pub owner: String,
    /// Unix ms; after it, another gateway may claim the rows.
    pub until_ms: i64,
}

/// What happened to one (event, policy, application).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "kebab-case")]
#[sqlx(type_name = "TEXT", rename_all = "kebab-case")]
pub enum Outcome {
    /// Claimed, the calls to Argo CD are being made.
    Acting,
    Acted,
    Skipped,
    Failed,
    DryRun,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Acting => "acting",
            Outcome::Acted => "acted",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
            Outcome::DryRun => "dry-run",
        }
    }
}

/// A decision to record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewDecision {
    pub event_source: String,
    pub event_id: String,
    pub event_type: String,
    pub policy: String,
    pub application: String,
    pub action: String,
    pub outcome: Outcome,
    pub reason: String,
    pub chain_id: Option<String>,
    /// The Argo CD requests made (or that would be made), as a JSON array.
    pub requests: String,
}

/// One recorded decision.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRow {
    pub seq: i64,
    pub decided_at: i64,
    pub event_source: String,
    pub event_id: String,
    pub event_type: String,
    pub policy: String,
    pub application: String,
    pub action: String,
    pub outcome: Outcome,
    pub reason: String,
    pub chain_id: Option<String>,
    pub requests: String,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Every recorded app state.
    async fn load_app_states(&self) -> Result<Vec<AppState>, StoreError>;
    /// Commit new app states and their events in one transaction; an event already in the
    /// outbox for a sink (same id) is not added twice.
    async fn commit_emit(&self, batch: &EmitBatch, now_ms: i64) -> Result<(), StoreError>;
    /// The deliverable rows of `sink`: for each app, its oldest pending row, if it is due.
    async fn due_deliveries(
        &self,
        sink: &str,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError>;
    /// When the next pending head row of `sink` becomes due, if any.
    async fn next_due_at(&self, sink: &str) -> Result<Option<i64>, StoreError>;
    async fn mark_delivered(&self, seq: i64, now_ms: i64) -> Result<(), StoreError>;
    async fn mark_retry(
        &self,
        seq: i64,
        next_attempt_at: i64,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    async fn mark_dead(&self, seq: i64, error: &str, now_ms: i64) -> Result<(), StoreError>;
    /// Rows, newest first.
    async fn list_outbox(&self, filter: &OutboxFilter) -> Result<Vec<OutboxRow>, StoreError>;
    /// Put dead rows back to pending (all, or those of `sink`, or just `seqs`). Returns how many.
    async fn redrive(
        &self,
        sink: Option<&str>,
        seqs: &[i64],
        now_ms: i64,
    ) -> Result<u64, StoreError>;
    async fn outbox_counts(&self) -> Result<Vec<OutboxCount>, StoreError>;
    /// Delete delivered rows last updated before `before_ms`. Returns how many.
    async fn prune_delivered(&self, before_ms: i64) -> Result<u64, StoreError>;
    async fn open_incidents(&self) -> Result<Vec<IncidentRow>, StoreError>;
    /// A cheap round trip, for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Commit received events in one transaction (all or nothing), durably. New rows are
    /// inserted already claimed by `claim`: the gateway that received them decides them;
    /// rows not `pending` are inserted done, with no claim. Returns, per event, `Some(seq)`
    /// for a new row, `None` for a duplicate (the same source + id was received before, or
    /// earlier in this batch).
    async fn commit_inbox(
        &self,
        events: &[NewInbound],
        now_ms: i64,
        claim: &InboxClaim,
    ) -> Result<Vec<Option<i64>>, StoreError> {
        self.commit_inbox_then(events, now_ms, claim, &|_| {}).await
    }
    /// [`Store::commit_inbox`], calling `committed` with the same answer as soon as the rows
    /// are committed — visible, and safe from a crash of the process — before it waits for
    /// them to be on disk (SQLite's shared fsync; PostgreSQL commits durably at once). Not
    /// called if the commit fails.
    async fn commit_inbox_then(
        &self,
        events: &[NewInbound],
        now_ms: i64,
        claim: &InboxClaim,
        committed: &(dyn for<'a> Fn(&'a [Option<i64>]) + Send + Sync),
    ) -> Result<Vec<Option<i64>>, StoreError>;
    /// Claim up to `limit` pending rows for `claim`, oldest first, and return them: rows that
    /// are unclaimed or whose claim expired (`claimed_until < now_ms`). Rows `claim.owner`
    /// already holds are not returned again. PostgreSQL: two gateways never get the same
    /// row. SQLite (one gateway per file): rows held by another owner — a stopped
    /// predecessor — are claimable at once too.
    async fn claim_inbox(
        &self,
        claim: &InboxClaim,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<InboxRow>, StoreError>;
    /// Extend to `claim.until_ms` every pending row held by `claim.owner`. Returns how many.
    async fn renew_inbox_claims(&self, claim: &InboxClaim) -> Result<u64, StoreError>;
    async fn finish_inbox(&self, seq: i64, now_ms: i64) -> Result<(), StoreError>;
    /// Mark several inbox rows done in one statement.
    async fn finish_inbox_many(&self, seqs: &[i64], now_ms: i64) -> Result<(), StoreError>;
    /// Record a decision. Returns `false` when one exists for the same event, policy and
    /// application (it is then left as it is): the guard against acting twice.
    async fn record_decision(&self, d: &NewDecision, now_ms: i64) -> Result<bool, StoreError>;
    /// Update a claimed (`acting`) decision with its final outcome.
    async fn settle_decision(&self, d: &NewDecision, now_ms: i64) -> Result<(), StoreError>;
    /// Decisions left `acting` by a stopped gateway become `failed` (never retried: the
    /// call may have reached Argo CD), with `now_ms` as their time. Only those decided
    /// before `before_ms` are touched: with a shared store another, live, gateway may be
    /// acting right now. Returns how many.
    async fn settle_interrupted(&self, before_ms: i64, now_ms: i64) -> Result<u64, StoreError>;
    /// When this policy last acted on this application.
    async fn last_acted(&self, policy: &str, application: &str) -> Result<Option<i64>, StoreError>;
    /// Decisions, newest first.
    async fn list_decisions(&self, limit: i64) -> Result<Vec<DecisionRow>, StoreError>;
    /// Delete up to `limit` decided inbox rows received before `before_ms`, oldest first.
    /// Returns how many.
    async fn prune_inbox(&self, before_ms: i64, limit: i64) -> Result<u64, StoreError>;
    /// Delete up to `limit` settled decisions (not `acting`) last decided before
    /// `before_ms`, oldest first. Returns how many.
    async fn prune_decisions(&self, before_ms: i64, limit: i64) -> Result<u64, StoreError>;
    /// Whether several gateways may share this store (PostgreSQL: true; SQLite: false).
    fn shared(&self) -> bool;
    /// How many inbox commits are worth having in flight at once (each from its write until
    /// it is on disk). SQLite writes on one connection and syncs one WAL: a second commit
    /// would only queue behind the first, as a smaller group than it could have been.
    /// PostgreSQL commits in parallel on its pool.
    fn parallel_commits(&self) -> usize {
        1
    }
}

/// Open the store named by `url`, creating and migrating it as needed.
pub async fn open(url: &StoreUrl) -> Result<Arc<dyn Store>, StoreError> {
    match url {
        StoreUrl::Sqlite(u) => Ok(Arc::new(sqlite::SqliteStore::open(u).await?)),
        StoreUrl::Postgres(u) => Ok(Arc::new(postgres::PostgresStore::open(u).await?)),
    }
}

/// Open an existing store (for the inspection commands): a wrong path is an error, not a
/// new empty database.
pub async fn open_existing(url: &StoreUrl) -> Result<Arc<dyn Store>, StoreError> {
    match url {
        StoreUrl::Sqlite(u) => {
            let path = u.trim_start_matches("sqlite:").trim_start_matches("//");
            let path = path.split('?').next().unwrap_or_default();
            if !std::path::Path::new(path).exists() {
                return Err(StoreError::Missing(path.to_string()));
            }
            Ok(Arc::new(sqlite::SqliteStore::open(u).await?))
        }
        // A database that does not exist is an error of the server, never created here.
        StoreUrl::Postgres(u) => Ok(Arc::new(postgres::PostgresStore::open(u).await?)),
    }
}

#[cfg(test)]
mod tests {
    use super::cutoff;
    use std::time::Duration;

    #[test]
    fn a_cutoff_is_the_retention_before_now_and_never_overflows() {
        let cases = [
            (10_000, Duration::from_secs(3), 7_000),
            (10_000, Duration::ZERO, 10_000),
            // Longer than the time since the epoch: nothing is old enough.
            (10_000, Duration::from_secs(20), -10_000),
            (10_000, Duration::MAX, 10_000 - i64::MAX),
        ];
        for (now, keep, want) in cases {
            assert_eq!(cutoff(now, keep), want, "{now} {keep:?}");
        }
    }
}
