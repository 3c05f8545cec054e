//! The Kubernetes watch source (`emit::kube_source::watch`) through a real `kube::Client`
//! and kube-runtime's watcher, against the test double of the Kubernetes API server in
//! tests/support/fake_kube.rs (real list + watch semantics: resource versions, pagination,
//! selectors, bookmarks, 410 Expired). The double's own contract is tested here too.

mod support;

use argocd_cdevents::config::KubeWatchConfig;
use argocd_cdevents::delivery::Route;
use argocd_cdevents::emit::Inventory;
use argocd_cdevents::emit::detect::DetectConfig;
use argocd_cdevents::emit::event::SpecVersion;
use argocd_cdevents::emit::kube_source::watch;
use argocd_cdevents::emit::pipeline::{Pipeline, now_rfc3339};
use argocd_cdevents::emit::source::{Scope, SourceEvent};
use argocd_cdevents::store::sqlite::SqliteStore;
use argocd_cdevents::store::{EmitBatch, OutboxFilter, OutboxRow, Store};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;
use support::fake_kube::{FakeKube, example, variant, with_labels, without_finalizers};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// Longest wait for anything; a broken test fails after this instead of hanging.
const WAIT: Duration = Duration::from_secs(10);

const SYNCED: &str = "application-sync-succeeded";
const MULTI: &str = "application-multisource-sync-succeeded";
const FULL: &str = "application-full-status";

fn keys(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_string()).collect()
}

fn sorted(seen: &HashSet<String>) -> BTreeSet<String> {
    seen.iter().cloned().collect()
}

fn describe(e: &SourceEvent) -> String {
    match e {
        SourceEvent::Applied(a) => format!("applied {}", a.key()),
        SourceEvent::Deleted(a) => format!("deleted {}", a.key()),
        SourceEvent::ListComplete { scope, seen } => format!("listed {scope:?} {:?}", sorted(seen)),
    }
}

/// The source, polled continuously by a task (as the pipeline would), its events queued.
struct Feed {
    rx: mpsc::UnboundedReceiver<SourceEvent>,
    task: JoinHandle<()>,
}

