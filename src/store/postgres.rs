//! The PostgreSQL store: the same tables and the same semantics as the SQLite store, for
//! several gateways sharing one database. Inbox rows are claimed with
//! `FOR UPDATE SKIP LOCKED`, so two gateways never decide the same received event; a claim
//! expires, so the rows of a stopped gateway are taken over by the others.
//!
//! It never logs or returns the URL (it may hold a password): errors name the host only.
//! Transactions that can deadlock against another gateway's (inserts of overlapping keys in
//! a different order) are run again, a few times, when PostgreSQL says so.

use super::sql;
use super::{
    DecisionRow, EmitBatch, InboxClaim, InboxRow, IncidentRow, NewDecision, NewInbound,
    OutboxCount, OutboxFilter, OutboxRow, Store, StoreError,
};
use crate::emit::detect::AppState;
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Row, Transaction};
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per gateway.
const POOL_SIZE: u32 = 8;
/// How long opening the store, or waiting for a connection, may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts of a transaction that PostgreSQL aborted as a deadlock or serialization failure.
const ATTEMPTS: usize = 3;

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connect to and migrate the database at `url` (`postgres://` or `postgresql://`;
    /// options such as `sslmode` are passed in the URL).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with_timeout(url, CONNECT_TIMEOUT).await
    }

    /// [`PostgresStore::open`], giving up on connecting after `timeout`.
    pub async fn open_with_timeout(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let mut options = PgConnectOptions::from_str(url)?;
        if options.get_application_name().is_none() {
            options = options.application_name("argocd-cdevents");
        }
        let host = match options.get_socket() {
            Some(socket) => socket.display().to_string(),
            None => format!("{}:{}", options.get_host(), options.get_port()),
        };
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(timeout)
            .connect_with(options)
            .await
            .map_err(|error| match error {
                sqlx::Error::PoolTimedOut => StoreError::Unreachable {
                    host,
                    timeout_s: timeout.as_secs(),
                },
                error => StoreError::Connect { host, error },
            })?;
        // Migrations take an advisory lock: gateways starting together apply them once.
        MIGRATOR.run(&pool).await?;
        Ok(PostgresStore { pool })
    }
}

/// Whether PostgreSQL aborted a transaction that may simply be run again (deadlock
/// detected, serialization failure).
fn retriable(e: &StoreError) -> bool {
    match e {
        StoreError::Database(sqlx::Error::Database(d)) => {
            matches!(d.code().as_deref(), Some("40P01" | "40001"))
        }
        _ => false,
    }
}

impl PostgresStore {
    async fn commit_emit_once(&self, batch: &EmitBatch, now_ms: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for (key, state) in &batch.states {
            let open: Vec<&str> = state
                .iter()
                .flat_map(|s| s.incidents.keys().map(|c| c.as_str()))
                .collect();
            sqlx::query("DELETE FROM incidents WHERE app_key = $1 AND NOT (cause = ANY($2))")
                .bind(key)
                .bind(&open)
                .execute(&mut *tx)
                .await?;
            match state {
                Some(s) => {
                    let text = serde_json::to_string(s).map_err(|e| StoreError::Corrupt {
                        key: key.clone(),
                        message: e.to_string(),
                    })?;
                    sqlx::query(sql::UPSERT_APP_STATE)
                        .bind(key)
                        .bind(text)
                        .bind(now_ms)
                        .execute(&mut *tx)
                        .await?;
                    for (cause, incident) in &s.incidents {
                        sqlx::query(sql::UPSERT_INCIDENT)
                            .bind(key)
                            .bind(cause.as_str())
                            .bind(&incident.id)
                            .bind(&incident.description)
                            .bind(now_ms)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                None => {
                    sqlx::query(sql::DELETE_APP_STATE)
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        insert_deliveries(&mut tx, batch, now_ms).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn commit_inbox_once(
        &self,
        events: &[&NewInbound],
        now_ms: i64,
        claim: &InboxClaim,
    ) -> Result<HashMap<(String, String), i64>, StoreError> {
        let column =
            |f: fn(&NewInbound) -> &str| -> Vec<&str> { events.iter().map(|e| f(e)).collect() };
        let rows = sqlx::query(
            "INSERT INTO inbox (source, event_id, event_type, client, payload, received_at, \
             claimed_by, claimed_until, status, done_at) \
             SELECT source, event_id, event_type, client, payload, $6, \
                 CASE WHEN pending THEN $7 END, CASE WHEN pending THEN $8::bigint END, \
                 CASE WHEN pending THEN 'pending' ELSE 'done' END, \
                 CASE WHEN pending THEN NULL ELSE $6 END \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                 $9::bool[]) \
                 WITH ORDINALITY AS e(source, event_id, event_type, client, payload, pending, ord) \
             ORDER BY ord \
             ON CONFLICT (source, event_id) DO NOTHING RETURNING seq, source, event_id",
        )
        .bind(column(|e| &e.source))
        .bind(column(|e| &e.event_id))
        .bind(column(|e| &e.event_type))
        .bind(column(|e| &e.client))
        .bind(column(NewInbound::payload_column))
        .bind(now_ms)
        .bind(&claim.owner)
        .bind(claim.until_ms)
        .bind(events.iter().map(|e| e.pending()).collect::<Vec<bool>>())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ((r.get(1), r.get(2)), r.get(0)))
            .collect())
    }
}

/// Add the batch's deliveries to the outbox in one statement, in batch order; an event
/// already there for a sink is left as it is.
async fn insert_deliveries(
    tx: &mut Transaction<'static, Postgres>,
    batch: &EmitBatch,
    now_ms: i64,
) -> Result<(), StoreError> {
    if batch.deliveries.is_empty() {
        return Ok(());
    }
    let d = &batch.deliveries;
    let column = |f: fn(&super::NewDelivery) -> &str| -> Vec<&str> { d.iter().map(f).collect() };
    sqlx::query(
        "INSERT INTO outbox (sink, app_key, event_id, event_type, event_source, event_time, \
         payload, next_attempt_at, created_at, updated_at) \
         SELECT sink, app_key, event_id, event_type, event_source, event_time, payload, $8, $8, $8 \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::text[]) WITH ORDINALITY \
             AS d(sink, app_key, event_id, event_type, event_source, event_time, payload, ord) \
         ORDER BY ord \
         ON CONFLICT (sink, event_id) DO NOTHING",
    )
    .bind(column(|d| &d.sink))
    .bind(column(|d| &d.app_key))
    .bind(column(|d| &d.event_id))
    .bind(column(|d| &d.event_type))
    .bind(column(|d| &d.event_source))
    .bind(column(|d| &d.event_time))
    .bind(column(|d| &d.payload))
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    async fn load_app_states(&self) -> Result<Vec<AppState>, StoreError> {
        let rows = sqlx::query(sql::LOAD_APP_STATES)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                let key: String = r.get(0);
                let text: String = r.get(1);
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                    key,
                    message: e.to_string(),
                })
            })
            .collect()
    }

