//! Delivery end to end: the real binary follows a test double of Argo CD, detects the life
//! of three applications and delivers the CDEvents over real HTTP to a recording receiver
//! that fails in every way the design names — 500s, 429 with Retry-After, a 400 (dead
//! letter), being down — and the gateway is SIGKILLed mid-delivery and restarted. Every event
//! arrives at least once, with the id and body `replay` computes, in per-app order.

mod support;

use argocd_cdevents::emit::detect::DetectConfig;
use argocd_cdevents::emit::event::SpecVersion;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use support::fake_argocd::FakeArgoCd;
use support::gateway::{Gateway, cli, outbox};
use support::receiver::{Received, Receiver};

const TOKEN: &str = "gateway-token";
const SOURCE: &str = "/argocd/e2e";
const APPS: [&str; 3] = ["shop", "search", "billing"];

/// The life fixture, renamed for one app: (watch type, object) per step.
fn life_of(name: &str) -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/life-of-an-app.jsonl"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    text.lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}"));
            let obj = &mut v["object"];
            obj["metadata"]["name"] = Value::from(name);
            obj["metadata"]["uid"] = Value::from(format!("uid-{name}"));
            obj["spec"]["destination"]["namespace"] = Value::from(format!("{name}-prod"));
            (
                v["type"].as_str().unwrap_or_default().to_string(),
                v["object"].take(),
            )
        })
        .collect()
}

