//! A CloudEvents receiver for delivery tests: a real HTTP server on loopback that records
//! every request (mode, CloudEvent id/type, the CDEvent body) and answers from a script —
//! a queue of statuses (with optional Retry-After), a rule per event type, a delay — and can
//! go down (close its port, so connections are refused) and come back on the same port.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub mode: &'static str,
    pub id: String,
    pub ty: String,
    pub source: String,
    pub status: u16,
    pub body: Value,
    pub authorization: Option<String>,
}

#[derive(Default)]
struct Script {
    queue: VecDeque<(u16, Option<String>)>,
    refuse_types: Vec<(String, u16)>,
    delay: Duration,
    log: Vec<Received>,
}

#[derive(Clone)]
pub struct Receiver {
    script: Arc<Mutex<Script>>,
    got: Arc<Notify>,
    pub addr: SocketAddr,
    stop: Arc<Mutex<Option<CancellationToken>>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let r = Receiver {
            script: Arc::new(Mutex::new(Script::default())),
            got: Arc::new(Notify::new()),
            addr,
            stop: Arc::new(Mutex::new(None)),
        };
        r.serve(listener);
        r
    }

    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let token = CancellationToken::new();
        *self.stop.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.clone());
        let app = Router::new().fallback(handle).with_state(self.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await;
        });
    }

    /// Close the port: new connections are refused until [`Receiver::up`].
    pub async fn down(&self) {
        if let Some(t) = self.stop.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.cancel();
        }
        // Wait until the port really refuses connections.
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(self.addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("receiver did not go down");
    }

    /// Listen again on the same port.
    pub async fn up(&self) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap_or_else(|e| panic!("{e}"));
        socket.set_reuseaddr(true).unwrap_or_else(|e| panic!("{e}"));
        socket
            .bind(self.addr)
            .unwrap_or_else(|e| panic!("rebinding {}: {e}", self.addr));
        let listener = socket.listen(128).unwrap_or_else(|e| panic!("{e}"));
        self.serve(listener);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answer the next requests with these statuses (and Retry-After values), in order.
    pub fn queue(&self, answers: &[(u16, Option<&str>)]) {
        self.lock()
            .queue
            .extend(answers.iter().map(|(s, r)| (*s, r.map(String::from))));
    }

    /// Answer every event whose type starts with `prefix` with `status`.
    pub fn refuse(&self, prefix: &str, status: u16) {
        self.lock().refuse_types.push((prefix.to_string(), status));
    }

    pub fn clear_refusals(&self) {
        self.lock().refuse_types.clear();
    }

    pub fn set_delay(&self, d: Duration) {
        self.lock().delay = d;
    }

    pub fn log(&self) -> Vec<Received> {
        self.lock().log.clone()
    }

    /// Accepted (2xx) events, in arrival order.
    pub fn accepted(&self) -> Vec<Received> {
        self.log()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    /// Wait until `cond` holds over the log, or panic after `timeout`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&[Received]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.got.notified();
            if cond(&self.log()) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let log = self.log();
                panic!(
                    "timed out waiting for {what}; {} requests received",
                    log.len()
                );
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), notified).await;
        }
    }
}

async fn handle(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let content_type = header("content-type").unwrap_or_default();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (mode, id, ty, source, cdevent) =
        if content_type.starts_with("application/cloudevents+json") {
            (
                "structured",
                parsed["id"].as_str().unwrap_or_default().to_string(),
                parsed["type"].as_str().unwrap_or_default().to_string(),
                parsed["source"].as_str().unwrap_or_default().to_string(),
                parsed["data"].clone(),
            )
        } else {
            (
                "binary",
                header("ce-id").unwrap_or_default(),
                header("ce-type").unwrap_or_default(),
                header("ce-source").unwrap_or_default(),
                parsed,
            )
        };
    let (status, retry_after, delay) = {
        let mut s = r.lock();
        let refused = s
            .refuse_types
            .iter()
            .find(|(p, _)| ty.starts_with(p.as_str()))
            .map(|(_, c)| *c);
        let (status, retry_after) = match refused {
            Some(c) => (c, None),
            None => s.queue.pop_front().unwrap_or((202, None)),
        };
        (status, retry_after, s.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    r.lock().log.push(Received {
        at: Instant::now(),
        mode,
        id,
        ty,
        source,
        status,
        body: cdevent,
        authorization: header("authorization"),
    });
    r.got.notify_waiters();
    let mut resp = StatusCode::from_u16(status)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        .into_response();
    if let Some(ra) = retry_after
        && let Ok(v) = ra.parse()
    {
        resp.headers_mut().insert("retry-after", v);
    }
    resp
}
