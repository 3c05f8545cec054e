//! What a watch source tells the pipeline. Both sources (Kubernetes watch, Argo CD stream)
//! turn their protocol into these events; they retry and re-list on their own and never
//! end the stream because of a server error.

use crate::argocd::Application;
use std::collections::HashSet;

/// Which apps a complete list covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Namespace(String),
}

impl Scope {
    /// Whether the app `key` (`<namespace>/<name>`) is inside this scope.
    pub fn contains(&self, key: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Namespace(ns) => key.split_once('/').is_some_and(|(k, _)| k == ns),
        }
    }
}

#[derive(Debug, Clone)]
pub enum SourceEvent {
    /// Added or modified, or listed.
    Applied(Box<Application>),
    Deleted(Box<Application>),
    /// A full (re-)list of `scope` ended; recorded apps in scope not in `seen` are gone.
    ListComplete {
        scope: Scope,
        seen: HashSet<String>,
    },
}