/// What `replay` says the gateway must emit for one app: (id, body) in order.
fn expected(name: &str) -> Vec<(String, Value)> {
    let lines: Vec<String> = life_of(name)
        .into_iter()
        .map(|(ty, obj)| serde_json::json!({"type": ty, "object": obj}).to_string())
        .collect();
    let mut out = Vec::new();
    argocd_cdevents::emit::replay::replay(
        std::io::Cursor::new(lines.join("\n")),
        SpecVersion::V0_5_1,
        SOURCE,
        &DetectConfig {
            environment_label: Some("cdevents.dev/environment".into()),
            custom_data_labels: vec![],
        },
        "2026-01-01T00:00:00Z",
        |ev| {
            out.push((ev.id, ev.body));
            Ok(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    out
}

fn feed(fake: &FakeArgoCd) {
    let lives: Vec<Vec<(String, Value)>> = APPS.iter().map(|a| life_of(a)).collect();
    for step in 0..lives[0].len() {
        for life in &lives {
            let (ty, obj) = &life[step];
            let ty: &'static str = match ty.as_str() {
                "ADDED" => "ADDED",
                "DELETED" => "DELETED",
                _ => "MODIFIED",
            };
            fake.apply(ty, obj.clone());
        }
    }
}

/// Once the gateway follows the stream, push the three lives into the fake.
async fn start_feeding(fake: &FakeArgoCd, gw: &Gateway) {
    tokio::time::timeout(Duration::from_secs(30), fake.wait_streams(1))
        .await
        .unwrap_or_else(|_| panic!("gateway never opened the stream:\n{}", gw.log_text()));
    feed(fake);
}

fn config(fake: &FakeArgoCd, sinks: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nlog: {{level: info, format: text}}\nemit:\n  source: {SOURCE}\n  watch:\n    kind: argocd\n    argocd: {{server: {}}}\ndelivery: {{timeout: 2s, initialBackoff: 50ms, maxBackoff: 400ms, drainTimeout: 5s}}\nsinks:\n{sinks}",
        fake.url
    )
}

/// Ids of accepted events for one app's subject, first occurrences in arrival order.
fn first_occurrences(received: &[Received], ids: &[String]) -> Vec<String> {
    let mut seen = Vec::new();
    for r in received {
        if ids.contains(&r.id) && !seen.contains(&r.id) {
            seen.push(r.id.clone());
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_of_every_kind_lose_nothing_and_keep_per_app_order() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = format!("sqlite://{}/gw.db", dir.path().display());
    let fake = FakeArgoCd::start(TOKEN).await;
    let main = Receiver::start().await;
    let audit = Receiver::start().await;
    main.queue(&[(500, None), (500, None), (503, None), (429, Some("1"))]);
    main.refuse("dev.cdevents.service.published", 400);
    let sinks = format!(
        "  - {{name: main, url: \"{}\", mode: binary}}\n  - {{name: audit, url: \"{}\", mode: structured, types: [\"dev.cdevents.incident.*\"], auth: {{valueEnv: AUDIT_TOKEN}}}}\n",
        main.url(),
        audit.url()
    );
    let mut gw = Gateway::start(
        dir.path(),
        "gw",
        &config(&fake, &sinks),
        &store,
        &[
            ("ARGOCD_AUTH_TOKEN", TOKEN),
            ("AUDIT_TOKEN", "Bearer audit-secret"),
        ],
    );
    start_feeding(&fake, &gw).await;

    let want: HashMap<&str, Vec<(String, Value)>> =
        APPS.iter().map(|a| (*a, expected(a))).collect();
    let total: usize = want.values().map(Vec::len).sum();
    let published: Vec<String> = want
        .values()
        .flatten()
        .filter(|(_, b)| {
            b["context"]["type"]
                .as_str()
                .unwrap_or_default()
                .contains("service.published")
        })
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(published.len(), 3);

    // Halfway, the receiver goes down until the gateway has seen the connection refused.
    main.wait_for("10 accepted events", Duration::from_secs(30), |log| {
        log.iter().filter(|r| r.status == 202).count() >= 10
    })
    .await;
    main.down().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let refused = outbox(&store, &["--status", "pending"]).iter().any(|r| {
            r["lastError"]
                .as_str()
                .unwrap_or_default()
                .starts_with("transport")
        });
        if refused {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway never hit the closed port:\n{}",
            gw.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    main.up().await;

    main.wait_for(
        "every event but the refused ones",
        Duration::from_secs(60),
        |log| {
            let accepted: Vec<&String> = log
                .iter()
                .filter(|r| r.status == 202)
                .map(|r| &r.id)
                .collect();
            want.values()
                .flatten()
                .filter(|(id, _)| !published.contains(id))
                .all(|(id, _)| accepted.contains(&id))
        },
    )
    .await;

    let accepted = main.accepted();
    for (app, events) in &want {
        let ids: Vec<String> = events
            .iter()
            .map(|(id, _)| id.clone())
            .filter(|id| !published.contains(id))
            .collect();
        assert_eq!(
            first_occurrences(&accepted, &ids),
            ids,
            "{app}: per-app order"
        );
        for (id, body) in events.iter().filter(|(id, _)| !published.contains(id)) {
            let got = accepted.iter().find(|r| &r.id == id).map(|r| &r.body);
            assert_eq!(got, Some(body), "{app}: body of {id} differs from replay");
        }
    }
    assert!(
        accepted
            .iter()
            .all(|r| r.mode == "binary" && r.source == SOURCE)
    );

    // The 429's Retry-After (1 s) was honoured for that event.
    let log = main.log();
    let limited = log
        .iter()
        .find(|r| r.status == 429)
        .unwrap_or_else(|| panic!("no 429 served"));
    let retried = log
        .iter()
        .find(|r| r.id == limited.id && r.at > limited.at)
        .unwrap_or_else(|| panic!("429'd event never retried"));
    assert!(
        retried.at.duration_since(limited.at) >= Duration::from_millis(950),
        "retried after {:?}",
        retried.at.duration_since(limited.at)
    );
    // 500s were retried with the same id.
    let first_500 = log
        .iter()
        .find(|r| r.status == 500)
        .map(|r| r.id.clone())
        .unwrap_or_default();
    assert!(accepted.iter().any(|r| r.id == first_500));

    // The 400s are dead letters, listed; the apps' later events went through anyway.
    let dead = outbox(&store, &["--status", "dead"]);
    let mut dead_ids: Vec<String> = dead
        .iter()
        .map(|r| r["eventId"].as_str().unwrap_or_default().to_string())
        .collect();
    dead_ids.sort();
    let mut want_dead = published.clone();
    want_dead.sort();
    assert_eq!(dead_ids, want_dead);
    assert!(
        dead.iter()
            .all(|r| r["lastError"] == "HTTP 400" && r["sink"] == "main")
    );

    // The audit sink got only incidents, structured, with its auth header.
    audit
        .wait_for("all incident events", Duration::from_secs(30), |log| {
            log.iter().filter(|r| r.status == 202).count() >= 18
        })
        .await;
    let a = audit.accepted();
    assert!(
        a.iter()
            .all(|r| r.ty.starts_with("dev.cdevents.incident.") && r.mode == "structured")
    );
    assert!(
        a.iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer audit-secret"))
    );

    // Re-drive the dead letters once the receiver accepts them.
    main.clear_refusals();
    let (code, stdout, stderr) = cli(&["outbox", "redrive", "--store", &store, "--sink", "main"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "re-queued 3 dead-lettered event(s)");
    main.wait_for("re-driven events", Duration::from_secs(30), |log| {
        published
            .iter()
            .all(|id| log.iter().any(|r| &r.id == id && r.status == 202))
    })
    .await;
    assert!(outbox(&store, &["--status", "dead"]).is_empty());
    assert_eq!(
        outbox(&store, &[]).len(),
        total + 18,
        "one row per event per sink that wants it"
    );

    // SIGTERM: a clean, drained exit.
    assert_eq!(gw.terminate(), Some(0), "{}", gw.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_delivery_then_restart_delivers_everything_once_more_at_most() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = format!("sqlite://{}/gw.db", dir.path().display());
    let fake = FakeArgoCd::start(TOKEN).await;
    let rx = Receiver::start().await;
    rx.set_delay(Duration::from_millis(150));
    let sinks = format!("  - {{name: main, url: \"{}\"}}\n", rx.url());
    let cfg = config(&fake, &sinks);
    let env = [("ARGOCD_AUTH_TOKEN", TOKEN)];
    let mut gw = Gateway::start(dir.path(), "first", &cfg, &store, &env);
    start_feeding(&fake, &gw).await;
    let want: HashMap<&str, Vec<(String, Value)>> =
        APPS.iter().map(|a| (*a, expected(a))).collect();
    let total: usize = want.values().map(Vec::len).sum();

    // Everything is committed to the outbox before the kill...
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while outbox(&store, &[]).len() < total {
        assert!(
            std::time::Instant::now() < deadline,
            "outbox never filled:\n{}",
            gw.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... and the kill lands while deliveries are in flight.
    rx.wait_for("a few deliveries", Duration::from_secs(30), |log| {
        log.len() >= 6
    })
    .await;
    gw.kill9();
    let before_restart = rx.log().len();
    assert!(
        before_restart < total,
        "the kill came too late to test anything"
    );

    let mut gw2 = Gateway::start(dir.path(), "second", &cfg, &store, &env);
    let all_delivered = |log: &[Received]| {
        want.values()
            .flatten()
            .all(|(id, _)| log.iter().any(|r| &r.id == id))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !all_delivered(&rx.log()) {
        assert!(
            std::time::Instant::now() < deadline,
            "not everything arrived after the restart ({} requests); restarted gateway's log:\n{}",
            rx.log().len(),
            gw2.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = rx.log();
    for (app, events) in &want {
        let ids: Vec<String> = events.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(
            first_occurrences(&log, &ids),
            ids,
            "{app}: per-app order across the crash"
        );
    }
    let duplicates = log.len() - total;
    eprintln!(
        "sigkill: {before_restart} requests before the kill, {duplicates} sent again after the restart"
    );
    assert!(
        duplicates <= 3 * 2,
        "at most the in-flight events are sent again: {duplicates}"
    );
    // The restart re-listed from Argo CD and recorded state: nothing was emitted twice.
    assert_eq!(outbox(&store, &[]).len(), total);
    assert_eq!(gw2.terminate(), Some(0), "{}", gw2.log_text());
}
