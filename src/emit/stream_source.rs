//! The Argo CD API source, for a gateway without cluster access: list
//! `GET /api/v1/applications`, then follow `GET /api/v1/stream/applications` from the list's
//! resourceVersion. The stream is read as SSE (`data: {...}` frames, `:` keep-alives) or as
//! plain JSON lines; each message is `{"result":{"type","application"}}` or a mid-stream
//! `{"error":{...}}`. On an error, an idle timeout or the end of the stream it backs off,
//! re-lists and follows again.

use crate::argocd::Application;
use crate::config::ArgoStreamConfig;
use crate::emit::source::{Scope, SourceEvent};
use crate::telemetry::metrics;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("Argo CD answered {status} to {what}: {message}")]
    Status {
        what: &'static str,
        status: u16,
        message: String,
    },
    #[error("{what}: {source}")]
    Http {
        what: &'static str,
        source: reqwest::Error,
    },
    #[error("stream error from Argo CD: {0}")]
    Remote(String),
    #[error("stream message is not valid JSON: {0}")]
    Decode(String),
    #[error("no message for {0:?} (keep-alives are every 15 s)")]
    Idle(Duration),
    #[error("the stream ended")]
    Ended,
    #[error("no Argo CD server: set emit.watch.argocd.server or ARGOCD_SERVER")]
    NoServer,
    #[error("cannot read the Argo CD token file {path}: {source}")]
    TokenFile {
        path: String,
        source: std::io::Error,
    },
}

/// How to reach Argo CD.
#[derive(Clone)]
pub struct StreamSource {
    pub server: reqwest::Url,
    pub token: Option<String>,
    pub selector: Option<String>,
    pub projects: Vec<String>,
    pub client: reqwest::Client,
    /// Reconnect when nothing (not even a keep-alive) arrives for this long.
    pub idle_timeout: Duration,
    /// Ask for SSE framing (`Accept: text/event-stream`, with keep-alives); else JSON lines.
    pub sse: bool,
}

impl std::fmt::Debug for StreamSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSource")
            .field("server", &self.server.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl StreamSource {
    /// Build from config, reading `ARGOCD_SERVER` and the token through `env`.
    pub fn from_config(
        cfg: &ArgoStreamConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, StreamError> {
        let (server, token) = crate::argocd::endpoint(
            cfg.server.as_ref(),
            &cfg.token_env,
            cfg.token_file.as_deref(),
            env,
        )
        .map_err(|e| match e {
            crate::argocd::EndpointError::NoServer => StreamError::NoServer,
            crate::argocd::EndpointError::TokenFile { path, source } => {
                StreamError::TokenFile { path, source }
            }
        })?;
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(cfg.insecure)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|source| StreamError::Http {
                what: "building the HTTP client",
                source,
            })?;
        Ok(StreamSource {
            server,
            token,
            selector: cfg.selector.clone().filter(|s| !s.is_empty()),
            projects: cfg.projects.clone(),
            client,
            idle_timeout: Duration::from_secs(60),
            sse: true,
        })
    }

    /// The endless event stream; stops when `shutdown` is cancelled.
    pub fn watch(self, shutdown: CancellationToken) -> BoxStream<'static, SourceEvent> {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            let mut failures: u32 = 0;
            loop {
                let result = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = self.list_and_follow(&tx, &mut failures) => r,
                };
                if tx.is_closed() {
                    return;
                }
                metrics::watch_restart("argocd");
                failures = failures.saturating_add(1);
                let delay = crate::delivery::retry::backoff(
                    failures,
                    Duration::from_millis(200),
                    Duration::from_secs(30),
                    rand::random::<f64>(),
                );
                if let Err(e) = result {
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "Argo CD stream interrupted");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        });
        tokio_stream_from(rx)
    }

    fn request(&self, path: &str) -> reqwest::RequestBuilder {
        let mut url = self.server.clone();
        url.set_path(path);
        {
            let mut q = url.query_pairs_mut();
            if let Some(sel) = &self.selector {
                q.append_pair("selector", sel);
            }
            for p in &self.projects {
                q.append_pair("projects", p);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let req = self.client.get(url);
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    async fn list_and_follow(
        &self,
        tx: &mpsc::Sender<SourceEvent>,
        failures: &mut u32,
    ) -> Result<(), StreamError> {
        // List.
        let resp = self
            .request("/api/v1/applications")
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|source| StreamError::Http {
                what: "listing applications",
                source,
            })?;
        let list: AppList = read_json(resp, "listing applications").await?;
        let resource_version = list.metadata.resource_version.clone();
        let mut seen = std::collections::HashSet::new();
        for app in list.items {
            seen.insert(app.key());
            if tx.send(SourceEvent::Applied(Box::new(app))).await.is_err() {
                return Ok(());
            }
        }
        let _ = tx
            .send(SourceEvent::ListComplete {
                scope: Scope::All,
                seen,
            })
            .await;

        // Follow.
        let accept = if self.sse {
            "text/event-stream"
        } else {
            "application/json"
        };
        let mut req = self
            .request("/api/v1/stream/applications")
            .header(reqwest::header::ACCEPT, accept);
        if let Some(rv) = resource_version.filter(|v| !v.is_empty()) {
            req = req.query(&[("resourceVersion", rv)]);
        }
        let resp = req.send().await.map_err(|source| StreamError::Http {
            what: "opening the stream",
            source,
        })?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            return Err(StreamError::Status {
                what: "opening the stream",
                status,
                message: error_message(&resp.text().await.unwrap_or_default()),
            });
        }
        *failures = 0;
        let mut body = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let chunk = match tokio::time::timeout(self.idle_timeout, body.next()).await {
                Err(_) => return Err(StreamError::Idle(self.idle_timeout)),
                Ok(None) => return Err(StreamError::Ended),
                Ok(Some(Err(source))) => {
                    return Err(StreamError::Http {
                        what: "reading the stream",
                        source,
                    });
                }
                Ok(Some(Ok(c))) => c,
            };
            buf.extend_from_slice(&chunk);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line);
                match parse_line(&line)? {
                    Some(event) => {
                        if tx.send(event).await.is_err() {
                            return Ok(());
                        }
                    }
                    None => continue,
                }
            }
        }
    }
}