impl Feed {
    fn start(fake: &FakeKube, cfg: KubeWatchConfig) -> Feed {
        let mut stream = watch(fake.client(), &cfg);
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Some(e) = stream.next().await {
                if tx.send(e).is_err() {
                    return;
                }
            }
        });
        Feed { rx, task }
    }

    async fn next(&mut self) -> SourceEvent {
        match timeout(WAIT, self.rx.recv()).await {
            Ok(Some(e)) => e,
            Ok(None) => panic!("the source stream ended; it must never end"),
            Err(_) => panic!("no source event within {WAIT:?}"),
        }
    }

    /// Events up to and including the `n`-th ListComplete.
    async fn until_lists(&mut self, n: usize) -> Vec<SourceEvent> {
        let mut out = Vec::new();
        let mut lists = 0;
        while lists < n {
            let e = self.next().await;
            if matches!(e, SourceEvent::ListComplete { .. }) {
                lists += 1;
            }
            out.push(e);
        }
        out
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The keys of the Applied events and the ListCompletes (scope -> seen) in `events`.
fn split(events: &[SourceEvent]) -> (Vec<String>, Vec<(Scope, BTreeSet<String>)>) {
    let mut applied = Vec::new();
    let mut lists = Vec::new();
    for e in events {
        match e {
            SourceEvent::Applied(a) => applied.push(a.key()),
            SourceEvent::Deleted(a) => panic!("a delete during a list: {}", a.key()),
            SourceEvent::ListComplete { scope, seen } => lists.push((scope.clone(), sorted(seen))),
        }
    }
    (applied, lists)
}

#[tokio::test]
async fn lists_all_namespaces_then_streams_added_modified_deleted_in_order() {
    let fake = FakeKube::start().await;
    let synced = example(SYNCED);
    fake.apply(variant(&synced, "argocd", "billing"));
    fake.apply(variant(&example(MULTI), "argocd", "checkout"));
    // A real Application with Argo CD's resources finalizer.
    let full = example(FULL);
    let velero = fake.apply(variant(&full, "team-a", "velero"));
    let list_rv = fake.resource_version();
    let expected = keys(&["argocd/billing", "argocd/checkout", "team-a/velero"]);

    let mut feed = Feed::start(&fake, KubeWatchConfig::default());
    let events = feed.until_lists(1).await;
    let (applied, lists) = split(&events);
    assert_eq!(applied.len(), 3, "each app listed once: {applied:?}");
    assert_eq!(applied.iter().cloned().collect::<BTreeSet<_>>(), expected);
    assert_eq!(
        lists,
        vec![(Scope::All, expected.clone())],
        "ListComplete comes last, with exactly the listed keys"
    );
    // The listed objects are the real ones, as the server stored them.
    let Some(SourceEvent::Applied(listed_velero)) = events
        .iter()
        .find(|e| matches!(e, SourceEvent::Applied(a) if a.name() == "velero"))
    else {
        panic!("velero not listed")
    };
    assert_eq!(
        listed_velero.metadata.uid.as_deref(),
        velero["metadata"]["uid"].as_str()
    );
    assert_eq!(
        listed_velero.metadata.resource_version.as_deref(),
        velero["metadata"]["resourceVersion"].as_str()
    );
    assert_eq!(
        Some(listed_velero.spec.project.as_str()),
        full["spec"]["project"].as_str()
    );
    assert!(
        !listed_velero.status.history.is_empty(),
        "status.history decoded from the real object"
    );

    // Live changes: a bookmark (no event), then added, modified, deleted, and a deletion
    // held by a finalizer (MODIFIED with deletionTimestamp) that completes (DELETED).
    fake.bookmark();
    let payments = fake.apply(variant(&synced, "team-b", "payments"));
    let mut billing = fake
        .edit(|w| w.get("argocd", "billing"))
        .unwrap_or_else(|| panic!("billing"));
    billing["status"]["sync"]["status"] = json!("OutOfSync");
    let billing = fake.apply(billing);
    fake.delete("argocd", "checkout");
    let marked = fake
        .delete("team-a", "velero")
        .unwrap_or_else(|| panic!("velero"));
    assert!(
        fake.edit(|w| w.get("team-a", "velero")).is_some(),
        "a finalizer holds the object"
    );
    fake.apply(without_finalizers(marked));

    let mut live = Vec::new();
    for _ in 0..5 {
        live.push(feed.next().await);
    }
    let described: Vec<String> = live.iter().map(describe).collect();
    assert_eq!(
        described,
        [
            "applied team-b/payments",
            "applied argocd/billing",
            "deleted argocd/checkout",
            "applied team-a/velero",
            "deleted team-a/velero",
        ]
    );
    let SourceEvent::Applied(p) = &live[0] else {
        unreachable!()
    };
    assert_eq!(
        p.metadata.resource_version.as_deref(),
        payments["metadata"]["resourceVersion"].as_str()
    );
    let SourceEvent::Applied(b) = &live[1] else {
        unreachable!()
    };
    assert_eq!(b.status.sync.status, "OutOfSync");
    assert_eq!(
        b.metadata.resource_version.as_deref(),
        billing["metadata"]["resourceVersion"].as_str()
    );
    let SourceEvent::Applied(v) = &live[3] else {
        unreachable!()
    };
    assert!(
        v.metadata.deletion_timestamp.is_some(),
        "the deletion in progress is visible"
    );

    // What the watcher asked: one list, then a watch from exactly the list's version.
    let reqs = fake.requests();
    let lists: Vec<_> = reqs.iter().filter(|r| r.is_list()).collect();
    assert_eq!(lists.len(), 1, "{reqs:?}");
    assert_eq!(lists[0].path, "/apis/argoproj.io/v1alpha1/applications");
    let watches: Vec<_> = reqs.iter().filter(|r| r.is_watch()).collect();
    assert_eq!(watches.len(), 1, "{reqs:?}");
    assert_eq!(
        watches[0].param("resourceVersion"),
        Some(list_rv.to_string().as_str())
    );
    assert_eq!(watches[0].param("allowWatchBookmarks"), Some("true"));
    assert_eq!(watches[0].outcome, "watch");
}

#[tokio::test]
async fn a_namespace_list_watches_only_those_namespaces_with_one_list_complete_each() {
    let fake = FakeKube::start().await;
    let synced = example(SYNCED);
    for (ns, name) in [
        ("argocd", "a1"),
        ("argocd", "a2"),
        ("team-a", "t1"),
        ("team-b", "b1"),
    ] {
        fake.apply(variant(&synced, ns, name));
    }
    let cfg = KubeWatchConfig {
        namespaces: vec!["argocd".into(), "team-a".into()],
        label_selector: None,
    };
    let mut feed = Feed::start(&fake, cfg);
    let (applied, lists) = split(&feed.until_lists(2).await);
    assert_eq!(
        applied.iter().cloned().collect::<BTreeSet<_>>(),
        keys(&["argocd/a1", "argocd/a2", "team-a/t1"])
    );
    assert_eq!(applied.len(), 3);
    let lists: BTreeMap<String, BTreeSet<String>> = lists
        .into_iter()
        .map(|(scope, seen)| match scope {
            Scope::Namespace(ns) => (ns, seen),
            Scope::All => panic!("a namespace list completed as Scope::All"),
        })
        .collect();
    assert_eq!(
        lists,
        BTreeMap::from([
            ("argocd".to_string(), keys(&["argocd/a1", "argocd/a2"])),
            ("team-a".to_string(), keys(&["team-a/t1"])),
        ])
    );

    // A change in an unwatched namespace never shows; the next event is the watched one.
    fake.apply(variant(&synced, "team-b", "b2"));
    fake.apply(variant(&synced, "team-a", "t2"));
    assert_eq!(describe(&feed.next().await), "applied team-a/t2");

    let reqs = fake.requests();
    for r in &reqs {
        assert!(
            r.path == "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications"
                || r.path == "/apis/argoproj.io/v1alpha1/namespaces/team-a/applications",
            "only the namespaced collections are read: {r:?}"
        );
    }
    assert_eq!(reqs.iter().filter(|r| r.is_list()).count(), 2);
}

#[tokio::test]
async fn the_label_selector_is_sent_and_honoured_on_list_and_watch() {
    let fake = FakeKube::start().await;
    let synced = example(SYNCED);
    let app =
        |name: &str, labels: &[(&str, &str)]| with_labels(variant(&synced, "argocd", name), labels);
    fake.apply(app("pay-prod", &[("team", "payments"), ("tier", "prod")]));
    fake.apply(app("pay-untiered", &[("team", "payments")]));
    fake.apply(app("pay-dev", &[("team", "payments"), ("tier", "dev")]));
    fake.apply(app("search", &[("team", "search")]));
    fake.apply(app("bare", &[]));
    let selector = "team=payments,tier!=dev";
    let cfg = KubeWatchConfig {
        namespaces: vec![],
        label_selector: Some(selector.into()),
    };
    let mut feed = Feed::start(&fake, cfg);
    let (applied, lists) = split(&feed.until_lists(1).await);
    let expected = keys(&["argocd/pay-prod", "argocd/pay-untiered"]);
    assert_eq!(applied.iter().cloned().collect::<BTreeSet<_>>(), expected);
    assert_eq!(lists, vec![(Scope::All, expected)]);

    // Into the selector: ADDED; out of it: DELETED; changes outside it: nothing.
    fake.apply(app("search", &[("team", "payments"), ("tier", "prod")]));
    fake.apply(app("pay-prod", &[("team", "payments"), ("tier", "dev")]));
    let mut pay_dev = fake
        .edit(|w| w.get("argocd", "pay-dev"))
        .unwrap_or_else(|| panic!("pay-dev"));
    pay_dev["status"]["sync"]["status"] = json!("OutOfSync");
    fake.apply(pay_dev);
    fake.apply(app(
        "pay-untiered",
        &[("team", "payments"), ("owner", "ana")],
    ));
    let mut live = Vec::new();
    for _ in 0..3 {
        live.push(describe(&feed.next().await));
    }
    assert_eq!(
        live,
        [
            "applied argocd/search",
            "deleted argocd/pay-prod",
            "applied argocd/pay-untiered"
        ]
    );

    let reqs = fake.requests();
    assert!(reqs.iter().any(|r| r.is_list()) && reqs.iter().any(|r| r.is_watch()));
    for r in &reqs {
        assert_eq!(r.param("labelSelector"), Some(selector), "{r:?}");
    }
}

fn pipeline(store: Arc<dyn Store>, inventory: Inventory) -> Pipeline {
    Pipeline {
        detect: DetectConfig::default(),
        version: SpecVersion::default(),
        source: "/argocd/test".into(),
        store,
        routes: vec![Route {
            sink: "test".into(),
            types: vec![],
            notify: Arc::new(Notify::new()),
        }],
        inventory,
    }
}

/// Stage the source's events into `p` up to the next ListComplete, commit them in one
/// batch; returns the batch and that ListComplete's `seen`.
async fn commit_through_list(p: &mut Pipeline, feed: &mut Feed) -> (EmitBatch, BTreeSet<String>) {
    let observed_at = now_rfc3339();
    let mut batch = EmitBatch::default();
    let seen = loop {
        let e = feed.next().await;
        let seen = match &e {
            SourceEvent::ListComplete { seen, .. } => Some(sorted(seen)),
            _ => None,
        };
        p.stage(e, &observed_at, &mut batch);
        if let Some(seen) = seen {
            break seen;
        }
    };
    let committed = timeout(WAIT, p.commit(&batch, &CancellationToken::new()))
        .await
        .unwrap_or_else(|_| panic!("commit did not finish within {WAIT:?}"));
    assert!(committed);
    (batch, seen)
}

async fn outbox(store: &Arc<dyn Store>) -> Vec<OutboxRow> {
    store
        .list_outbox(&OutboxFilter::default())
        .await
        .unwrap_or_else(|e| panic!("listing the outbox: {e}"))
}

#[tokio::test]
async fn after_410_gone_the_relist_notices_a_deletion_once_and_a_restart_emits_nothing_twice() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url = format!("sqlite://{}/s.db", dir.path().display());
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&url)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let fake = FakeKube::start().await;
    let synced = example(SYNCED);
    fake.apply(variant(&synced, "argocd", "alpha"));
    fake.apply(variant(&synced, "argocd", "bravo"));
    fake.apply(variant(&example(MULTI), "team-b", "charlie"));
    let first_rv = fake.resource_version();

    let mut p1 = pipeline(
        store.clone(),
        Inventory::new(
            store
                .load_app_states()
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        ),
    );
    let mut feed = Feed::start(&fake, KubeWatchConfig::default());
    let (_, seen) = commit_through_list(&mut p1, &mut feed).await;
    assert_eq!(
        seen,
        keys(&["argocd/alpha", "argocd/bravo", "team-b/charlie"])
    );
    assert!(
        outbox(&store)
            .await
            .iter()
            .all(|r| !r.event_type.contains(".service.removed."))
    );

    // The watch is up; the connection drops, bravo is deleted while it is down and the
    // history is compacted: the watcher's resume gets 410 and it must re-list.
    fake.wait_watches(1).await;
    fake.edit(|w| {
        w.drop_watches();
        w.delete("argocd", "bravo");
        w.compact();
    });
    let (_, seen) = commit_through_list(&mut p1, &mut feed).await;
    assert_eq!(
        seen,
        keys(&["argocd/alpha", "team-b/charlie"]),
        "bravo is gone from the re-list"
    );
    let reqs = fake.requests();
    let expired: Vec<_> = reqs
        .iter()
        .filter(|r| r.outcome == "watch-expired")
        .collect();
    assert_eq!(expired.len(), 1, "{reqs:?}");
    assert_eq!(
        expired[0].param("resourceVersion"),
        Some(first_rv.to_string().as_str())
    );
    assert_eq!(
        reqs.iter().filter(|r| r.is_list()).count(),
        2,
        "a re-list after the 410: {reqs:?}"
    );

    let rows = outbox(&store).await;
    let removed: Vec<&OutboxRow> = rows
        .iter()
        .filter(|r| r.event_type.contains(".service.removed."))
        .collect();
    assert_eq!(removed.len(), 1, "one service.removed: {removed:?}");
    assert_eq!(removed[0].app_key, "argocd/bravo");
    assert_eq!(removed[0].sink, "test");
    let payload: Value =
        serde_json::from_str(&removed[0].payload).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(payload["subject"]["id"], "argocd/bravo");
    let states: BTreeSet<String> = store
        .load_app_states()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|s| s.key)
        .collect();
    assert_eq!(
        states,
        keys(&["argocd/alpha", "team-b/charlie"]),
        "bravo's state is forgotten"
    );
    let rows_before_restart = rows.len();
    fake.wait_watches(2).await; // the first watcher is watching again
    drop(feed);
    drop(p1);

    // A restart: a new pipeline from the store, a new watcher listing from scratch.
    let mut p2 = pipeline(
        store.clone(),
        Inventory::new(
            store
                .load_app_states()
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        ),
    );
    let mut feed = Feed::start(&fake, KubeWatchConfig::default());
    let (batch, seen) = commit_through_list(&mut p2, &mut feed).await;
    assert_eq!(seen, keys(&["argocd/alpha", "team-b/charlie"]));
    assert!(
        batch.deliveries.is_empty(),
        "a restart's list emits nothing: {:?}",
        batch.deliveries
    );
    assert_eq!(outbox(&store).await.len(), rows_before_restart);

    // And a 410 re-list on the restarted watcher emits nothing either; this time the
    // connection is cut mid-stream rather than closed.
    fake.wait_watches(3).await;
    fake.edit(|w| {
        w.cut_watches();
        w.bump(); // another resource changed somewhere in the cluster
        w.compact();
    });
    let (batch, seen) = commit_through_list(&mut p2, &mut feed).await;
    assert_eq!(seen, keys(&["argocd/alpha", "team-b/charlie"]));
    assert!(
        batch.deliveries.is_empty(),
        "a re-list emits nothing: {:?}",
        batch.deliveries
    );
    assert_eq!(outbox(&store).await.len(), rows_before_restart);
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|r| r.outcome == "watch-expired")
            .count(),
        2
    );
}

