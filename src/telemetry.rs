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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
        Metrics {
            registry,
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
}