fn tokio_stream_from(mut rx: mpsc::Receiver<SourceEvent>) -> BoxStream<'static, SourceEvent> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

#[derive(Deserialize)]
struct AppList {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<Application>,
}

#[derive(Deserialize, Default)]
struct ListMeta {
    #[serde(default, rename = "resourceVersion")]
    resource_version: Option<String>,
}

#[derive(Deserialize)]
struct StreamMessage {
    result: Option<StreamResult>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct StreamResult {
    #[serde(rename = "type")]
    ty: String,
    application: Application,
}

/// One line of the stream (SSE or plain) -> an event, nothing (keep-alive, blank, SSE
/// field we don't use), or an error.
pub fn parse_line(line: &str) -> Result<Option<SourceEvent>, StreamError> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.is_empty() || line.starts_with(':') {
        return Ok(None);
    }
    let json = match line.strip_prefix("data:") {
        Some(rest) => rest.trim_start(),
        None if line.starts_with("event:")
            || line.starts_with("id:")
            || line.starts_with("retry:") =>
        {
            return Ok(None);
        }
        None => line,
    };
    let msg: StreamMessage =
        serde_json::from_str(json).map_err(|e| StreamError::Decode(e.to_string()))?;
    if let Some(err) = msg.error {
        let message = err
            .get("message")
            .and_then(|m| m.as_str())
            .unwrap_or("unknown error")
            .to_string();
        return Err(StreamError::Remote(message));
    }
    let Some(result) = msg.result else {
        return Err(StreamError::Decode("neither result nor error".into()));
    };
    let app = Box::new(result.application);
    match result.ty.as_str() {
        "ADDED" | "MODIFIED" => Ok(Some(SourceEvent::Applied(app))),
        "DELETED" => Ok(Some(SourceEvent::Deleted(app))),
        other => Err(StreamError::Decode(format!("unknown event type {other:?}"))),
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    what: &'static str,
) -> Result<T, StreamError> {
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|source| StreamError::Http { what, source })?;
    if !status.is_success() {
        return Err(StreamError::Status {
            what,
            status: status.as_u16(),
            message: error_message(&text),
        });
    }
    serde_json::from_str(&text).map_err(|e| StreamError::Decode(e.to_string()))
}

/// The `message` of an Argo CD error body `{error, code, message}`, else the text.
fn error_message(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from))
        .unwrap_or_else(|| text.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_both_framings_parse() {
        let app = r#"{"metadata":{"name":"a","namespace":"argocd"}}"#;
        let plain = format!(r#"{{"result":{{"type":"ADDED","application":{app}}}}}"#);
        let sse = format!("data: {plain}");
        for line in [plain.as_str(), sse.as_str()] {
            match parse_line(line) {
                Ok(Some(SourceEvent::Applied(a))) => assert_eq!(a.key(), "argocd/a"),
                other => panic!("{line}: {other:?}"),
            }
        }
        let deleted = format!(r#"{{"result":{{"type":"DELETED","application":{app}}}}}"#);
        assert!(matches!(
            parse_line(&deleted),
            Ok(Some(SourceEvent::Deleted(_)))
        ));
        for skip in ["", ":", ": keep-alive", "event: message", "\r"] {
            assert!(matches!(parse_line(skip), Ok(None)), "{skip:?}");
        }
        let err = r#"{"error":{"grpc_code":14,"http_code":503,"message":"transport is closing","http_status":"Service Unavailable"}}"#;
        match parse_line(err) {
            Err(StreamError::Remote(m)) => assert_eq!(m, "transport is closing"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_line("{nope"), Err(StreamError::Decode(_))));
        assert!(matches!(
            parse_line(r#"{"result":{"type":"BOOKMARK","application":{}}}"#),
            Err(StreamError::Decode(_))
        ));
    }
}
