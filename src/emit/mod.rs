//! The emit flow: Application changes in, CDEvents out.
//!
//! `source` (the Kubernetes watch or the Argo CD stream) produces [`source::SourceEvent`]s;
//! the [`Inventory`] keeps the last recorded state of every app in memory and asks the pure
//! [`detect`] core what happened; [`pipeline`] commits the new state and the events to the
//! outbox in one transaction. Nothing here delivers events (that is `delivery`), and nothing
//! here calls Argo CD to change anything.

pub mod detect;
pub mod event;
pub mod kube_source;
pub mod pipeline;
pub mod purl;
pub mod replay;
pub mod source;
pub mod stream_source;

use detect::{AppState, Change, DetectConfig, Detection, EnvironmentMembers};
use std::collections::{HashMap, HashSet};

/// The last recorded state of every application, with an index of environment members.
#[derive(Debug, Default)]
pub struct Inventory {
    states: HashMap<String, AppState>,
    members: HashMap<String, HashSet<String>>,
}

impl EnvironmentMembers for Inventory {
    fn others_in(&self, environment_id: &str, except_key: &str) -> usize {
        self.members
            .get(environment_id)
            .map_or(0, |m| m.len() - usize::from(m.contains(except_key)))
    }
}

impl Inventory {
    /// An inventory holding `states` (as loaded from the store).
    pub fn new(states: impl IntoIterator<Item = AppState>) -> Self {
        let mut inv = Inventory::default();
        for s in states {
            inv.record(s.key.clone(), Some(s));
        }
        inv
    }

    pub fn get(&self, key: &str) -> Option<&AppState> {
        self.states.get(key)
    }

    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Keys of the recorded apps for which `keep` is true.
    pub fn keys_where(&self, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let mut keys: Vec<String> = self.states.keys().filter(|k| keep(k)).cloned().collect();
        keys.sort();
        keys
    }

    /// Run the detector for `change` to the app `key` and record its answer.
    pub fn apply(
        &mut self,
        cfg: &DetectConfig,
        key: &str,
        change: Change<'_>,
        observed_at: &str,
    ) -> Detection {
        let detection = detect::detect(cfg, self.states.get(key), change, self, observed_at);
        self.record(key.to_string(), detection.next.clone());
        detection
    }

    fn record(&mut self, key: String, next: Option<AppState>) {
        if let Some(old) = self.states.get(&key)
            && let Some(m) = self.members.get_mut(&old.environment.id)
        {
            m.remove(&key);
            if m.is_empty() {
                self.members.remove(&old.environment.id);
            }
        }
        match next {
            Some(state) => {
                self.members
                    .entry(state.environment.id.clone())
                    .or_default()
                    .insert(key.clone());
                self.states.insert(key, state);
            }
            None => {
                self.states.remove(&key);
            }
        }
    }
}
