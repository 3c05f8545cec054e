//! The react flow: CloudEvents in, policies matched, Argo CD acted on.
//!
//! `intake` (HTTP) -> `auth` + `inbound` (decode, schema-validate) -> inbox (store, group
//! commit, 202) -> `engine` (`matcher` and `plan`, both pure, then guards, limits and the
//! calls through `crate::argocd`) -> decisions (store). `policy` loads and compiles the
//! policy files; `cel` evaluates expressions; `schema` holds the bundled CDEvents schemas.
//! The pure parts never do I/O; the intake never acts, the engine never answers HTTP.

pub mod auth;
pub mod cel;
pub mod engine;
pub mod inbound;
pub mod intake;
pub mod matcher;
pub mod plan;
pub mod policy;
pub mod schema;
pub mod simulate;
#[cfg(test)]
mod tests;

use crate::argocd::ArgoCd;
use crate::argocd::step::Step;
use crate::store::{NewDecision, Outcome, Store};
use crate::telemetry::metrics;
use policy::{PolicyError, PolicySet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The active policy set, swapped whole on reload.
#[derive(Clone, Default)]
pub struct PolicyHandle(Arc<RwLock<Arc<PolicySet>>>);

impl PolicyHandle {
    pub fn new(set: PolicySet) -> PolicyHandle {
        PolicyHandle(Arc::new(RwLock::new(Arc::new(set))))
    }

    pub fn get(&self) -> Arc<PolicySet> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, set: PolicySet) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
    }
}

/// Load the policy directory once (start-up, `check`): an error is fatal there.
pub fn load_policies(dir: &std::path::Path) -> Result<PolicySet, PolicyError> {
    let set = policy::load_dir(dir)?;
    metrics::policy_reload(true, set.len());
    Ok(set)
}

/// Reload the directory when its files change; a bad set is logged with path:line and the
/// last good set stays active.
pub async fn watch_policies(
    handle: PolicyHandle,
    dir: PathBuf,
    every: Duration,
    stop: CancellationToken,
) {
    let mut seen = policy::fingerprint(&dir);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let now = policy::fingerprint(&dir);
        if now == seen {
            continue;
        }
        seen = now;
        match policy::load_dir(&dir) {
            Ok(set) => {
                tracing::info!(policies = set.len(), dir = %dir.display(), "policies reloaded");
                metrics::policy_reload(true, set.len());
                handle.set(set);
            }
            Err(e) => {
                tracing::error!(error = %e, "policy reload failed; the previous policies stay active");
                metrics::policy_reload(false, 0);
            }
        }
    }
}

/// Delete expired preview Applications (created by createApplication with a ttl).
pub async fn sweep_previews(
    store: Arc<dyn Store>,
    argocd: Arc<dyn ArgoCd>,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        if let Err(e) = sweep_once(store.as_ref(), argocd.as_ref(), chrono::Utc::now()).await {
            tracing::warn!(error = %e, "preview sweep failed; will retry");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// One sweep: returns how many Applications were deleted.
pub async fn sweep_once(
    store: &dyn Store,
    argocd: &dyn ArgoCd,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<usize, crate::argocd::ArgoError> {
    let selector = format!("{}={}", plan::MANAGED_BY_LABEL, plan::MANAGED_BY);
    let apps = argocd.list(&selector, None).await?;
    let mut deleted = 0;
    for app in apps {
        let Some(expires) = app["metadata"]["annotations"][plan::EXPIRES_ANNOTATION]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        else {
            continue;
        };
        if expires > now {
            continue;
        }
        let target = matcher::AppRef::of(&app);
        let step = Step::Delete {
            cascade: true,
            propagation_policy: "foreground".into(),
        };
        let mut d = NewDecision {
            event_source: "/argocd-cdevents/preview-ttl".into(),
            event_id: format!("{target}@{}", expires.to_rfc3339()),
            event_type: "ttl.expired".into(),
            policy: app["metadata"]["labels"][plan::POLICY_LABEL]
                .as_str()
                .unwrap_or("preview-ttl")
                .to_string(),
            application: target.to_string(),
            action: "deleteApplication".into(),
            outcome: Outcome::Acting,
            reason: format!("ttl expired at {}", expires.to_rfc3339()),
            chain_id: app["metadata"]["annotations"][plan::CHAIN_ANNOTATION]
                .as_str()
                .map(str::to_string),
            requests: serde_json::to_string(&[crate::argocd::rest::render(&step, &target)])
                .unwrap_or_default(),
        };
        let now_ms = crate::delivery::now_ms();
        if !store.record_decision(&d, now_ms).await.unwrap_or(false) {
            continue;
        }
        match argocd.execute(&target, &step).await {
            Ok(()) => {
                d.outcome = Outcome::Acted;
                deleted += 1;
            }
            Err(e) => {
                d.outcome = Outcome::Failed;
                d.reason = format!("{}; delete failed: {e}", d.reason);
            }
        }
        metrics::decision(d.outcome.as_str(), "deleteApplication");
        let _ = store.settle_decision(&d, crate::delivery::now_ms()).await;
    }
    Ok(deleted)
}
