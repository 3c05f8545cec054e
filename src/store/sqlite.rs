//! The SQLite store: one file, WAL journal, one gateway per file.
//!
//! Every write goes through one connection (a pool of one), so our own writers queue in
//! the process instead of meeting SQLite's busy handler, which sleeps in steps of 1 to
//! 100 ms. That connection runs `synchronous=NORMAL`: a commit writes its WAL frames
//! without an fsync, and the write lock is free again at once. Writes that must survive a
//! power cut before they are acknowledged — received events (the inbox, behind the 202) and
//! emitted events with the app state (the outbox) — then wait for [`Durability`]: an
//! fdatasync of the WAL that started after their commit. One fsync covers every commit
//! before it, so concurrent commits share it (group durability), and no writer waits for
//! another's fsync. This gives what `synchronous=FULL` gives (the WAL is on disk before the
//! caller is told "committed") without holding the write lock across the fsync. Checkpoints
//! stay safe: at NORMAL SQLite syncs the WAL before it copies pages back and syncs the
//! database after.
//!
//! Checkpoints (copying the WAL back into the database file) run in two steps from a
//! background task, see [`checkpoint_in_background`]. Left to SQLite, the commit that
//! crosses 1,000 WAL pages runs the whole checkpoint itself — thousands of page copies and
//! two fsyncs, several milliseconds — on the one writing connection, and every 202 and
//! decision claim queued behind it waits: that was the latency tail.
//!
//! The inbox has no UNIQUE index on an event's `source` + `id`: the store holds those keys
//! in memory ([`InboxKeys`]), read at its first commit and kept in step with its inserts
//! and prunes under one lock. Only one gateway may write the file for that to hold.
//!
//! Delivery outcomes (`mark_*`), inbox claims and marks, and react decisions do not wait for
//! an fsync: still atomic and crash-safe for the process (a killed gateway loses nothing),
//! but a power cut of the machine may forget the last few. Forgetting a delivery mark means
//! the event is sent once more; forgetting a decision claim means an event received before
//! the cut may be decided again.

use super::inbox_keys::InboxKeys;
use super::sql;
use super::{
    DecisionRow, EmitBatch, InboxClaim, InboxRow, IncidentRow, NewDecision, NewInbound,
    OutboxCount, OutboxFilter, OutboxRow, Store, StoreError,
};
use crate::emit::detect::AppState;
use async_trait::async_trait;
use futures::TryStreamExt;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How often the background checkpoint looks at the WAL.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// WAL pages from which the background checkpoint finishes on the writer, so that the WAL
/// starts again from its beginning (SQLite's own threshold is 1,000).
const CHECKPOINT_FINISH_PAGES: i64 = 1_000;
/// WAL pages past which the writer checkpoints by itself, should the background stop.
const WAL_BACKSTOP_PAGES: u32 = 20_000;

pub struct SqliteStore {
    /// Readers (WAL: they never wait for the writer).
    pool: SqlitePool,
    /// The one writing connection, `synchronous=NORMAL`.
    writer: SqlitePool,
    durability: Durability,
    /// Stops the background checkpoint when the store is dropped.
    _checkpoints: Option<tokio_util::sync::DropGuard>,
    /// The inbox's dedup keys, read at the first commit (a store opened to list the outbox
    /// never reads them). Held across an inbox insert or prune and the keys' update.
    inbox_keys: tokio::sync::Mutex<Option<InboxKeys>>,
}

/// Keep the WAL short without stalling the writer, every [`CHECKPOINT_EVERY`] until `stop`:
/// 1. a PASSIVE checkpoint on a connection of its own copies the WAL's pages into the
///    database file and syncs it, while the writer goes on writing;
/// 2. once the WAL holds [`CHECKPOINT_FINISH_PAGES`], a second PASSIVE checkpoint queued on
///    the writer copies the few pages written meanwhile. With every page copied and no write
///    in between, the next commit starts the WAL from its beginning again — which a
///    checkpoint beside a busy writer never achieves, as new pages keep arriving.
///
/// The writer waits only for step 2: a few pages and two short fsyncs.
async fn checkpoint_in_background(
    own: SqlitePool,
    writer: SqlitePool,
    stop: tokio_util::sync::CancellationToken,
) {
    const SQL: &str = "PRAGMA wal_checkpoint(PASSIVE)";
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(CHECKPOINT_EVERY) => {}
        }
        // (busy, pages in the WAL, pages checkpointed)
        let wal_pages = match sqlx::query_as::<_, (i64, i64, i64)>(SQL)
            .fetch_one(&own)
            .await
        {
            Ok((_, pages, _)) => pages,
            Err(e) => {
                tracing::warn!(error = %e, "background WAL checkpoint failed");
                continue;
            }
        };
        if wal_pages >= CHECKPOINT_FINISH_PAGES
            && let Err(e) = sqlx::query(SQL).execute(&writer).await
        {
            tracing::warn!(error = %e, "finishing the WAL checkpoint failed");
        }
    }
}

