//! Argo CD: the Application model as the emit flow reads it, and the clients the react flow
//! acts through — one trait, [`ArgoCd`], with two backends: the REST API ([`rest`]) and the
//! Kubernetes API ([`kube_backend`]). Backends carry out [`step::Step`]s; they decide
//! nothing (the planner in `react::plan` does).
//!
//! The model is a deliberately partial, lenient view of `applications.argoproj.io/v1alpha1`:
//! unknown fields are ignored and every field is optional, so a newer Argo CD never breaks
//! the gateway. It must never be used to write an Application back (it would drop fields);
//! the react flow works on the raw JSON objects instead.

pub mod kube_backend;
pub mod model;
pub mod rest;
pub mod step;

pub use model::Application;

use crate::react::matcher::AppRef;
use async_trait::async_trait;
use serde_json::Value;

/// The user name the gateway's operations carry (`operation.initiatedBy.username`). Through
/// REST Argo CD sets it from the token's account, which should have this name.
pub const USERNAME: &str = "argocd-cdevents";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgoError {
    /// Argo CD (or the API server) answered with an error status: retried only when it is
    /// a 5xx ([`retryable`]).
    #[error("Argo CD refused ({status}): {message}")]
    Refused { status: u16, message: String },
    /// No answer, a timeout or 5xx after every retry.
    #[error("Argo CD unavailable: {0}")]
    Unavailable(String),
    #[error("Argo CD client set-up: {0}")]
    Setup(String),
}

/// The `result` label of `argocd_requests_total` for a call's outcome.
pub fn result_label<T>(r: &Result<T, ArgoError>) -> &'static str {
    match r {
        Ok(_) => "success",
        Err(ArgoError::Refused { .. }) => "refused",
        Err(_) => "error",
    }
}

/// The `result` label of reading one Application: `not_found` when it does not exist
/// (the read worked; the target is simply not there).
pub fn get_label(r: &Result<Option<Value>, ArgoError>) -> &'static str {
    match r {
        Ok(None) => "not_found",
        other => result_label(other),
    }
}

/// May a failed call be tried again? On a 5xx, a timeout or no answer; never on a 4xx
/// (a refusal stays a refusal).
fn retryable<T>(outcome: &Result<T, ArgoError>) -> bool {
    match outcome {
        Err(ArgoError::Refused { status, .. }) => *status >= 500,
        Err(ArgoError::Unavailable(_)) => true,
        _ => false,
    }
}

/// After attempt `attempt` (from 1) of at most `1 + retries`: when its failure may be tried
/// again ([`retryable`]) and attempts remain, wait and return true. The wait is the
/// delivery's backoff: 200 ms doubling to at most 6.4 s, with jitter. Both backends retry by
/// this rule.
pub async fn wait_to_retry<T>(
    outcome: &Result<T, ArgoError>,
    operation: &str,
    attempt: u32,
    retries: u32,
) -> bool {
    if !retryable(outcome) || attempt > retries {
        return false;
    }
    let backoff = crate::delivery::retry::backoff(
        attempt,
        std::time::Duration::from_millis(200),
        std::time::Duration::from_millis(6_400),
        rand::random::<f64>(),
    );
    tracing::debug!(
        operation,
        attempt,
        ?backoff,
        "Argo CD call failed; retrying"
    );
    tokio::time::sleep(backoff).await;
    true
}

impl ArgoError {
    /// The answer to a read of an Application that does not exist: `404`, or the `403`
    /// `permission denied` Argo CD answers instead, so as not to reveal what exists.
    pub fn is_absent(&self) -> bool {
        matches!(self, ArgoError::Refused { status: 404, .. })
            || matches!(self, ArgoError::Refused { status: 403, message } if message.contains("permission denied"))
    }

    /// Argo CD says an operation is already running.
    pub fn is_operation_in_progress(&self) -> bool {
        matches!(self, ArgoError::Refused { message, .. } if message.contains("another operation is already in progress"))
    }
}

/// What the react flow needs from Argo CD.
#[async_trait]
pub trait ArgoCd: Send + Sync + 'static {
    /// One Application as Argo CD returns it; `None` when it does not exist.
    async fn get(&self, app: &AppRef) -> Result<Option<Value>, ArgoError>;
    /// Applications matching a label selector (and project) in `namespaces`, the ones the
    /// loaded policies allow at the time of the call. A backend that lists every namespace
    /// it can see in one call (the REST API) may return more; callers keep what they allow.
    async fn list(
        &self,
        selector: &str,
        project: Option<&str>,
        namespaces: &[String],
    ) -> Result<Vec<Value>, ArgoError>;
    /// Carry out one step.
    async fn execute(&self, app: &AppRef, step: &step::Step) -> Result<(), ArgoError>;
}

/// Where Argo CD's API is and the token to use, as the argocd CLI finds them: the configured
/// URL or `ARGOCD_SERVER` (`https://` added when bare), the token from a file or an env var.
pub fn endpoint(
    server: Option<&crate::config::HttpUrl>,
    token_env: &str,
    token_file: Option<&std::path::Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(reqwest::Url, Option<String>), EndpointError> {
    let server = match server {
        Some(u) => u.0.clone(),
        None => {
            let raw = env("ARGOCD_SERVER").ok_or(EndpointError::NoServer)?;
            let with_scheme = if raw.contains("://") {
                raw
            } else {
                format!("https://{raw}")
            };
            reqwest::Url::parse(&with_scheme).map_err(|_| EndpointError::NoServer)?
        }
    };
    let token = match token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|source| EndpointError::TokenFile {
                    path: path.display().to_string(),
                    source,
                })?
                .trim()
                .to_string(),
        ),
        None => env(token_env),
    };
    Ok((server, token))
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("no Argo CD server: set its URL in the config or ARGOCD_SERVER")]
    NoServer,
    #[error("cannot read the Argo CD token file {path}: {source}")]
    TokenFile {
        path: String,
        source: std::io::Error,
    },
}