#[tokio::test]
async fn pagination_lists_1200_apps_in_pages_of_500() {
    let fake = FakeKube::start().await;
    let synced = example(SYNCED);
    let mut expected = BTreeSet::new();
    fake.edit(|w| {
        for i in 0..1200 {
            let ns = format!("team-{}", i % 3);
            let name = format!("app-{i:04}");
            expected.insert(format!("{ns}/{name}"));
            w.apply(variant(&synced, &ns, &name));
        }
    });
    let mut feed = Feed::start(&fake, KubeWatchConfig::default());
    let (applied, lists) = split(&feed.until_lists(1).await);
    assert_eq!(applied.len(), 1200);
    assert_eq!(applied.iter().cloned().collect::<BTreeSet<_>>(), expected);
    assert_eq!(lists.len(), 1);
    assert_eq!(lists[0].1.len(), 1200);
    assert_eq!(lists[0].1, expected);

    let reqs = fake.requests();
    let pages: Vec<_> = reqs.iter().filter(|r| r.is_list()).collect();
    assert_eq!(pages.len(), 3, "1200 apps in pages of 500: {pages:?}");
    assert!(pages.iter().all(|p| p.param("limit") == Some("500")));
    assert!(pages[0].param("continue").is_none());
    assert!(pages[1].param("continue").is_some() && pages[2].param("continue").is_some());

    // The watch resumes from the list: the next change arrives.
    fake.apply(variant(&synced, "team-0", "app-1200"));
    assert_eq!(describe(&feed.next().await), "applied team-0/app-1200");
}

