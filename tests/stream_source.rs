//! The Argo CD stream source against a test double of the Argo CD API (tests/support/
//! fake_argocd.rs, checked against swagger.json): list then follow, SSE and plain JSON lines,
//! a mid-stream error, a cut connection, selectors and projects, authentication.

mod support;

use argocd_cdevents::emit::source::SourceEvent;
use argocd_cdevents::emit::stream_source::StreamSource;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use std::time::Duration;
use support::fake_argocd::FakeArgoCd;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "test-token";

fn app(ns: &str, name: &str, labels: Value) -> Value {
    let text = std::fs::read_to_string(
        support::schemas::shared().join("argocd/examples/application-sync-succeeded.yaml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut v: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    v["metadata"]["namespace"] = json!(ns);
    v["metadata"]["name"] = json!(name);
    v["metadata"]["uid"] = json!(format!("uid-{ns}-{name}"));
    v["metadata"]["labels"] = labels;
    v
}

fn source(fake: &FakeArgoCd, sse: bool, selector: Option<&str>, projects: &[&str]) -> StreamSource {
    StreamSource {
        server: fake.url.parse().unwrap_or_else(|e| panic!("{e}")),
        token: Some(TOKEN.into()),
        selector: selector.map(String::from),
        projects: projects.iter().map(|p| p.to_string()).collect(),
        client: reqwest::Client::new(),
        idle_timeout: Duration::from_secs(5),
        sse,
    }
}

async fn next(events: &mut BoxStream<'static, SourceEvent>) -> SourceEvent {
    match tokio::time::timeout(Duration::from_secs(10), events.next()).await {
        Ok(Some(e)) => e,
        Ok(None) => panic!("stream ended"),
        Err(_) => panic!("no event within 10 s"),
    }
}

fn describe(e: &SourceEvent) -> String {
    match e {
        SourceEvent::Applied(a) => format!("applied {}", a.key()),
        SourceEvent::Deleted(a) => format!("deleted {}", a.key()),
        SourceEvent::ListComplete { scope, seen } => {
            let mut keys: Vec<&String> = seen.iter().collect();
            keys.sort();
            format!("listed {scope:?} {keys:?}")
        }
    }
}

async fn take(events: &mut BoxStream<'static, SourceEvent>, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(describe(&next(events).await));
    }
    out
}

#[tokio::test]
async fn lists_then_follows_in_both_framings() {
    for sse in [true, false] {
        let fake = FakeArgoCd::start(TOKEN).await;
        fake.apply("ADDED", app("argocd", "a", json!({})));
        let stop = CancellationToken::new();
        let mut events = source(&fake, sse, None, &[]).watch(stop.clone());
        assert_eq!(
            take(&mut events, 2).await,
            vec![
                "applied argocd/a".to_string(),
                "listed All [\"argocd/a\"]".to_string()
            ],
            "sse={sse}"
        );
        fake.wait_streams(1).await;
        fake.apply("ADDED", app("team", "b", json!({})));
        fake.apply("MODIFIED", app("argocd", "a", json!({"x": "1"})));
        fake.apply("DELETED", app("team", "b", json!({})));
        assert_eq!(
            take(&mut events, 3).await,
            vec!["applied team/b", "applied argocd/a", "deleted team/b"],
            "sse={sse}: live changes in order, nothing from before the list's resourceVersion"
        );
        stop.cancel();
        // The stream was opened from the list's resourceVersion.
        let reqs = fake.requests();
        assert!(
            reqs.iter()
                .any(|r| r.starts_with("GET /api/v1/stream/applications?resourceVersion=1")),
            "{reqs:?}"
        );
    }
}

#[tokio::test]
async fn a_mid_stream_error_or_a_cut_relists_and_notices_deletions() {
    let fake = FakeArgoCd::start(TOKEN).await;
    fake.apply("ADDED", app("argocd", "a", json!({})));
    fake.apply("ADDED", app("argocd", "b", json!({})));
    fake.fail_next_stream_after(1);
    let stop = CancellationToken::new();
    let mut events = source(&fake, true, None, &[]).watch(stop.clone());
    assert_eq!(
        take(&mut events, 3).await.last().map(String::as_str),
        Some("listed All [\"argocd/a\", \"argocd/b\"]")
    );
    fake.wait_streams(1).await;
    fake.apply("MODIFIED", app("argocd", "a", json!({"v": "2"})));
    // The second message is the injected error: the source re-lists.
    fake.apply("DELETED", app("argocd", "b", json!({})));
    let mut seen = take(&mut events, 1).await;
    assert_eq!(seen, vec!["applied argocd/a"]);
    seen = take(&mut events, 2).await;
    assert_eq!(
        seen,
        vec!["applied argocd/a", "listed All [\"argocd/a\"]"],
        "re-list after the error lost b"
    );
    fake.wait_streams(2).await;
    // A cut connection: the same.
    fake.cut_streams();
    assert_eq!(
        take(&mut events, 2).await,
        vec!["applied argocd/a", "listed All [\"argocd/a\"]"]
    );
    tokio::time::timeout(Duration::from_secs(10), fake.wait_streams(3))
        .await
        .unwrap_or_else(|_| panic!("the stream was not re-opened after the cut"));
    stop.cancel();
}

#[tokio::test]
async fn selector_and_projects_are_sent_and_accepted_by_the_contract() {
    let fake = FakeArgoCd::start(TOKEN).await;
    fake.apply("ADDED", app("argocd", "web", json!({"team": "web"})));
    fake.apply("ADDED", app("argocd", "db", json!({"team": "db"})));
    let stop = CancellationToken::new();
    let mut events = source(&fake, true, Some("team=web"), &["default"]).watch(stop.clone());
    assert_eq!(
        take(&mut events, 2).await,
        vec!["applied argocd/web", "listed All [\"argocd/web\"]"]
    );
    stop.cancel();
    let reqs = fake.requests();
    assert!(
        reqs.iter()
            .any(|r| r.contains("selector=team%3Dweb") && r.contains("projects=default")),
        "{reqs:?}"
    );
}

#[tokio::test]
async fn a_wrong_token_yields_nothing_and_keeps_retrying() {
    let fake = FakeArgoCd::start(TOKEN).await;
    fake.apply("ADDED", app("argocd", "a", json!({})));
    let stop = CancellationToken::new();
    let mut src = source(&fake, true, None, &[]);
    src.token = Some("wrong".into());
    let mut events = src.watch(stop.clone());
    let got = tokio::time::timeout(Duration::from_millis(1500), events.next()).await;
    assert!(
        got.is_err(),
        "no event may come through without valid credentials"
    );
    stop.cancel();
    let lists = fake
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /api/v1/applications"))
        .count();
    assert!(lists >= 2, "it retries the list: {lists}");
}

#[tokio::test]
async fn the_double_rejects_what_argo_cd_rejects() {
    let fake = FakeArgoCd::start(TOKEN).await;
    let http = reqwest::Client::new();
    let cases = [
        ("GET", "/api/v1/applications?bogus=1", 404, "bogus"),
        (
            "PUT",
            "/api/v1/stream/applications",
            404,
            "PUT is not allowed",
        ),
        ("GET", "/api/v1/nothing", 404, "not an Argo CD API path"),
    ];
    for (method, path, status, needle) in cases {
        let resp = http
            .request(
                method.parse().unwrap_or_default(),
                format!("{}{path}", fake.url),
            )
            .bearer_auth(TOKEN)
            // without it a non-GET is 415 before routing, as in Argo CD
            .header("Content-Type", "application/json")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resp.status().as_u16(), status, "{method} {path}");
        let body: Value = resp.json().await.unwrap_or_default();
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains(needle),
            "{body}"
        );
    }
    let resp = http
        .get(format!("{}/api/v1/applications", fake.url))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 401);
}
