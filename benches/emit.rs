//! Emit-flow load benchmark (not a test): runs the release binary against the Argo CD test
//! double and a recording receiver on loopback, and prints
//!   1. Application change -> sink POST latency, p50/p99, next to a baseline measured in the
//!      same run: one bare HTTP POST from this process to the same receiver;
//!   2. wall time, CPU time and peak RSS of the gateway for an initial list of 10,000
//!      Applications, next to the same gateway listing an empty Argo CD.
//!
//! Run: `cargo bench --bench emit` (figures on stdout; nothing is asserted).

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::fake_argocd::FakeArgoCd;
use support::gateway::Gateway;
use support::receiver::Receiver;

const TOKEN: &str = "bench";

fn base_app() -> Value {
    let path = support::schemas::shared().join("argocd/examples/application-sync-succeeded.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{e}"))
}

/// An app `name` whose history ends with `deploys` healthy deploys (at most 10 kept).
fn app(name: &str, dest_ns: &str, deploys: usize) -> Value {
    let mut a = base_app();
    a["metadata"]["name"] = json!(name);
    a["metadata"]["namespace"] = json!("argocd");
    a["metadata"]["uid"] = json!(format!("uid-{name}"));
    a["spec"]["destination"]["namespace"] = json!(dest_ns);
    let history: Vec<Value> = (deploys.saturating_sub(10)..deploys)
        .map(|i| {
            json!({"id": i, "revision": format!("{i:040x}"), "deployedAt": "2026-11-01T00:00:00Z",
                        "source": a["spec"]["source"].clone()})
        })
        .collect();
    let rev = format!("{:040x}", deploys.saturating_sub(1));
    a["status"] = json!({
        "sync": {"status": "Synced", "revision": rev},
        "health": {"status": "Healthy"},
        "history": history,
        "operationState": {"phase": "Succeeded", "startedAt": "2026-11-01T00:00:00Z", "finishedAt": "2026-11-01T00:00:01Z",
                           "operation": {"sync": {"revision": rev}}, "syncResult": {"revision": rev}},
        "summary": {"images": [format!("ghcr.io/acme/{name}:{deploys}")]}
    });
    a
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn gateway_config(fake: &FakeArgoCd, sink: Option<&str>) -> String {
    let sinks = sink.map_or("sinks: []\n".to_string(), |u| {
        format!("sinks:\n  - {{name: bench, url: \"{u}\"}}\n")
    });
    format!(
        "listen: 127.0.0.1:0\nlog: {{level: info, format: text}}\nemit:\n  watch:\n    kind: argocd\n    argocd: {{server: {}}}\n{sinks}",
        fake.url
    )
}

async fn latency(dir: &std::path::Path) {
    const N: usize = 1000;
    let fake = FakeArgoCd::start(TOKEN).await;
    let rx = Receiver::start().await;
    fake.apply("ADDED", app("latency", "bench", 1));
    let store = format!("sqlite://{}/latency.db", dir.display());
    let mut gw = Gateway::start(
        dir,
        "latency",
        &gateway_config(&fake, Some(&rx.url())),
        &store,
        &[("ARGOCD_AUTH_TOKEN", TOKEN)],
    );
    fake.wait_streams(1).await;

    let mut gateway = Vec::with_capacity(N);
    for i in 0..N + 50 {
        let before = rx.log().len();
        let t0 = Instant::now();
        fake.apply("MODIFIED", app("latency", "bench", i + 2));
        rx.wait_for("the upgrade", Duration::from_secs(10), |log| {
            log.len() > before
        })
        .await;
        let at = rx.log()[before].at;
        if i >= 50 {
            gateway.push(at.duration_since(t0));
        }
    }
    gw.terminate();

    // Baseline: one bare POST of the same size from here to the same receiver.
    let client = reqwest::Client::new();
    let body = rx
        .log()
        .last()
        .map(|r| r.body.to_string())
        .unwrap_or_default();
    let mut bare = Vec::with_capacity(N);
    for i in 0..N + 50 {
        let before = rx.log().len();
        let t0 = Instant::now();
        let _ = client
            .post(rx.url())
            .header("ce-id", i.to_string())
            .body(body.clone())
            .send()
            .await;
        let at = rx.log()[before].at;
        if i >= 50 {
            bare.push(at.duration_since(t0));
        }
    }
    gateway.sort();
    bare.sort();
    let (g50, g99, b50, b99) = (
        percentile(&gateway, 0.5),
        percentile(&gateway, 0.99),
        percentile(&bare, 0.5),
        percentile(&bare, 0.99),
    );
    println!(
        "change -> sink POST latency over {N} changes (each a new healthy deploy -> service.upgraded):"
    );
    println!(
        "  gateway   p50 {:7.3} ms   p99 {:7.3} ms   max {:7.3} ms",
        ms(g50),
        ms(g99),
        ms(gateway[N - 1])
    );
    println!(
        "  bare POST p50 {:7.3} ms   p99 {:7.3} ms   (baseline: one loopback POST, same run)",
        ms(b50),
        ms(b99)
    );
    println!(
        "  ratio     p50 {:7.1}x      p99 {:7.1}x",
        ms(g50) / ms(b50),
        ms(g99) / ms(b99)
    );
}

/// (wall time to the committed list, CPU seconds, peak RSS MiB) of one gateway start.
async fn initial_list(dir: &std::path::Path, name: &str, apps: usize) -> (Duration, f64, f64) {
    let fake = FakeArgoCd::start(TOKEN).await;
    for i in 0..apps {
        fake.apply(
            "ADDED",
            app(&format!("app-{i:05}"), &format!("team-{:03}", i % 200), 3),
        );
    }
    let store = format!("sqlite://{}/{name}.db", dir.display());
    let t0 = Instant::now();
    let mut gw = Gateway::start(
        dir,
        name,
        &gateway_config(&fake, None),
        &store,
        &[("ARGOCD_AUTH_TOKEN", TOKEN)],
    );
    let pid = gw.child.id();
    loop {
        if gw.log_text().contains("list committed") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no list committed:\n{}",
            gw.log_text()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let wall = t0.elapsed();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    gw.terminate();
    (wall, ticks / 100.0, hwm_kb / 1024.0)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        latency(dir.path()).await;
        let (w0, c0, r0) = initial_list(dir.path(), "empty", 0).await;
        let (w, c, r) = initial_list(dir.path(), "list10k", 10_000).await;
        println!("initial list of 10,000 Applications (200 environments), fresh SQLite store:");
        println!("  10k apps  wall {:6.3} s   CPU {:6.3} s   peak RSS {:6.1} MiB", w.as_secs_f64(), c, r);
        println!("  0 apps    wall {:6.3} s   CPU {:6.3} s   peak RSS {:6.1} MiB   (baseline: same binary, empty Argo CD)", w0.as_secs_f64(), c0, r0);
        println!("  ratio     wall {:6.1}x    CPU {:6.1}x    RSS {:6.1}x", w.as_secs_f64() / w0.as_secs_f64(), c / c0.max(0.01), r / r0.max(0.1));
    });
}
