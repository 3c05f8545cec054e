//! Delivery: drains the outbox to the sinks, at least once and in order per application.
//!
//! One worker per sink takes, for each app, its oldest pending row (so a retrying event
//! holds back the later events of the same app, never those of other apps), POSTs them
//! concurrently, and records each outcome as decided by [`retry::classify`]. Rows are only
//! ever marked after the sink answered: a crash mid-delivery means the row is sent again with
//! the same id. One more task deletes delivered rows past `delivery.retainDelivered`, for
//! all sinks. This module must never drop an event silently or decide what to emit.

pub mod retry;
pub mod sink;

use crate::config::DeliveryConfig;
use crate::store::{DeliveryStatus, OutboxRow, Store};
use crate::telemetry::metrics;
use retry::Verdict;
use sink::HttpSink;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub use crate::pattern::glob_match as type_matches;

/// Where the emit pipeline routes an event: a sink's name, type filter and wake-up.
#[derive(Clone)]
pub struct Route {
    pub sink: String,
    pub types: Vec<String>,
    pub notify: Arc<Notify>,
}

impl Route {
    pub fn wants(&self, ty: &str) -> bool {
        self.types.is_empty() || self.types.iter().any(|p| type_matches(p, ty))
    }
}

/// Delete outbox rows delivered more than `retain` ago, at once and then every `every`,
/// until `shutdown`: one task for all sinks (and for rows of sinks no longer configured).
pub async fn prune_delivered(
    store: Arc<dyn Store>,
    retain: Duration,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        match store
            .prune_delivered(crate::store::cutoff(now_ms(), retain))
            .await
        {
            Ok(n) if n > 0 => tracing::debug!(rows = n, "pruned delivered outbox rows"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning delivered outbox rows failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Run one sink's worker until `shutdown`; in-flight POSTs finish before it returns.
pub async fn run_sink(
    store: Arc<dyn Store>,
    sink: Arc<HttpSink>,
    cfg: DeliveryConfig,
    notify: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let limit = cfg.concurrency as i64;
    while !shutdown.is_cancelled() {
        let now = now_ms();
        let rows = match store.due_deliveries(sink.name(), now, limit).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(sink = sink.name(), error = %e, "reading the outbox failed");
                sleep_or_stop(Duration::from_secs(1), &notify, &shutdown).await;
                continue;
            }
        };
        if rows.is_empty() {
            let wait = match store.next_due_at(sink.name()).await {
                Ok(Some(at)) => Duration::from_millis((at - now).clamp(0, 5_000) as u64),
                _ => Duration::from_secs(5),
            };
            sleep_or_stop(wait, &notify, &shutdown).await;
            continue;
        }
        let sends = rows
            .into_iter()
            .map(|row| deliver_one(store.as_ref(), &sink, &cfg, row));
        futures::future::join_all(sends).await;
    }
}

async fn sleep_or_stop(wait: Duration, notify: &Notify, shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = notify.notified() => {}
        _ = tokio::time::sleep(wait) => {}
    }
}

async fn deliver_one(store: &dyn Store, sink: &HttpSink, cfg: &DeliveryConfig, row: OutboxRow) {
    let span =
        tracing::info_span!("deliver", sink = sink.name(), event_id = %row.event_id, seq = row.seq);
    let _enter = span.enter();
    let started = std::time::Instant::now();
    let attempt = sink.send(&row).await;
    let elapsed = started.elapsed().as_secs_f64();
    let now = now_ms();
    let recorded = match retry::classify(&attempt, SystemTime::now()) {
        Verdict::Delivered => {
            metrics::delivery(sink.name(), "delivered", elapsed);
            tracing::debug!("delivered");
            store.mark_delivered(row.seq, now).await
        }
        Verdict::Retry { after, reason } => {
            metrics::delivery(sink.name(), "retry", elapsed);
            let failures = u32::try_from(row.attempts + 1).unwrap_or(u32::MAX);
            let delay = after.unwrap_or_else(|| {
                retry::backoff(
                    failures,
                    cfg.initial_backoff.0,
                    cfg.max_backoff.0,
                    rand::random::<f64>(),
                )
            });
            tracing::warn!(%reason, attempt = failures, retry_in_ms = delay.as_millis() as u64, "delivery failed; will retry");
            store
                .mark_retry(row.seq, now + delay.as_millis() as i64, &reason, now)
                .await
        }
        Verdict::Dead { reason } => {
            metrics::delivery(sink.name(), "dead", elapsed);
            tracing::error!(%reason, "sink refused the event; moved to dead letters");
            store.mark_dead(row.seq, &reason, now).await
        }
    };
    if let Err(e) = recorded {
        // The row stays pending as it was and is sent again: at-least-once holds.
        tracing::error!(error = %e, "recording the delivery outcome failed");
    }
}

/// Refresh the outbox gauges from the store.
pub async fn refresh_gauges(store: &dyn Store, sinks: &[String]) {
    if let Ok(counts) = store.outbox_counts().await {
        for sink in sinks {
            let count = |status| {
                counts
                    .iter()
                    .find(|c| &c.sink == sink && c.status == status)
                    .map_or(0, |c| c.count)
            };
            metrics::outbox(
                sink,
                count(DeliveryStatus::Pending),
                count(DeliveryStatus::Dead),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::type_matches;

    #[test]
    fn type_globs() {
        let t = "dev.cdevents.service.deployed.0.3.0";
        for (p, want) in [
            ("dev.cdevents.service.*", true),
            ("dev.cdevents.*.deployed.*", true),
            ("*", true),
            (t, true),
            ("dev.cdevents.incident.*", false),
            ("dev.cdevents.service.deployed", false),
            ("*.0.2.0", false),
        ] {
            assert_eq!(type_matches(p, t), want, "{p}");
        }
    }
}