/// Makes commits durable after the fact: `wait(ticket)` returns once an fdatasync of the
/// WAL that began after commit number `ticket` has finished.
struct Durability {
    /// The WAL file (`<db>-wal`); `None` for an in-memory database.
    wal: Option<std::path::PathBuf>,
    db: std::path::PathBuf,
    /// Commits handed out tickets so far.
    committed: std::sync::atomic::AtomicU64,
    /// Every commit up to this ticket is on disk.
    synced: std::sync::atomic::AtomicU64,
    /// One fsync at a time; waiters behind it usually find themselves covered.
    syncing: tokio::sync::Mutex<()>,
}

impl Durability {
    /// A ticket for a commit that has just returned.
    fn ticket(&self) -> u64 {
        self.committed
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1
    }

    async fn wait(&self, ticket: u64) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        let Some(wal) = &self.wal else {
            return Ok(());
        };
        loop {
            if self.synced.load(SeqCst) >= ticket {
                return Ok(());
            }
            let _turn = self.syncing.lock().await;
            if self.synced.load(SeqCst) >= ticket {
                return Ok(());
            }
            // Everything committed before this point is covered by the fsync below.
            let covers = self.committed.load(SeqCst);
            let (wal, db) = (wal.clone(), self.db.clone());
            tokio::task::spawn_blocking(move || sync_file(&wal, &db))
                .await
                .map_err(|e| StoreError::Database(sqlx::Error::Io(std::io::Error::other(e))))?
                .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
            self.synced.fetch_max(covers, SeqCst);
        }
    }
}

/// fdatasync the WAL; if it is gone (truncated away after a checkpoint) the data is in
/// the database file, so sync that.
fn sync_file(wal: &std::path::Path, db: &std::path::Path) -> std::io::Result<()> {
    let open = |p: &std::path::Path| std::fs::OpenOptions::new().write(true).open(p);
    match open(wal) {
        Ok(f) => f.sync_data(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => open(db)?.sync_data(),
        Err(e) => Err(e),
    }
}

impl SqliteStore {
    /// Open (creating if missing) and migrate the database at `url` (`sqlite://PATH`).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        if let Some(dir) = std::path::Path::new(options.get_filename()).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            // A connection to a local file does not go stale; a ping before every write
            // would only add a round trip to the database thread.
            .test_before_acquire(false)
            .connect_with(
                options
                    .clone()
                    .pragma("wal_autocheckpoint", WAL_BACKSTOP_PAGES.to_string()),
            )
            .await?;
        MIGRATOR.run(&writer).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await?;
        let db = std::path::PathBuf::from(options.get_filename());
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut wal = db.clone().into_os_string();
        wal.push("-wal");
        let checkpoints = if in_memory {
            None
        } else {
            let stop = tokio_util::sync::CancellationToken::new();
            let own = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await?;
            tokio::spawn(checkpoint_in_background(own, writer.clone(), stop.clone()));
            Some(stop.drop_guard())
        };
        Ok(SqliteStore {
            pool,
            writer,
            _checkpoints: checkpoints,
            inbox_keys: tokio::sync::Mutex::new(None),
            durability: Durability {
                wal: (!in_memory).then(|| wal.into()),
                db,
                committed: Default::default(),
                synced: Default::default(),
                syncing: tokio::sync::Mutex::new(()),
            },
        })
    }

    /// The inbox's keys, read from the file the first time. Only the holder of the guard
    /// inserts or deletes inbox rows.
    async fn inbox_keys(&self) -> Result<tokio::sync::MappedMutexGuard<'_, InboxKeys>, StoreError> {
        let mut held = self.inbox_keys.lock().await;
        if held.is_none() {
            // Row by row: a million rows would take some 100 MB as one Vec of strings.
            let mut keys = InboxKeys::default();
            let mut rows = sqlx::query(sql::INBOX_KEYS).fetch(&self.pool);
            while let Some(row) = rows.try_next().await? {
                keys.add(row.try_get(0)?, row.try_get(1)?);
            }
            drop(rows);
            tracing::debug!(keys = keys.len(), "read the inbox's keys");
            *held = Some(keys);
        }
        Ok(tokio::sync::MutexGuard::map(held, |k| {
            k.get_or_insert_with(InboxKeys::default)
        }))
    }
}