// --- The double's own contract, over plain HTTP -------------------------------------------

async fn get(url: &str) -> (u16, Value) {
    let resp = timeout(WAIT, reqwest::get(url))
        .await
        .unwrap_or_else(|_| panic!("GET {url} timed out"))
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let code = resp.status().as_u16();
    let body = resp
        .json::<Value>()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"));
    (code, body)
}

fn assert_status(code: u16, body: &Value, want: u16, reason: &str) {
    assert_eq!(code, want, "{body}");
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["apiVersion"], "v1");
    assert_eq!(body["status"], "Failure");
    assert_eq!(body["code"], want);
    assert_eq!(body["reason"], reason);
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn the_double_rejects_what_the_api_server_rejects() {
    let fake = FakeKube::start().await;
    fake.apply(variant(&example(SYNCED), "argocd", "a"));
    let base = format!("{}/apis/argoproj.io/v1alpha1", fake.url);
    let (code, body) = get(&format!("{base}/applications?watchh=true")).await;
    assert_status(code, &body, 400, "BadRequest");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("watchh"))
    );

    let resp = reqwest::Client::new()
        .post(format!("{base}/applications"))
        .json(&json!({}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let code = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_status(code, &body, 405, "MethodNotAllowed");

    for path in [
        format!("{base}/appprojects"),
        // the CRD has no status subresource
        format!("{base}/namespaces/argocd/applications/a/status"),
        format!("{}/api/v1/pods", fake.url),
        format!("{}/apis/argoproj.io/v1beta1/applications", fake.url),
    ] {
        let (code, body) = get(&path).await;
        assert_status(code, &body, 404, "NotFound");
    }
    for selector in [
        "team in (a",
        "a=b,,c",
        "a=b,",
        "=b",
        "bad key=x",
        "a in ()",
        "a=b c",
    ] {
        let url = reqwest::Url::parse_with_params(
            &format!("{base}/applications"),
            &[("labelSelector", selector)],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let (code, body) = get(url.as_str()).await;
        assert_status(code, &body, 400, "BadRequest");
    }
    let (code, body) = get(&format!(
        "{base}/applications?fieldSelector=spec.project%3Ddefault"
    ))
    .await;
    assert_status(code, &body, 400, "BadRequest");
    let (code, body) = get(&format!("{base}/applications?limit=ten")).await;
    assert_status(code, &body, 400, "BadRequest");
    let (code, body) = get(&format!("{base}/applications?resourceVersionMatch=Exact")).await;
    assert_status(code, &body, 422, "Invalid");
    let (code, body) = get(&format!(
        "{base}/applications?watch=true&resourceVersion=1&resourceVersionMatch=NotOlderThan"
    ))
    .await;
    assert_status(code, &body, 422, "Invalid");
    let (code, body) = get(&format!("{base}/applications?sendInitialEvents=true")).await;
    assert_status(code, &body, 422, "Invalid");
    let (code, body) = get(&format!(
        "{base}/applications?resourceVersion=99&resourceVersionMatch=Exact"
    ))
    .await;
    assert_status(code, &body, 504, "Timeout");

    let reqs = fake.requests();
    assert!(reqs.iter().all(|r| r.outcome == "rejected"), "{reqs:?}");
    assert_eq!(reqs[0].param("watchh"), Some("true"));
    assert_eq!(reqs[1].method, "POST");
}

/// A watch read line by line.
struct WatchLines {
    body: futures::stream::BoxStream<'static, reqwest::Result<axum::body::Bytes>>,
    buf: Vec<u8>,
}

impl WatchLines {
    async fn open(url: &str) -> WatchLines {
        let resp = reqwest::get(url).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resp.status().as_u16(), 200);
        WatchLines {
            body: resp.bytes_stream().boxed(),
            buf: Vec::new(),
        }
    }

    /// The next event, or None when the server ends the stream.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(
                    serde_json::from_slice(&line)
                        .unwrap_or_else(|e| panic!("not a JSON line: {e}")),
                );
            }
            match timeout(WAIT, self.body.next()).await {
                Err(_) => panic!("no watch event within {WAIT:?}"),
                Ok(None) => {
                    assert!(self.buf.is_empty(), "a partial line at the end");
                    return None;
                }
                Ok(Some(chunk)) => self
                    .buf
                    .extend_from_slice(&chunk.unwrap_or_else(|e| panic!("{e}"))),
            }
        }
    }
}

