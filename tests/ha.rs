//! Several gateways on one PostgreSQL store, end to end: two real binaries, a throwaway
//! PostgreSQL, the Kubernetes API double (Applications to watch, a Lease to elect a leader
//! with, SSA conflict rules and all), the Argo CD double and a recording sink.
//! - One gateway leads (watches, emits, delivers); the other stands by; `leader` says which.
//! - Either gateway takes events; each event is decided once, by one of them.
//! - The leader is killed (SIGKILL, no release): the other takes the Lease when it expires
//!   and emits what changes next; the change is delivered once.
//! - A gateway stopped cleanly releases the Lease, so the other takes over at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::fake_argocd::FakeArgoCd;
use support::fake_kube::{FakeKube, example, variant};
use support::gateway::{Gateway, cli};
use support::receiver::Receiver;

const TOKEN: &str = "ha-client-token-0123456789";
const ARGO_TOKEN: &str = "argocd-api-token";

const POLICY: &str = r#"
name: deliver-web
on: {types: [dev.cdevents.artifact.packaged]}
target: {application: '"web"'}
action: {refresh: {}}
dryRun: true
"#;

fn artifact() -> Value {
    let path = support::schemas::shared().join("cdevents/v0.5.1/examples/artifact_packaged.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["context"]["id"] = json!(uuid::Uuid::new_v4().to_string());
    v["context"]["source"] = json!("/ci/web");
    v
}

async fn metric(url: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// A new Application `name` deploying to its own namespace `ha-<name>`: a new environment,
/// so the detector emits `environment.created` for it.
fn in_new_environment(example: &Value, name: &str) -> Value {
    let mut app = variant(example, "argocd", name);
    app["spec"]["destination"]["namespace"] = json!(format!("ha-{name}"));
    app
}

/// The events the sink accepted that name `app`.
fn about(sink: &Receiver, app: &str) -> Vec<Value> {
    sink.accepted()
        .into_iter()
        .filter(|r| r.body.to_string().contains(app))
        .map(|r| r.body)
        .collect()
}

/// Wait for an event naming `app`; on timeout show what arrived and the emitter's log.
async fn wait_event(sink: &Receiver, app: &str, emitter: &Gateway) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while about(sink, app).is_empty() {
        if Instant::now() > deadline {
            let got: Vec<String> = sink.accepted().iter().map(|r| r.body.to_string()).collect();
            panic!(
                "no event about {app}; the sink got {got:?}\n{}",
                emitter.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_emits_any_gateway_decides_and_the_other_takes_over() {
    let db = support::postgres::database().await;
    let dir = tempfile::tempdir().unwrap();
    let kube = FakeKube::start().await;
    let synced = example("application-sync-succeeded");
    kube.apply(variant(&synced, "argocd", "web"));
    let argocd = FakeArgoCd::start(ARGO_TOKEN).await;
    argocd.insert(variant(&synced, "argocd", "web"));
    let sink = Receiver::start().await;
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: fake, cluster: {{server: \"{}\"}}}}]\nusers: [{{name: u, user: {{}}}}]\ncontexts: [{{name: c, context: {{cluster: fake, user: u}}}}]\ncurrent-context: c\n",
            kube.url
        ),
    )
    .unwrap();
    let pdir = dir.path().join("policies");
    std::fs::create_dir_all(&pdir).unwrap();
    std::fs::write(pdir.join("p.yaml"), POLICY).unwrap();
    let config = format!(
        r#"listen: 127.0.0.1:0
log: {{level: "info,argocd_cdevents=debug", format: text}}
emit:
  source: /argocd/ha
  watch: {{kind: kubernetes}}
delivery: {{timeout: 2s, initialBackoff: 50ms, maxBackoff: 400ms, drainTimeout: 3s}}
sinks:
  - {{name: main, url: "{sink}", mode: structured}}
leaderElection: {{namespace: argocd, duration: 3s, grace: 1s}}
react:
  policies: {pdir}
  clients:
    - {{name: ci, bearer: {{tokenEnv: CI_TOKEN}}, sources: ["/ci/*"], types: ["*"]}}
  argocd: {{server: "{argocd}", tokenEnv: ARGOCD_AUTH_TOKEN}}
"#,
        sink = sink.url(),
        pdir = pdir.display(),
        argocd = argocd.url,
    );
    let kubeconfig = kubeconfig.display().to_string();
    let env = [
        ("KUBECONFIG", kubeconfig.as_str()),
        ("CI_TOKEN", TOKEN),
        ("ARGOCD_AUTH_TOKEN", ARGO_TOKEN),
    ];
    let mut a = Gateway::start(dir.path(), "a", &config, &db.url, &env);
    a.wait_log("became the leader", Duration::from_secs(30))
        .await;
    let b = Gateway::start(dir.path(), "b", &config, &db.url, &env);
    b.wait_log("standing by", Duration::from_secs(30)).await;
    let (url_a, url_b) = (a.base_url().await, b.base_url().await);
    assert_eq!(metric(&url_a, "argocd_cdevents_leader").await, 1.0);
    assert_eq!(metric(&url_b, "argocd_cdevents_leader").await, 0.0);

    // The leader emits what changes; the sink gets it once.
    a.wait_log("list committed", Duration::from_secs(30)).await;
    kube.apply(in_new_environment(&synced, "api"));
    wait_event(&sink, "ha-api", &a).await;

    // Either gateway takes events; each is decided exactly once.
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..10 {
        let ev = artifact();
        ids.push(ev["context"]["id"].as_str().unwrap().to_string());
        let url = if i % 2 == 0 { &url_a } else { &url_b };
        let r = http
            .post(format!("{url}/events"))
            .bearer_auth(TOKEN)
            .json(&ev)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let decisions = loop {
        let (code, out, err) = cli(&["decisions", "list", "--json", "--store", &db.url]);
        assert_eq!(code, 0, "{err}");
        let rows: Vec<Value> = out
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if rows.len() >= ids.len() || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut decided: Vec<String> = decisions
        .iter()
        .map(|d| d["eventId"].as_str().unwrap_or_default().to_string())
        .collect();
    decided.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(decided, expected, "every event decided once: {decisions:?}");
    // One app, one policy: a newer event may supersede one waiting behind a running job
    // (recorded as skipped, with the reason); nothing else.
    for d in &decisions {
        let reason = d["reason"].as_str().unwrap_or_default();
        assert!(
            (d["outcome"] == "dry-run" && reason == "dry run: would refresh")
                || (d["outcome"] == "skipped" && reason.starts_with("coalesced: superseded")),
            "{d}"
        );
    }
    assert!(decisions.iter().any(|d| d["outcome"] == "dry-run"));

    // The leader dies without releasing the Lease; the other takes it when it expires.
    a.kill9();
    b.wait_log("became the leader", Duration::from_secs(30))
        .await;
    assert_eq!(metric(&url_b, "argocd_cdevents_leader").await, 1.0);
    b.wait_log("list committed", Duration::from_secs(30)).await;
    kube.apply(in_new_environment(&synced, "billing"));
    wait_event(&sink, "ha-billing", &b).await;
    // Nothing else is in flight: give a second delivery the time to show up, then count.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let billing = about(&sink, "ha-billing");
    let mut billing_ids: Vec<&str> = billing.iter().filter_map(|e| e["id"].as_str()).collect();
    let n = billing_ids.len();
    billing_ids.dedup();
    assert_eq!(
        billing_ids.len(),
        n,
        "an event was delivered twice: {billing:?}"
    );

    // A clean stop releases the Lease: a new gateway leads without waiting for expiry.
    let mut b = b;
    assert_eq!(b.terminate(), Some(0));
    assert!(
        b.log_text().contains("left the leader election"),
        "{}",
        b.log_text()
    );
    let lease = kube
        .lease("argocd", "argocd-cdevents-leader")
        .expect("the Lease exists");
    assert!(
        lease["spec"].get("holderIdentity").is_none(),
        "released: no holder left, so the next gateway need not wait for expiry: {lease}"
    );
    let c = Gateway::start(dir.path(), "c", &config, &db.url, &env);
    c.wait_log("became the leader", Duration::from_secs(30))
        .await;
    let lease = kube
        .lease("argocd", "argocd-cdevents-leader")
        .expect("the Lease exists");
    assert!(
        lease["spec"]["holderIdentity"]
            .as_str()
            .is_some_and(|h| c.log_text().contains(h)),
        "the new gateway holds the Lease: {lease}"
    );
    drop(c);
    drop(db);
}

#[test]
fn leader_election_needs_a_shared_store_and_sane_timings() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "leaderElection: {namespace: argocd, duration: 5s, grace: 5s}\n",
            "grace (5s) must be at least 1s and shorter than duration (5s)",
        ),
        (
            "leaderElection: {namespace: '', duration: 5s, grace: 1s}\n",
            "leaderElection: lease and namespace must not be empty",
        ),
        (
            "leaderElection: {duration: 5s}\n",
            "missing field `namespace`",
        ),
    ];
    for (yaml, expected) in cases {
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, yaml).unwrap();
        let (code, _, err) = cli(&["check", "--config", file.to_str().unwrap()]);
        assert_eq!(code, 2, "{yaml}");
        assert!(err.contains(expected), "{err:?} does not say {expected:?}");
    }
    // With a SQLite store, serve refuses to start.
    let file = dir.path().join("s.yaml");
    std::fs::write(
        &file,
        format!(
            "listen: 127.0.0.1:0\nstore: sqlite://{}/x.db\nleaderElection: {{namespace: argocd}}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(support::gateway::bin())
        .args(["serve", "--config", file.to_str().unwrap()])
        .env_remove("ARGOCD_CDEVENTS_STORE")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("leaderElection needs a postgres:// store"),
        "{err}"
    );
}
