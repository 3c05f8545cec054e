//! `policy test`: run an event through the policies against a given set of Applications and
//! say, per decision, what the gateway would do and which Argo CD call it would make. The
//! same matcher, guards and planner as `serve`; no store (so no cooldown or rate limits), no
//! network, no clock beyond the `now` passed in.

use super::inbound::{self, Inbound, InboundError};
use super::matcher::{self, Aim, AppRef};
use super::plan;
use super::policy::{InProgress, PolicySet};
use super::schema::Schemas;
use crate::argocd::rest::{ArgoRequest, render};
use axum::http::{HeaderMap, HeaderValue, header};
use serde::Serialize;
use serde_json::Value;

/// One simulated decision (one JSON line of `policy test`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Simulated {
    pub policy: String,
    /// `<namespace>/<name>`, or empty when no target could be named.
    pub application: String,
    pub action: String,
    /// `act` or `skip`.
    pub outcome: &'static str,
    pub reason: String,
    /// The main Argo CD call (the last one of the plan).
    pub request: Option<ArgoRequest>,
    /// Every call, in order.
    pub requests: Vec<ArgoRequest>,
    pub dry_run: bool,
}

/// Decode an event file: a structured CloudEvent or a bare CDEvent (JSON).
pub fn read_event(text: &str) -> Result<Inbound, String> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| format!("{}:{}: {e}", e.line(), e.column()))?;
    let media = if v.get("specversion").is_some() {
        "application/cloudevents+json"
    } else {
        "application/json"
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    let mut events = inbound::decode(
        &headers,
        &axum::body::Bytes::copy_from_slice(text.as_bytes()),
        Schemas::get(),
    )
    .map_err(|e| match e {
        InboundError::BadRequest(m) | InboundError::UnsupportedMediaType(m) => m,
    })?;
    events.pop().ok_or_else(|| "no event".to_string())
}

/// Decide what `event` would do given `apps`.
pub fn simulate(
    set: &PolicySet,
    event: &Inbound,
    apps: &[Value],
    default_namespace: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Simulated>, String> {
    event
        .check(Schemas::get(), set)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for m in matcher::match_event(set, event, default_namespace) {
        let policy = m.policy;
        let base =
            |application: String, outcome, reason: String, requests: Vec<ArgoRequest>| Simulated {
                policy: policy.name.clone(),
                application,
                action: policy.action.name().to_string(),
                outcome,
                reason,
                request: requests.last().cloned(),
                requests,
                dry_run: policy.dry_run,
            };
        let targets = match &m.aim {
            Err(reason) => {
                out.push(base(String::new(), "skip", reason.clone(), Vec::new()));
                continue;
            }
            Ok(Aim::App(t)) => vec![t.clone()],
            Ok(aim @ Aim::Selector { selector, .. }) => {
                let t = matcher::select(aim, apps);
                if t.is_empty() {
                    out.push(base(
                        String::new(),
                        "skip",
                        format!("no application matches the selector {selector:?}"),
                        Vec::new(),
                    ));
                }
                t
            }
        };
        for target in targets {
            let app = apps.iter().find(|a| AppRef::of(a) == target);
            let key = target.to_string();
            if let Err(reason) = plan::guard(policy, event, &target, app) {
                out.push(base(key, "skip", reason, Vec::new()));
                continue;
            }
            if let Some(a) = app
                && plan::operation_running(a)
            {
                let reason = match policy.guard.operation_in_progress {
                    InProgress::Skip => {
                        "an operation is already running on the application".to_string()
                    }
                    InProgress::Wait => format!(
                        "an operation is running: would wait up to guard.maxWait ({}) and decide again",
                        humantime::format_duration(policy.guard.max_wait)
                    ),
                };
                out.push(base(key, "skip", reason, Vec::new()));
                continue;
            }
            match plan::plan(policy, event, &target, app, now) {
                Ok(p) => {
                    let reqs: Vec<ArgoRequest> =
                        p.steps.iter().map(|s| render(s, &target)).collect();
                    let reason = super::engine::describe(&p, policy.action.name());
                    out.push(base(key, "act", reason, reqs));
                }
                Err(reason) => out.push(base(key, "skip", reason, Vec::new())),
            }
        }
    }
    Ok(out)
}