impl WatchLines {
    /// Whether the stream ends with a transport error (true) or cleanly (false), skipping events.
    async fn fails(&mut self) -> bool {
        loop {
            match timeout(WAIT, self.body.next()).await {
                Err(_) => panic!("the watch neither ended nor failed within {WAIT:?}"),
                Ok(None) => return false,
                Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

fn kind_and_name(e: &Value) -> String {
    format!(
        "{} {}",
        e["type"].as_str().unwrap_or_default(),
        e["object"]["metadata"]["name"].as_str().unwrap_or_default()
    )
}

#[tokio::test]
async fn the_double_speaks_list_pagination_watch_bookmarks_and_410() {
    let fake = FakeKube::start().await;
    let synced = example(SYNCED);
    for name in ["a", "b", "c"] {
        fake.apply(variant(&synced, "argocd", name));
    }
    let base = format!("{}/apis/argoproj.io/v1alpha1", fake.url);

    // A paginated list is one consistent snapshot.
    let (code, page1) = get(&format!("{base}/applications?limit=2")).await;
    assert_eq!(code, 200);
    assert_eq!(page1["kind"], "ApplicationList");
    assert_eq!(page1["apiVersion"], "argoproj.io/v1alpha1");
    assert_eq!(page1["metadata"]["resourceVersion"], "3");
    assert_eq!(page1["metadata"]["remainingItemCount"], 1);
    let items = page1["items"].as_array().unwrap_or_else(|| panic!("items"));
    assert_eq!(items.len(), 2);
    for item in items {
        assert_eq!(item["kind"], "Application");
        assert_eq!(item["apiVersion"], "argoproj.io/v1alpha1");
        assert!(
            item["metadata"]["resourceVersion"].is_string() && item["metadata"]["uid"].is_string()
        );
    }
    fake.apply(variant(&synced, "argocd", "bb"));
    fake.delete("argocd", "c");
    let token = page1["metadata"]["continue"]
        .as_str()
        .unwrap_or_else(|| panic!("continue"));
    let (code, page2) = get(&format!("{base}/applications?limit=2&continue={token}")).await;
    assert_eq!(code, 200);
    assert_eq!(page2["metadata"]["resourceVersion"], "3", "same snapshot");
    let names: Vec<&str> = page2["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["c"],
        "the snapshot of the first page, not the changes since"
    );
    assert!(page2["metadata"]["continue"].is_null());
    let (code, body) = get(&format!(
        "{base}/applications?limit=2&continue={token}&resourceVersion=3"
    ))
    .await;
    assert_status(code, &body, 400, "BadRequest");

    // A watch from rv 3 replays the changes after it in order; bookmarks when allowed.
    let mut w = WatchLines::open(&format!(
        "{base}/applications?watch=1&resourceVersion=3&allowWatchBookmarks=true"
    ))
    .await;
    assert_eq!(
        kind_and_name(&w.next().await.unwrap_or_default()),
        "ADDED bb"
    );
    let deleted = w.next().await.unwrap_or_default();
    assert_eq!(kind_and_name(&deleted), "DELETED c");
    assert_eq!(deleted["object"]["metadata"]["resourceVersion"], "5");
    fake.bookmark();
    let bm = w.next().await.unwrap_or_default();
    assert_eq!(bm["type"], "BOOKMARK");
    assert_eq!(bm["object"]["metadata"]["resourceVersion"], "5");
    assert_eq!(bm["object"]["kind"], "Application");
    // A namespaced watch without bookmarks, from scratch: the current state first.
    let mut quiet = WatchLines::open(&format!(
        "{base}/namespaces/argocd/applications?watch=true&labelSelector="
    ))
    .await;
    let initial: Vec<String> = [quiet.next().await, quiet.next().await, quiet.next().await]
        .into_iter()
        .map(|e| kind_and_name(&e.unwrap_or_default()))
        .collect();
    assert_eq!(initial, ["ADDED a", "ADDED b", "ADDED bb"]);
    fake.bookmark();
    fake.apply(variant(&synced, "argocd", "d"));
    assert_eq!(w.next().await.unwrap_or_default()["type"], "BOOKMARK");
    assert_eq!(
        kind_and_name(&w.next().await.unwrap_or_default()),
        "ADDED d"
    );
    assert_eq!(
        kind_and_name(&quiet.next().await.unwrap_or_default()),
        "ADDED d",
        "no bookmark unless allowed"
    );

    // Dropping ends both streams cleanly.
    fake.drop_watches();
    assert!(w.next().await.is_none());
    assert!(quiet.next().await.is_none());

    // Cutting aborts a stream mid-body: the client sees an error, not a clean end.
    let rv = fake.resource_version();
    let mut cut = WatchLines::open(&format!(
        "{base}/applications?watch=true&resourceVersion={rv}"
    ))
    .await;
    fake.wait_watches(3).await;
    fake.edit(|w| w.cut_watches());
    assert!(cut.fails().await, "a cut connection is an error");

    // After compaction a watch (or a continue) from before it is 410 Expired.
    fake.compact();
    let mut old =
        WatchLines::open(&format!("{base}/applications?watch=true&resourceVersion=3")).await;
    let err = old.next().await.unwrap_or_default();
    assert_eq!(err["type"], "ERROR");
    assert_eq!(err["object"]["kind"], "Status");
    assert_eq!(err["object"]["code"], 410);
    assert_eq!(err["object"]["reason"], "Expired");
    assert_eq!(err["object"]["message"], "too old resource version: 3 (6)");
    assert!(old.next().await.is_none(), "the stream ends after the 410");
    let (code, body) = get(&format!("{base}/applications?limit=2&continue={token}")).await;
    assert_status(code, &body, 410, "Expired");

    // timeoutSeconds ends a watch.
    let started = tokio::time::Instant::now();
    let mut short = WatchLines::open(&format!(
        "{base}/applications?watch=true&resourceVersion=6&timeoutSeconds=1"
    ))
    .await;
    assert!(short.next().await.is_none());
    assert!(started.elapsed() >= Duration::from_millis(900));
}