    async fn commit_emit(&self, batch: &EmitBatch, now_ms: i64) -> Result<(), StoreError> {
        let mut attempt = 1;
        loop {
            match self.commit_emit_once(batch, now_ms).await {
                Err(e) if attempt < ATTEMPTS && retriable(&e) => attempt += 1,
                done => return done,
            }
        }
    }

    async fn due_deliveries(
        &self,
        sink: &str,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        Ok(sqlx::query_as(sql::DUE_DELIVERIES)
            .bind(sink)
            .bind(now_ms)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn next_due_at(&self, sink: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(sql::NEXT_DUE_AT)
            .bind(sink)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.get::<Option<i64>, _>(0))
    }

    async fn mark_delivered(&self, seq: i64, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query(sql::MARK_DELIVERED)
            .bind(seq)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn mark_retry(
        &self,
        seq: i64,
        next_attempt_at: i64,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(sql::MARK_RETRY)
            .bind(seq)
            .bind(next_attempt_at)
            .bind(error)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn mark_dead(&self, seq: i64, error: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query(sql::MARK_DEAD)
            .bind(seq)
            .bind(error)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn list_outbox(&self, filter: &OutboxFilter) -> Result<Vec<OutboxRow>, StoreError> {
        let sql = concat!(
            "SELECT ",
            sql::row_columns!(),
            " FROM outbox o \
             WHERE ($1::text IS NULL OR o.status = $1) AND ($2::text IS NULL OR o.sink = $2) \
             ORDER BY o.seq DESC LIMIT $3"
        );
        Ok(sqlx::query_as(sql)
            .bind(filter.status.map(|s| s.as_str()))
            .bind(filter.sink.as_deref())
            .bind(if filter.limit > 0 {
                filter.limit
            } else {
                i64::MAX
            })
            .fetch_all(&self.pool)
            .await?)
    }

    async fn redrive(
        &self,
        sink: Option<&str>,
        seqs: &[i64],
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = $1, \
             last_error = NULL, updated_at = $1 WHERE status = 'dead' \
             AND ($2::text IS NULL OR sink = $2) AND ($3::bigint[] IS NULL OR seq = ANY($3))",
        )
        .bind(now_ms)
        .bind(sink)
        .bind((!seqs.is_empty()).then_some(seqs))
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn outbox_counts(&self) -> Result<Vec<OutboxCount>, StoreError> {
        Ok(sqlx::query_as(sql::OUTBOX_COUNTS)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn prune_delivered(&self, before_ms: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(sql::PRUNE_DELIVERED)
            .bind(before_ms)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn open_incidents(&self) -> Result<Vec<IncidentRow>, StoreError> {
        Ok(sqlx::query_as(sql::OPEN_INCIDENTS)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query(sql::PING).execute(&self.pool).await?;
        Ok(())
    }

    async fn commit_inbox_then(
        &self,
        events: &[NewInbound],
        now_ms: i64,
        claim: &InboxClaim,
        committed: &(dyn for<'a> Fn(&'a [Option<i64>]) + Send + Sync),
    ) -> Result<Vec<Option<i64>>, StoreError> {
        // A repeat within the batch is a duplicate of its first occurrence: only first
        // occurrences are sent, in batch order (one statement is one transaction).
        let mut first: HashMap<(&str, &str), usize> = HashMap::new();
        let mut unique = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            first
                .entry((e.source.as_str(), e.event_id.as_str()))
                .or_insert_with(|| {
                    unique.push(e);
                    i
                });
        }
        if unique.is_empty() {
            committed(&[]);
            return Ok(Vec::new());
        }
        let mut attempt = 1;
        let seqs = loop {
            match self.commit_inbox_once(&unique, now_ms, claim).await {
                Err(e) if attempt < ATTEMPTS && retriable(&e) => attempt += 1,
                done => break done?,
            }
        };
        let answer: Vec<Option<i64>> = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let key = (e.source.as_str(), e.event_id.as_str());
                if first.get(&key) == Some(&i) {
                    seqs.get(&(e.source.clone(), e.event_id.clone())).copied()
                } else {
                    None
                }
            })
            .collect();
        committed(&answer);
        Ok(answer)
    }

    async fn claim_inbox(
        &self,
        claim: &InboxClaim,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<InboxRow>, StoreError> {
        // Rows another gateway is claiming right now are locked and skipped, not waited for;
        // a row it claimed and committed meanwhile no longer matches when re-checked.
        const SQL: &str = "UPDATE inbox i SET claimed_by = $1, claimed_until = $2 \
             FROM (SELECT seq FROM inbox WHERE status = 'pending' \
                   AND (claimed_by IS NULL OR claimed_until < $3) \
                   ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED) c \
             WHERE i.seq = c.seq RETURNING i.seq, i.source, i.event_id, i.event_type, i.client, \
             i.payload, i.received_at, i.status";
        let mut rows: Vec<InboxRow> = sqlx::query_as(SQL)
            .bind(&claim.owner)
            .bind(claim.until_ms)
            .bind(now_ms)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.sort_by_key(|r| r.seq);
        Ok(rows)
    }

    async fn renew_inbox_claims(&self, claim: &InboxClaim) -> Result<u64, StoreError> {
        Ok(sqlx::query(sql::RENEW_INBOX_CLAIMS)
            .bind(&claim.owner)
            .bind(claim.until_ms)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn finish_inbox(&self, seq: i64, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query(sql::FINISH_INBOX)
            .bind(seq)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn finish_inbox_many(&self, seqs: &[i64], now_ms: i64) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        sqlx::query("UPDATE inbox SET status = 'done', done_at = $2 WHERE seq = ANY($1)")
            .bind(seqs)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn record_decision(&self, d: &NewDecision, now_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(sql::RECORD_DECISION)
            .bind(now_ms)
            .bind(&d.event_source)
            .bind(&d.event_id)
            .bind(&d.event_type)
            .bind(&d.policy)
            .bind(&d.application)
            .bind(&d.action)
            .bind(d.outcome.as_str())
            .bind(&d.reason)
            .bind(&d.chain_id)
            .bind(&d.requests)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn settle_decision(&self, d: &NewDecision, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query(sql::SETTLE_DECISION)
            .bind(d.outcome.as_str())
            .bind(&d.reason)
            .bind(&d.requests)
            .bind(now_ms)
            .bind(&d.event_source)
            .bind(&d.event_id)
            .bind(&d.policy)
            .bind(&d.application)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn settle_interrupted(&self, before_ms: i64, now_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(sql::SETTLE_INTERRUPTED)
            .bind(now_ms)
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn last_acted(&self, policy: &str, application: &str) -> Result<Option<i64>, StoreError> {
        let row: Option<(Option<i64>,)> = sqlx::query_as(sql::LAST_ACTED)
            .bind(policy)
            .bind(application)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|r| r.0))
    }

    async fn list_decisions(&self, limit: i64) -> Result<Vec<DecisionRow>, StoreError> {
        Ok(sqlx::query_as(sql::LIST_DECISIONS)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    fn parallel_commits(&self) -> usize {
        // Half the pool: the engine, the outbox and the readers keep the other half.
        (POOL_SIZE / 2) as usize
    }

    async fn prune_inbox(&self, before_ms: i64, limit: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(sql::PRUNE_INBOX)
            .bind(before_ms)
            .bind(limit)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn prune_decisions(&self, before_ms: i64, limit: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(sql::PRUNE_DECISIONS)
            .bind(before_ms)
            .bind(limit)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    fn shared(&self) -> bool {
        true
    }
}
