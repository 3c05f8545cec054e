//! A TEST DOUBLE of the Argo CD API server (not Argo CD): the list and stream endpoints the
//! emit flow's Argo CD source uses. It enforces the real contract: every request is checked
//! against ../shared/argocd/swagger.json (path, method, query parameters), a bearer token is
//! required (401 with Argo CD's `{error, code, message}` body otherwise), and the stream
//! behaves as API-NOTES.md says: `{"result":{"type","application"}}` per line, or SSE
//! `data:` frames with `:` keep-alives when asked for `text/event-stream`; without
//! `resourceVersion` it first sends ADDED for every app; with one, only later changes.
//! Tests can inject a mid-stream `{"error":{...}}` and cut open streams.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, broadcast};

#[derive(Clone, Debug)]
pub struct Change {
    pub rv: u64,
    pub ty: &'static str,
    pub app: Value,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    apps: Vec<Value>,
    log: Vec<Change>,
    requests: Vec<String>,
    /// Fail the next stream after this many messages with a mid-stream error.
    fail_after: Option<usize>,
    streams_opened: usize,
}

#[derive(Clone)]
pub struct FakeArgoCd {
    inner: Arc<Mutex<Inner>>,
    changes: broadcast::Sender<Option<Change>>,
    opened: Arc<Notify>,
    pub token: String,
    pub url: String,
}

fn key(app: &Value) -> (String, String) {
    (
        app["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        app["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

fn argo_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": message, "code": code, "message": message, "details": []})),
    )
        .into_response()
}

impl FakeArgoCd {
    pub async fn start(token: &str) -> FakeArgoCd {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let url = format!(
            "http://{}",
            listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
        );
        let (changes, _) = broadcast::channel(4096);
        let fake = FakeArgoCd {
            inner: Arc::new(Mutex::new(Inner::default())),
            changes,
            opened: Arc::new(Notify::new()),
            token: token.to_string(),
            url,
        };
        let app = Router::new().fallback(handle).with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Apply a watch-style change (`ADDED`, `MODIFIED`, `DELETED`) to the fake's apps.
    pub fn apply(&self, ty: &'static str, mut app: Value) {
        let change = {
            let mut inner = self.lock();
            inner.rv += 1;
            let rv = inner.rv;
            app["metadata"]["resourceVersion"] = json!(rv.to_string());
            let k = key(&app);
            inner.apps.retain(|a| key(a) != k);
            if ty != "DELETED" {
                inner.apps.push(app.clone());
            }
            let change = Change { rv, ty, app };
            inner.log.push(change.clone());
            change
        };
        let _ = self.changes.send(Some(change));
    }

    /// The next stream fails with a mid-stream error after `n` messages.
    pub fn fail_next_stream_after(&self, n: usize) {
        self.lock().fail_after = Some(n);
    }

    /// End every open stream (as a restarted server or cut connection would).
    pub fn cut_streams(&self) {
        let _ = self.changes.send(None);
    }

    pub fn streams_opened(&self) -> usize {
        self.lock().streams_opened
    }

    /// Wait until at least `n` streams have been opened in total.
    pub async fn wait_streams(&self, n: usize) {
        loop {
            let notified = self.opened.notified();
            if self.streams_opened() >= n {
                return;
            }
            notified.await;
        }
    }

    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }
}

async fn handle(State(fake): State<FakeArgoCd>, req: Request) -> Response {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query: Vec<(String, String)> = reqwest::Url::parse(&format!("http://double{}", req.uri()))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default();
    fake.lock().requests.push(format!("{method} {}", req.uri()));
    if let Err(e) = super::swagger::check(&method, &path, &query) {
        return argo_error(StatusCode::NOT_FOUND, 5, &e);
    }
    let authorized = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", fake.token));
    if !authorized {
        return argo_error(StatusCode::UNAUTHORIZED, 16, "no session information");
    }
    let selector = query
        .iter()
        .find(|(k, _)| k == "selector")
        .map(|(_, v)| v.clone());
    let matches = move |app: &Value| match &selector {
        None => true,
        Some(sel) => sel.split(',').all(|term| match term.split_once('=') {
            Some((k, v)) => app["metadata"]["labels"][k] == v,
            None => !app["metadata"]["labels"][term].is_null(),
        }),
    };
    match (method.as_str(), path.as_str()) {
        ("GET", "/api/v1/applications") => {
            let inner = fake.lock();
            let items: Vec<Value> = inner.apps.iter().filter(|a| matches(a)).cloned().collect();
            axum::Json(
                json!({"metadata": {"resourceVersion": inner.rv.to_string()}, "items": items}),
            )
            .into_response()
        }
        ("GET", "/api/v1/stream/applications") => stream(fake, req.headers(), &query, matches),
        _ => argo_error(
            StatusCode::NOT_IMPLEMENTED,
            12,
            "not implemented by the test double",
        ),
    }
}

fn stream(
    fake: FakeArgoCd,
    headers: &HeaderMap,
    query: &[(String, String)],
    matches: impl Fn(&Value) -> bool + Send + 'static,
) -> Response {
    let sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let since: Option<u64> = query
        .iter()
        .find(|(k, _)| k == "resourceVersion")
        .and_then(|(_, v)| v.parse().ok());
    let mut rx = fake.changes.subscribe();
    let (backlog, fail_after) = {
        let mut inner = fake.lock();
        inner.streams_opened += 1;
        let backlog: Vec<Change> = match since {
            Some(rv) => inner.log.iter().filter(|c| c.rv > rv).cloned().collect(),
            None => inner
                .apps
                .iter()
                .map(|a| Change {
                    rv: inner.rv,
                    ty: "ADDED",
                    app: a.clone(),
                })
                .collect(),
        };
        (backlog, inner.fail_after.take())
    };
    fake.opened.notify_waiters();
    let frame = move |v: Value| -> String {
        if sse {
            format!("data: {v}\n\n")
        } else {
            format!("{v}\n")
        }
    };
    let out = async_stream(move |tx| async move {
        let mut sent = 0usize;
        let mut last_rv = since.unwrap_or(0);
        if sse {
            let _ = tx.send(":\n".to_string()).await;
        }
        let mut pending: std::collections::VecDeque<Change> = backlog.into();
        loop {
            let change = match pending.pop_front() {
                Some(c) => c,
                None => match rx.recv().await {
                    Ok(Some(c)) => c,
                    Ok(None) | Err(_) => return,
                },
            };
            if change.rv <= last_rv && since.is_some() {
                continue;
            }
            last_rv = last_rv.max(change.rv);
            if !matches(&change.app) {
                continue;
            }
            if fail_after == Some(sent) {
                let err = json!({"error": {"grpc_code": 14, "http_code": 503, "message": "transport is closing", "http_status": "Service Unavailable", "details": []}});
                let _ = tx.send(frame(err)).await;
                return;
            }
            let msg = json!({"result": {"type": change.ty, "application": change.app}});
            if tx.send(frame(msg)).await.is_err() {
                return;
            }
            sent += 1;
        }
    });
    let content_type = if sse {
        "text/event-stream"
    } else {
        "application/json"
    };
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(
            out.map(Ok::<_, std::convert::Infallible>),
        ))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A stream fed by a task writing into a channel.
fn async_stream<F, Fut>(f: F) -> impl futures::Stream<Item = String> + Send
where
    F: FnOnce(tokio::sync::mpsc::Sender<String>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
