//! The Argo CD REST backend: steps rendered as Argo CD API requests (pure, so `policy test`
//! can print them) and a client that sends them with the rules Argo CD's server enforces:
//! exactly `Content-Type: application/json` on every non-GET request, `syncOptions` wrapped
//! in `items`, `appNamespace` on every call, errors read from `{error, code, message}`.
//! Retries 5xx, timeouts and connection errors with backoff; never a 4xx.

use super::step::{Step, SyncStep};
use super::{ArgoCd, ArgoError};
use crate::react::matcher::AppRef;
use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Value, json};
use std::time::Duration;

/// One Argo CD API request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArgoRequest {
    pub method: &'static str,
    /// Path with the query string.
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn app_path(app: &AppRef) -> String {
    format!("/api/v1/applications/{}", enc(&app.name))
}

/// The request that performs `step` on `app`.
pub fn render(step: &Step, app: &AppRef) -> ArgoRequest {
    let ns = enc(&app.namespace);
    match step {
        Step::Patch { patch } => ArgoRequest {
            method: "PATCH",
            path: app_path(app),
            body: Some(json!({
                "name": app.name,
                "appNamespace": app.namespace,
                "patch": patch.to_string(),
                "patchType": "merge",
            })),
        },
        Step::Sync(s) => ArgoRequest {
            method: "POST",
            path: format!("{}/sync", app_path(app)),
            body: Some(sync_body(s, app)),
        },
        Step::Refresh { hard } => ArgoRequest {
            method: "GET",
            path: format!(
                "{}?refresh={}&appNamespace={ns}",
                app_path(app),
                if *hard { "hard" } else { "normal" }
            ),
            body: None,
        },
        Step::Create { app: object } => ArgoRequest {
            method: "POST",
            path: "/api/v1/applications?upsert=false".into(),
            body: Some(object.clone()),
        },
        Step::Delete {
            cascade,
            propagation_policy,
        } => ArgoRequest {
            method: "DELETE",
            path: format!(
                "{}?cascade={cascade}&propagationPolicy={}&appNamespace={ns}",
                app_path(app),
                enc(propagation_policy)
            ),
            body: None,
        },
    }
}

fn sync_body(s: &SyncStep, app: &AppRef) -> Value {
    let mut body = json!({
        "name": app.name,
        "appNamespace": app.namespace,
        "prune": s.prune,
    });
    if let Some(r) = &s.revision {
        body["revision"] = json!(r);
    }
    if !s.revisions.is_empty() {
        body["revisions"] = json!(s.revisions);
        // Argo CD decodes requests with encoding/json: int64 are JSON numbers here, although
        // swagger (generated for grpc-gateway's jsonpb) types them as strings.
        body["sourcePositions"] = json!(s.source_positions);
    }
    if !s.sync_options.is_empty() {
        body["syncOptions"] = json!({ "items": s.sync_options });
    }
    if !s.resources.is_empty() {
        body["resources"] = json!(s.resources);
    }
    if !s.infos.is_empty() {
        body["infos"] = json!(
            s.infos
                .iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect::<Vec<_>>()
        );
    }
    body
}

/// The REST client.
pub struct RestClient {
    http: reqwest::Client,
    server: reqwest::Url,
    token: String,
    retries: u32,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("server", &self.server.as_str())
            .field("token", &"<redacted>")
            .finish()
    }
}

impl RestClient {
    pub fn new(
        server: reqwest::Url,
        token: String,
        insecure: bool,
        timeout: Duration,
        retries: u32,
    ) -> Result<RestClient, ArgoError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .danger_accept_invalid_certs(insecure)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ArgoError::Setup(e.to_string()))?;
        Ok(RestClient {
            http,
            server,
            token,
            retries,
        })
    }

    async fn send(&self, operation: &'static str, req: &ArgoRequest) -> Result<Value, ArgoError> {
        let url = self
            .server
            .join(req.path.trim_start_matches('/'))
            .map_err(|e| ArgoError::Setup(format!("bad request path {}: {e}", req.path)))?;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let started = std::time::Instant::now();
            let mut builder = self
                .http
                .request(
                    reqwest::Method::from_bytes(req.method.as_bytes())
                        .unwrap_or(reqwest::Method::GET),
                    url.clone(),
                )
                .bearer_auth(&self.token);
            if req.method != "GET" {
                // Argo CD compares the whole header: no charset parameter.
                builder = builder
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(
                        req.body
                            .as_ref()
                            .map(Value::to_string)
                            .unwrap_or_else(|| "{}".into()),
                    );
            }
            let result = builder.send().await;
            let outcome = match result {
                Ok(resp) => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    if status.is_success() {
                        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
                    } else {
                        let message = serde_json::from_str::<Value>(&text)
                            .ok()
                            .and_then(|v| {
                                v["message"]
                                    .as_str()
                                    .or(v["error"].as_str())
                                    .map(str::to_string)
                            })
                            .unwrap_or_else(|| text.chars().take(300).collect());
                        Err(ArgoError::Refused {
                            status: status.as_u16(),
                            message,
                        })
                    }
                }
                Err(e) => Err(ArgoError::Unavailable(without_url(&e))),
            };
            crate::telemetry::metrics::argocd_request(
                operation,
                match &outcome {
                    // A read of an Application that is not there (see `get`).
                    Err(e) if operation == "get" && e.is_absent() => "not_found",
                    other => super::result_label(other),
                },
                started.elapsed(),
            );
            if attempt > 1
                && operation == "sync"
                && matches!(&outcome, Err(e) if e.is_operation_in_progress())
            {
                // The first attempt reached Argo CD before its answer was lost: the
                // operation it started is the one now in progress.
                tracing::info!("retried sync found its operation in progress; counted as done");
                return Ok(Value::Null);
            }
            if !super::wait_to_retry(&outcome, operation, attempt, self.retries).await {
                return outcome;
            }
        }
    }
}

fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut msg = kind.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}

#[async_trait]
impl ArgoCd for RestClient {
    async fn get(&self, app: &AppRef) -> Result<Option<Value>, ArgoError> {
        let req = ArgoRequest {
            method: "GET",
            path: format!("{}?appNamespace={}", app_path(app), enc(&app.namespace)),
            body: None,
        };
        match self.send("get", &req).await {
            Ok(v) => Ok(Some(v)),
            // Without `project`, Argo CD answers 403 for a missing app (it hides existence).
            Err(e) if e.is_absent() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One request for every namespace: Argo CD answers with the Applications of every
    /// namespace the account may see (the caller filters by `namespaces`).
    async fn list(
        &self,
        selector: &str,
        project: Option<&str>,
        _namespaces: &[String],
    ) -> Result<Vec<Value>, ArgoError> {
        let mut path = format!("/api/v1/applications?selector={}", enc(selector));
        if let Some(p) = project {
            path.push_str(&format!("&projects={}", enc(p)));
        }
        let v = self
            .send(
                "list",
                &ArgoRequest {
                    method: "GET",
                    path,
                    body: None,
                },
            )
            .await?;
        Ok(v["items"].as_array().cloned().unwrap_or_default())
    }

    async fn execute(&self, app: &AppRef, step: &Step) -> Result<(), ArgoError> {
        self.send(step.name(), &render(step, app)).await.map(|_| ())
    }
}
