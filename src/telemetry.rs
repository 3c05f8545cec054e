//! Telemetry: logging set-up and every metric the gateway exposes, defined in one place so
//! names, labels and help texts stay consistent (docs/operations.md lists them). Nothing
//! here decides anything; it only counts and writes logs.

use crate::config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Install the global tracing subscriber. `ARGOCD_CDEVENTS_LOG`, when set, wins over the
/// configured level. Logs go to stderr, so `replay` keeps stdout for events.
pub fn init_logging(cfg: &LogConfig) {
    let filter = std::env::var("ARGOCD_CDEVENTS_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(&cfg.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // Colours only on a terminal: a log file or collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match cfg.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

pub mod metrics {
    //! The metric registry. Counters are process-wide; gauges are refreshed from the store.

    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;
    use std::sync::OnceLock;

    type Labels = Vec<(&'static str, String)>;

    pub struct Metrics {
        registry: Registry,
        pub emitted: Family<Labels, Counter>,
        pub watch_restarts: Family<Labels, Counter>,
        pub deliveries: Family<Labels, Counter>,
        pub delivery_duration: Family<Labels, Histogram>,
        pub outbox_pending: Family<Labels, Gauge>,
        pub dead_letters: Family<Labels, Gauge>,
        pub events_received: Family<Labels, Counter>,
        pub events_rejected: Family<Labels, Counter>,
        pub events_deduplicated: Counter,
        pub decisions: Family<Labels, Counter>,
        pub argocd_requests: Family<Labels, Counter>,
        pub argocd_duration: Family<Labels, Histogram>,
        pub policy_reloads: Family<Labels, Counter>,
        pub policy_reload_success: Gauge,
        pub policies_loaded: Gauge,
        pub leader: Gauge,
    }

    fn latency_histogram() -> Histogram {
        Histogram::new([
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ])
    }

    fn build() -> Metrics {
        let mut registry = Registry::with_prefix("argocd_cdevents");
        let emitted = Family::<Labels, Counter>::default();
        registry.register(
            "emitted",
            "CDEvents emitted by the detector, by type",
            emitted.clone(),
        );
        let watch_restarts = Family::<Labels, Counter>::default();
        registry.register(
            "watch_restarts",
            "Times a watch source failed and restarted, by source",
            watch_restarts.clone(),
        );
        let deliveries = Family::<Labels, Counter>::default();
        registry.register(
            "deliveries",
            "Delivery attempts by sink and result (delivered, retry, dead)",
            deliveries.clone(),
        );
        let delivery_duration = Family::<Labels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "delivery_duration_seconds",
            "Duration of one POST to a sink",
            delivery_duration.clone(),
        );
        let outbox_pending = Family::<Labels, Gauge>::default();
        registry.register(
            "outbox_pending",
            "Events waiting in the outbox, by sink",
            outbox_pending.clone(),
        );
        let dead_letters = Family::<Labels, Gauge>::default();
        registry.register(
            "dead_letters",
            "Events in the dead-letter state, by sink",
            dead_letters.clone(),
        );
        let events_received = Family::<Labels, Counter>::default();
        registry.register(
            "events_received",
            "Events accepted by the intake (committed to the inbox), by type",
            events_received.clone(),
        );
        let events_rejected = Family::<Labels, Counter>::default();
        registry.register(
            "events_rejected",
            "Requests the intake refused, by reason (unauthenticated, forbidden, invalid, too_large, unsupported_media_type, rate_limited, unavailable)",
            events_rejected.clone(),
        );
        let events_deduplicated = Counter::default();
        registry.register(
            "events_deduplicated",
            "Events received again (same source and id) and not acted on twice",
            events_deduplicated.clone(),
        );
        let decisions = Family::<Labels, Counter>::default();
        registry.register(
            "decisions",
            "Policy decisions, by outcome (acted, skipped, failed, dry-run) and action",
            decisions.clone(),
        );
        let argocd_requests = Family::<Labels, Counter>::default();
        registry.register(
            "argocd_requests",
            "Calls to Argo CD, by operation and result (success, not_found, refused, error)",
            argocd_requests.clone(),
        );
        let argocd_duration = Family::<Labels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "argocd_request_duration_seconds",
            "Duration of one call to Argo CD, by operation",
            argocd_duration.clone(),
        );
        let policy_reloads = Family::<Labels, Counter>::default();
        registry.register(
            "policy_reloads",
            "Policy directory loads, by result (success, error)",
            policy_reloads.clone(),
        );
        let policy_reload_success = Gauge::default();
        registry.register(
            "policy_reload_success",
            "1 if the last policy load succeeded, 0 if it failed (the previous set stays active)",
            policy_reload_success.clone(),
        );
        let policies_loaded = Gauge::default();
        registry.register(
            "policies_loaded",
            "Policies in the active set",
            policies_loaded.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this gateway does the leader's duties (watch, emit, deliver, sweep previews): always without leaderElection, while it holds the Lease with it",
            leader.clone(),
        );
        Metrics {
            registry,
            leader,
            events_received,
            events_rejected,
            events_deduplicated,
            decisions,
            argocd_requests,
            argocd_duration,
            policy_reloads,
            policy_reload_success,
            policies_loaded,
            emitted,
            watch_restarts,
            deliveries,
            delivery_duration,
            outbox_pending,
            dead_letters,
        }
    }

    pub fn get() -> &'static Metrics {
        static METRICS: OnceLock<Metrics> = OnceLock::new();
        METRICS.get_or_init(build)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render() -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &get().registry);
        out
    }

    /// Create the per-sink series at zero, so they exist (and `rate()` works) before the
    /// first event.
    pub fn init_sink(sink: &str) {
        let m = get();
        for result in ["delivered", "retry", "dead"] {
            let _ = m.deliveries.get_or_create(&vec![
                ("sink", sink.to_string()),
                ("result", result.to_string()),
            ]);
        }
        outbox(sink, 0, 0);
    }

    /// Create the watch-restart series of `source` at zero.
    pub fn init_watch(source: &'static str) {
        let _ = get()
            .watch_restarts
            .get_or_create(&vec![("source", source.to_string())]);
    }

    pub fn emitted(ty: &str) {
        get()
            .emitted
            .get_or_create(&vec![("type", ty.to_string())])
            .inc();
    }

    pub fn watch_restart(source: &'static str) {
        get()
            .watch_restarts
            .get_or_create(&vec![("source", source.to_string())])
            .inc();
    }

    pub fn delivery(sink: &str, result: &'static str, seconds: f64) {
        let m = get();
        m.deliveries
            .get_or_create(&vec![
                ("sink", sink.to_string()),
                ("result", result.to_string()),
            ])
            .inc();
        m.delivery_duration
            .get_or_create(&vec![("sink", sink.to_string())])
            .observe(seconds);
    }

    pub fn outbox(sink: &str, pending: i64, dead: i64) {
        let m = get();
        m.outbox_pending
            .get_or_create(&vec![("sink", sink.to_string())])
            .set(pending);
        m.dead_letters
            .get_or_create(&vec![("sink", sink.to_string())])
            .set(dead);
    }

    /// Whether this gateway does the leader's duties now.
    pub fn set_leader(on: bool) {
        get().leader.set(i64::from(on));
    }

    /// Create the react flow's series at zero.
    pub fn init_react() {
        let m = get();
        for reason in [
            "unauthenticated",
            "forbidden",
            "invalid",
            "too_large",
            "unsupported_media_type",
            "rate_limited",
            "unavailable",
        ] {
            let _ = m
                .events_rejected
                .get_or_create(&vec![("reason", reason.to_string())]);
        }
        for result in ["success", "error"] {
            let _ = m
                .policy_reloads
                .get_or_create(&vec![("result", result.to_string())]);
        }
    }

    pub fn event_received(ty: &str) {
        get()
            .events_received
            .get_or_create(&vec![("type", ty.to_string())])
            .inc();
    }

    pub fn event_rejected(reason: &'static str) {
        get()
            .events_rejected
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc();
    }

    pub fn event_deduplicated() {
        get().events_deduplicated.inc();
    }

    pub fn decision(outcome: &str, action: &str) {
        get()
            .decisions
            .get_or_create(&vec![
                ("outcome", outcome.to_string()),
                ("action", action.to_string()),
            ])
            .inc();
    }

    /// One call to Argo CD; `result` is `success`, `refused` (an answer other than 2xx) or
    /// `error` (no answer).
    pub fn argocd_request(operation: &str, result: &'static str, took: std::time::Duration) {
        let m = get();
        m.argocd_requests
            .get_or_create(&vec![
                ("operation", operation.to_string()),
                ("result", result.to_string()),
            ])
            .inc();
        m.argocd_duration
            .get_or_create(&vec![("operation", operation.to_string())])
            .observe(took.as_secs_f64());
    }

    pub fn policy_reload(ok: bool, loaded: usize) {
        let m = get();
        m.policy_reloads
            .get_or_create(&vec![(
                "result",
                if ok { "success" } else { "error" }.to_string(),
            )])
            .inc();
        m.policy_reload_success.set(i64::from(ok));
        if ok {
            m.policies_loaded
                .set(i64::try_from(loaded).unwrap_or(i64::MAX));
        }
    }
}
