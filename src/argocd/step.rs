//! What the react flow asks of Argo CD, independent of the backend: one [`Step`] per call.
//! The REST backend turns a step into an API request ([`super::rest::render`]), the
//! Kubernetes backend into a write on the Application object. Plain data; no I/O.

use serde::Serialize;
use serde_json::Value;

/// One change to one Application.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "step")]
pub enum Step {
    /// A JSON merge patch (RFC 7386) of the Application (spec changes).
    Patch { patch: Value },
    /// Start a sync operation.
    Sync(SyncStep),
    /// Ask Argo CD to refresh (re-read Git, and with `hard` the manifest cache).
    Refresh { hard: bool },
    /// Create the Application (the full object).
    Create { app: Value },
    /// Delete the Application.
    Delete {
        cascade: bool,
        propagation_policy: String,
    },
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncStep {
    pub revision: Option<String>,
    /// Multi-source: one revision per source, with `source_positions` (1-based).
    pub revisions: Vec<String>,
    pub source_positions: Vec<i64>,
    pub prune: bool,
    pub sync_options: Vec<String>,
    pub resources: Vec<Value>,
    /// The source(s) to sync (a rollback through the Kubernetes backend restores them).
    pub source: Option<Value>,
    pub sources: Option<Value>,
    /// `operation.info` entries.
    pub infos: Vec<(String, String)>,
}

impl Step {
    pub fn name(&self) -> &'static str {
        match self {
            Step::Patch { .. } => "patch",
            Step::Sync(_) => "sync",
            Step::Refresh { .. } => "refresh",
            Step::Create { .. } => "create",
            Step::Delete { .. } => "delete",
        }
    }
}
