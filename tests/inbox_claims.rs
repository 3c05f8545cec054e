//! The engine and the inbox claims, in process: a restarted gateway on SQLite decides at once
//! what its stopped predecessor had accepted (its rows are held by another owner id), and on
//! PostgreSQL the rows the intake commits claimed for this gateway reach its engine through
//! the hand-over, and are decided once. The multi-replica end to end is elsewhere.

mod support;

use argocd_cdevents::config::StoreUrl;
use argocd_cdevents::react::engine::Engine;
use argocd_cdevents::react::intake::Committer;
use argocd_cdevents::react::{PolicyHandle, inbound};
use argocd_cdevents::store::{self, InboxClaim, NewInbound, Outcome, Store};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use support::fake_argocd::FakeArgoCd;
use tokio_util::sync::CancellationToken;

const ARGO_TOKEN: &str = "argocd-api-token";

const DRY_WEB: &str = r#"
name: web-image
on: {types: [dev.cdevents.artifact.packaged]}
target: {selector: "app.kubernetes.io/name=web"}
action: {updateImage: {kustomize: {name: ghcr.io/acme/web}}}
dryRun: true
"#;

fn web() -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "web", "namespace": "argocd", "labels": {"app.kubernetes.io/name": "web"}},
        "spec": {"project": "default",
            "source": {"repoURL": "https://github.com/acme/web.git", "path": "deploy",
                "targetRevision": "main", "kustomize": {"images": ["ghcr.io/acme/web:1.0.0"]}},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "web"}},
        "status": {"sync": {"status": "Synced"}, "health": {"status": "Healthy"}}
    })
}

/// An `artifact.packaged` CDEvent as the intake stores it.
fn packaged(tag: &str) -> NewInbound {
    let path = support::schemas::shared().join("cdevents/v0.5.1/examples/artifact_packaged.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    v["context"]["id"] = json!(uuid::Uuid::new_v4().to_string());
    v["context"]["source"] = json!("/ci/github/acme/web");
    v["subject"]["source"] = json!("/ci/github/acme/web");
    v["subject"]["id"] = json!(format!(
        "pkg:oci/web@sha256%3A{}?repository_url=ghcr.io/acme/web&tag={tag}",
        "a".repeat(64)
    ));
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    let mut events = inbound::decode(
        &headers,
        &v.to_string().into(),
        argocd_cdevents::react::schema::Schemas::get(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let ev = events.remove(0);
    NewInbound {
        source: ev.source.clone(),
        event_id: ev.id.clone(),
        event_type: ev.ty.clone(),
        client: "ci".into(),
        payload: Some(ev.stored()),
    }
}

async fn engine(store: Arc<dyn Store>, dir: &std::path::Path) -> (FakeArgoCd, Arc<Engine>) {
    let fake = FakeArgoCd::start(ARGO_TOKEN).await;
    fake.insert(web());
    let pdir = dir.join("policies");
    std::fs::create_dir_all(&pdir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(pdir.join("p.yaml"), DRY_WEB).unwrap_or_else(|e| panic!("{e}"));
    let policies = argocd_cdevents::react::load_policies(&pdir).unwrap_or_else(|e| panic!("{e}"));
    let engine = support::engine::engine(
        store,
        support::engine::rest_client(&fake.url, ARGO_TOKEN),
        PolicyHandle::new(policies),
    );
    (fake, Arc::new(engine))
}

/// The decisions once there are `n` settled ones (polled; gives up after 30 s).
async fn settled(store: &dyn Store, n: usize) -> Vec<argocd_cdevents::store::DecisionRow> {
    for _ in 0..300 {
        let d = store.list_decisions(100).await.unwrap_or_default();
        if d.len() >= n && d.iter().all(|d| d.outcome != Outcome::Acting) {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {n} settled decisions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_gateway_on_sqlite_decides_what_its_predecessor_left_at_once() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url: StoreUrl = format!("sqlite://{}/gw.db", dir.path().display())
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let store = store::open(&url).await.unwrap_or_else(|e| panic!("{e}"));
    // Accepted by the previous process, which held it for another hour when it stopped.
    let now = argocd_cdevents::delivery::now_ms();
    let left = store
        .commit_inbox(
            &[packaged("1.1.0")],
            now,
            &InboxClaim {
                owner: "gw-before-restart".into(),
                until_ms: now + 3_600_000,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(left[0].is_some());

    let (_fake, engine) = engine(store.clone(), dir.path()).await;
    let (_handoff, handed) = tokio::sync::mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let run = tokio::spawn(engine.clone().run(
        argocd_cdevents::react::engine::owner_id(Some("gw-after-restart")),
        handed,
        stop.clone(),
    ));
    let d = settled(store.as_ref(), 1).await;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].outcome, Outcome::DryRun, "{d:?}");
    stop.cancel();
    run.await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_intake_hands_its_claimed_rows_to_its_engine() {
    let db = support::postgres::database().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url: StoreUrl = db.url.parse().unwrap_or_else(|e| panic!("{e}"));
    let store = store::open(&url).await.unwrap_or_else(|e| panic!("{e}"));
    let (_fake, engine) = engine(store.clone(), dir.path()).await;
    let owner = argocd_cdevents::react::engine::owner_id(Some("gw-0"));
    let (handoff, handed) = tokio::sync::mpsc::unbounded_channel();
    let committer = Committer::start(store.clone(), owner.clone(), handoff);
    let stop = CancellationToken::new();
    let run = tokio::spawn(engine.clone().run(owner.clone(), handed, stop.clone()));

    let event = packaged("1.2.0");
    let parsed: Arc<inbound::Inbound> = Arc::new(
        inbound::Inbound::from_stored(
            &event.event_id,
            &event.source,
            &event.event_type,
            event.payload_column(),
        )
        .unwrap_or_else(|e| panic!("{e}")),
    );
    let fresh = committer
        .commit(vec![
            (event.clone(), parsed.clone()),
            (event.clone(), parsed),
        ])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(fresh[0].is_some() && fresh[1].is_none(), "{fresh:?}");
    let d = settled(store.as_ref(), 1).await;
    assert_eq!(
        (d.len(), d[0].outcome, d[0].event_id.as_str()),
        (1, Outcome::DryRun, event.event_id.as_str())
    );
    // The row is this gateway's: another one cannot claim it while the claim holds.
    let other = store
        .claim_inbox(
            &InboxClaim {
                owner: "gw-1".into(),
                until_ms: i64::MAX,
            },
            argocd_cdevents::delivery::now_ms(),
            10,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(other.is_empty(), "{other:?}");
    stop.cancel();
    run.await.unwrap_or_else(|e| panic!("{e}"));
    drop(db);
}
