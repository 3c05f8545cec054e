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
    // A change is loaded once the directory has stayed the same for one more interval: a
    // file being written (truncated, then filled) is never taken for the new set — an empty
    // file would otherwise load as "no policies" and silently stop every reaction.
    let mut settling = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let now = policy::fingerprint(&dir);
        if now == seen {
            settling = None;
            continue;
        }
        if settling.as_ref() != Some(&now) {
            settling = Some(now);
            continue;
        }
        settling = None;
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
