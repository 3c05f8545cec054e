//! The Kubernetes source: kube-runtime's watcher on `applications.argoproj.io`, in all
//! namespaces or a list of them, with an optional label selector. The watcher lists, then
//! watches from the list's resourceVersion, and re-lists on `410 Gone`; a re-list ends with
//! a [`SourceEvent::ListComplete`] so apps deleted while the watch was down are noticed.

use crate::argocd::Application;
use crate::config::KubeWatchConfig;
use crate::emit::source::{Scope, SourceEvent};
use crate::telemetry::metrics;
use futures::stream::{self, BoxStream, StreamExt};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use std::collections::HashSet;

/// The watch stream(s) for `cfg`, merged. It never ends; errors are logged and retried with
/// the watcher's default backoff.
pub fn watch(client: Client, cfg: &KubeWatchConfig) -> BoxStream<'static, SourceEvent> {
    let mut wcfg = watcher::Config::default();
    if let Some(sel) = cfg.label_selector.as_deref().filter(|s| !s.is_empty()) {
        wcfg = wcfg.labels(sel);
    }
    let streams: Vec<BoxStream<'static, SourceEvent>> = if cfg.namespaces.is_empty() {
        vec![one(Api::<Application>::all(client), wcfg, Scope::All)]
    } else {
        cfg.namespaces
            .iter()
            .map(|ns| {
                one(
                    Api::<Application>::namespaced(client.clone(), ns),
                    wcfg.clone(),
                    Scope::Namespace(ns.clone()),
                )
            })
            .collect()
    };
    stream::select_all(streams).boxed()
}

fn one(
    api: Api<Application>,
    cfg: watcher::Config,
    scope: Scope,
) -> BoxStream<'static, SourceEvent> {
    let mut seen: Option<HashSet<String>> = None;
    watcher(api, cfg)
        .default_backoff()
        .filter_map(move |event| {
            let out = match event {
                Ok(watcher::Event::Init) => {
                    seen = Some(HashSet::new());
                    None
                }
                Ok(watcher::Event::InitApply(app)) => {
                    if let Some(s) = seen.as_mut() {
                        s.insert(app.key());
                    }
                    Some(SourceEvent::Applied(Box::new(app)))
                }
                Ok(watcher::Event::InitDone) => Some(SourceEvent::ListComplete {
                    scope: scope.clone(),
                    seen: seen.take().unwrap_or_default(),
                }),
                Ok(watcher::Event::Apply(app)) => Some(SourceEvent::Applied(Box::new(app))),
                Ok(watcher::Event::Delete(app)) => Some(SourceEvent::Deleted(Box::new(app))),
                // 410 Gone is routine (the server compacted its history): the watcher
                // re-lists, and the re-list's ListComplete notices deletions in the gap.
                Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                    metrics::watch_restart("kubernetes");
                    tracing::debug!(message = %status.message, "watch expired (410 Gone); re-listing");
                    None
                }
                Err(e) => {
                    metrics::watch_restart("kubernetes");
                    tracing::warn!(error = %e, "kubernetes watch failed; retrying");
                    None
                }
            };
            futures::future::ready(out)
        })
        .boxed()
}
