//! The emit pipeline: source events -> detector -> one store transaction (new states +
//! outbox rows for every sink that wants each event) -> wake the sink workers.
//!
//! Events are taken in batches of whatever is ready (group commit), so an initial list of
//! thousands of apps costs a handful of fsyncs. If the store cannot commit, the batch is
//! retried until it can; the source is not read meanwhile, so nothing is lost and nothing is
//! recorded as emitted that is not in the outbox.

use crate::delivery::{Route, now_ms};
use crate::emit::Inventory;
use crate::emit::detect::{Change, DetectConfig};
use crate::emit::event::{self, SpecVersion};
use crate::emit::source::{Scope, SourceEvent};
use crate::store::{EmitBatch, NewDelivery, Store};
use crate::telemetry::metrics;
use futures::{Stream, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Largest batch committed in one transaction.
pub const MAX_BATCH: usize = 512;

pub struct Pipeline {
    pub detect: DetectConfig,
    pub version: SpecVersion,
    pub source: String,
    pub store: Arc<dyn Store>,
    pub routes: Vec<Route>,
    pub inventory: Inventory,
}

impl Pipeline {
    /// Detect and stage one source event into `batch`. Returns the scope when the event
    /// completed a (re-)list.
    pub fn stage(
        &mut self,
        event: SourceEvent,
        observed_at: &str,
        batch: &mut EmitBatch,
    ) -> Option<Scope> {
        match event {
            SourceEvent::Applied(app) => {
                self.stage_change(&app.key(), Change::Applied(&app), observed_at, batch);
                None
            }
            SourceEvent::Deleted(app) => {
                self.stage_change(&app.key(), Change::Deleted(Some(&app)), observed_at, batch);
                None
            }
            SourceEvent::ListComplete { scope, seen } => {
                let gone = self
                    .inventory
                    .keys_where(|k| scope.contains(k) && !seen.contains(k));
                for key in gone {
                    self.stage_change(&key, Change::Deleted(None), observed_at, batch);
                }
                Some(scope)
            }
        }
    }

    /// Run the detector for one app and stage its new state (if it changed) and its events,
    /// one outbox row per sink that wants each.
    fn stage_change(
        &mut self,
        key: &str,
        change: Change<'_>,
        observed_at: &str,
        batch: &mut EmitBatch,
    ) {
        let before = self.inventory.get(key).cloned();
        let detection = self.inventory.apply(&self.detect, key, change, observed_at);
        if detection.next != before {
            batch.states.push((key.to_string(), detection.next.clone()));
        }
        for em in &detection.events {
            let ev = event::build(em, self.version, &self.source);
            metrics::emitted(&ev.ty);
            tracing::info!(event_id = %ev.id, event_type = %ev.ty, app = %key, "emitting");
            let payload = ev.body.to_string();
            for route in self.routes.iter().filter(|r| r.wants(&ev.ty)) {
                batch.deliveries.push(NewDelivery {
                    sink: route.sink.clone(),
                    app_key: key.to_string(),
                    event_id: ev.id.clone(),
                    event_type: ev.ty.clone(),
                    event_source: ev.source.clone(),
                    event_time: ev.timestamp.clone(),
                    payload: payload.clone(),
                });
            }
        }
    }

    /// Commit `batch`, retrying until it is committed or `shutdown` is cancelled.
    /// Returns false if it gave up because of shutdown.
    pub async fn commit(&self, batch: &EmitBatch, shutdown: &CancellationToken) -> bool {
        if batch.is_empty() {
            return true;
        }
        let mut failures = 0u32;
        loop {
            match self.store.commit_emit(batch, now_ms()).await {
                Ok(()) => {
                    if !batch.deliveries.is_empty() {
                        for r in &self.routes {
                            r.notify.notify_one();
                        }
                    }
                    return true;
                }
                Err(e) => {
                    failures += 1;
                    let delay = crate::delivery::retry::backoff(
                        failures,
                        Duration::from_millis(100),
                        Duration::from_secs(10),
                        rand::random::<f64>(),
                    );
                    tracing::error!(error = %e, retry_in_ms = delay.as_millis() as u64, "committing detected events failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Run until the source ends or `shutdown` is cancelled.
    pub async fn run(
        mut self,
        events: impl Stream<Item = SourceEvent> + Send + Unpin,
        shutdown: CancellationToken,
    ) {
        let mut batches = events.ready_chunks(MAX_BATCH);
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                n = batches.next() => n,
            };
            let Some(chunk) = next else { return };
            let observed_at = now_rfc3339();
            let mut batch = EmitBatch::default();
            let mut listed = Vec::new();
            for ev in chunk {
                listed.extend(self.stage(ev, &observed_at, &mut batch));
            }
            if !self.commit(&batch, &shutdown).await {
                return;
            }
            for scope in listed {
                tracing::info!(?scope, apps = self.inventory.len(), "list committed");
            }
        }
    }
}

/// Now, RFC 3339 in UTC with millisecond precision.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