const REDRIVE: &str = "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = $1, \
    last_error = NULL, updated_at = $1 WHERE status = 'dead' AND ($2 IS NULL OR sink = $2) \
    AND ($3 IS NULL OR seq = $3)";

#[async_trait]
impl Store for SqliteStore {
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
        let mut tx = self.writer.begin().await?;
        for (key, state) in &batch.states {
            let open: Vec<&str> = state
                .iter()
                .flat_map(|s| s.incidents.keys().map(|c| c.as_str()))
                .collect();
            let open = serde_json::to_string(&open).unwrap_or_else(|_| "[]".into());
            sqlx::query(
                "DELETE FROM incidents WHERE app_key = $1 \
                 AND cause NOT IN (SELECT value FROM json_each($2))",
            )
            .bind(key)
            .bind(open)
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
        for d in &batch.deliveries {
            sqlx::query(
                "INSERT INTO outbox (sink, app_key, event_id, event_type, event_source, event_time, \
                 payload, next_attempt_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $8) \
                 ON CONFLICT (sink, event_id) DO NOTHING",
            )
            .bind(&d.sink)
            .bind(&d.app_key)
            .bind(&d.event_id)
            .bind(&d.event_type)
            .bind(&d.event_source)
            .bind(&d.event_time)
            .bind(&d.payload)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.durability.wait(self.durability.ticket()).await
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
            .execute(&self.writer)
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
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn mark_dead(&self, seq: i64, error: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query(sql::MARK_DEAD)
            .bind(seq)
            .bind(error)
            .bind(now_ms)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn list_outbox(&self, filter: &OutboxFilter) -> Result<Vec<OutboxRow>, StoreError> {
        let sql = concat!(
            "SELECT ",
            sql::row_columns!(),
            " FROM outbox o \
             WHERE ($1 IS NULL OR o.status = $1) AND ($2 IS NULL OR o.sink = $2) \
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
        let mut tx = self.writer.begin().await?;
        let mut changed = 0;
        let targets: Vec<Option<i64>> = if seqs.is_empty() {
            vec![None]
        } else {
            seqs.iter().copied().map(Some).collect()
        };
        for seq in targets {
            changed += sqlx::query(REDRIVE)
                .bind(now_ms)
                .bind(sink)
                .bind(seq)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        self.durability.wait(self.durability.ticket()).await?;
        Ok(changed)
    }

    async fn outbox_counts(&self) -> Result<Vec<OutboxCount>, StoreError> {
        Ok(sqlx::query_as(sql::OUTBOX_COUNTS)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn prune_delivered(&self, before_ms: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(sql::PRUNE_DELIVERED)
            .bind(before_ms)
            .execute(&self.writer)
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
        // One multi-row INSERT per chunk (10 bound values a row, well under SQLite's limit
        // of 32,766): one round trip to the database thread instead of one per event. One
        // statement is atomic by itself, so a single chunk needs no BEGIN and COMMIT (two
        // more round trips on the one writer that every 202 and decision queue behind).
        const CHUNK: usize = 1000;
        let mut keys = self.inbox_keys().await?;
        let new = keys.new_ones(
            events
                .iter()
                .map(|e| (e.source.as_str(), e.event_id.as_str())),
        );
        let mut seqs: Vec<Option<i64>> = vec![None; events.len()];
        let mut tx = if new.len() > CHUNK {
            Some(self.writer.begin().await?)
        } else {
            None
        };
        for chunk in new.chunks(CHUNK) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO inbox (source, event_id, event_type, client, payload, received_at, \
                 claimed_by, claimed_until, status, done_at) ",
            );
            q.push_values(chunk, |mut b, &(i, _)| {
                let e = &events[i];
                let pending = e.pending();
                b.push_bind(&e.source)
                    .push_bind(&e.event_id)
                    .push_bind(&e.event_type)
                    .push_bind(&e.client)
                    .push_bind(e.payload_column())
                    .push_bind(now_ms)
                    // A row committed done is no one's work: no claim.
                    .push_bind(pending.then_some(&claim.owner))
                    .push_bind(pending.then_some(claim.until_ms))
                    .push_bind(if pending { "pending" } else { "done" })
                    .push_bind((!pending).then_some(now_ms));
            });
            let query = q.build();
            let done = match tx.as_mut() {
                Some(tx) => query.execute(&mut **tx).await?,
                None => query.execute(&self.writer).await?,
            };
            // Every row is new. One statement on the one writer inserts its rows in order
            // and numbers them one after another (AUTOINCREMENT: one past the largest seq
            // ever), so the last one has `last_insert_rowid`.
            let first = done.last_insert_rowid() - (chunk.len() as i64 - 1);
            for (n, &(i, _)) in chunk.iter().enumerate() {
                seqs[i] = Some(first + n as i64);
            }
        }
        if let Some(tx) = tx {
            tx.commit().await?;
        }
        keys.inserted(new.into_iter().map(|(_, k)| k));
        drop(keys);
        let ticket = self.durability.ticket();
        committed(&seqs);
        self.durability.wait(ticket).await?;
        Ok(seqs)
    }

    async fn claim_inbox(
        &self,
        claim: &InboxClaim,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<InboxRow>, StoreError> {
        // One gateway per file: a row held by another owner belongs to a stopped gateway.
        let mut rows: Vec<InboxRow> = sqlx::query_as(
            "UPDATE inbox SET claimed_by = $1, claimed_until = $2 WHERE seq IN ( \
                 SELECT seq FROM inbox WHERE status = 'pending' \
                 AND (claimed_by IS NULL OR claimed_by <> $1 OR claimed_until < $3) \
                 ORDER BY seq LIMIT $4) \
             RETURNING seq, source, event_id, event_type, client, payload, received_at, status",
        )
        .bind(&claim.owner)
        .bind(claim.until_ms)
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.writer)
        .await?;
        rows.sort_by_key(|r| r.seq);
        Ok(rows)
    }

    async fn renew_inbox_claims(&self, claim: &InboxClaim) -> Result<u64, StoreError> {
        Ok(sqlx::query(sql::RENEW_INBOX_CLAIMS)
            .bind(&claim.owner)
            .bind(claim.until_ms)
            .execute(&self.writer)
            .await?
            .rows_affected())
    }

    async fn finish_inbox(&self, seq: i64, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query(sql::FINISH_INBOX)
            .bind(seq)
            .bind(now_ms)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn finish_inbox_many(&self, seqs: &[i64], now_ms: i64) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let list = serde_json::to_string(seqs).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "UPDATE inbox SET status = 'done', done_at = $2 \
             WHERE seq IN (SELECT value FROM json_each($1))",
        )
        .bind(list)
        .bind(now_ms)
        .execute(&self.writer)
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
            .bind(d.outcome)
            .bind(&d.reason)
            .bind(&d.chain_id)
            .bind(&d.requests)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn settle_decision(&self, d: &NewDecision, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query(sql::SETTLE_DECISION)
            .bind(d.outcome)
            .bind(&d.reason)
            .bind(&d.requests)
            .bind(now_ms)
            .bind(&d.event_source)
            .bind(&d.event_id)
            .bind(&d.policy)
            .bind(&d.application)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn settle_interrupted(&self, before_ms: i64, now_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(sql::SETTLE_INTERRUPTED)
            .bind(now_ms)
            .bind(before_ms)
            .execute(&self.writer)
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

    async fn prune_inbox(&self, before_ms: i64, limit: i64) -> Result<u64, StoreError> {
        let mut keys = self.inbox_keys().await?;
        let gone: Vec<(String, String)> = sqlx::query_as(sql::PRUNE_INBOX_RETURNING_KEYS)
            .bind(before_ms)
            .bind(limit)
            .fetch_all(&self.writer)
            .await?;
        keys.deleted(gone.iter().map(|(s, id)| (s.as_str(), id.as_str())));
        Ok(gone.len() as u64)
    }

    async fn prune_decisions(&self, before_ms: i64, limit: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(sql::PRUNE_DECISIONS)
            .bind(before_ms)
            .bind(limit)
            .execute(&self.writer)
            .await?
            .rows_affected())
    }

    fn shared(&self) -> bool {
        false
    }
}
