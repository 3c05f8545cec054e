//! The Kubernetes backend: acts on `applications.argoproj.io` objects directly, as Argo
//! CD's controller expects — a sync is a merge patch of `.operation` (Kubernetes field names:
//! flat `syncOptions`, `initiatedBy.username: argocd-cdevents`), guarded by the object's
//! `resourceVersion` so it never overwrites an operation that started in between; a refresh
//! is the `argocd.argoproj.io/refresh` annotation; a cascading delete adds Argo CD's
//! resources finalizer first. This path skips Argo CD RBAC and sync windows (see
//! docs/security.md).
//!
//! A step that fails with a 5xx, a timeout or no answer is tried again, whole, after a
//! backoff ([`super::wait_to_retry`]); never after a 4xx. A retried step
//! that finds its own first attempt landed (the answer was lost) counts as done: the sync
//! operation set with its own `info`, the Application it creates already there, the one it
//! deletes already gone.

use super::step::{Step, SyncStep};
use super::{ArgoCd, ArgoError, USERNAME};
use crate::react::matcher::AppRef;
use async_trait::async_trait;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, PropagationPolicy,
};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

pub struct KubeBackend {
    client: kube::Client,
    resource: ApiResource,
    /// Attempts after the first, on a 5xx, a timeout or no answer.
    retries: u32,
}

impl KubeBackend {
    pub fn new(client: kube::Client, retries: u32) -> KubeBackend {
        KubeBackend {
            client,
            resource: ApiResource {
                group: "argoproj.io".into(),
                version: "v1alpha1".into(),
                api_version: "argoproj.io/v1alpha1".into(),
                kind: "Application".into(),
                plural: "applications".into(),
            },
            retries,
        }
    }

    /// The client settings of the backend: `timeout` for each read and write of a request,
    /// and kube-rs's own retry layer off. That layer repeats a request answered 503/504 as
    /// it was, so a sync patch whose first attempt landed unanswered would be sent again
    /// with a stale `resourceVersion` (409), and it waits up to minutes; the backend's own
    /// retry ([`KubeBackend::with_retries`]) reads the Application again instead.
    pub fn client_config(mut config: kube::Config, timeout: std::time::Duration) -> kube::Config {
        config.read_timeout = Some(timeout);
        config.write_timeout = Some(timeout);
        config.default_retry = false;
        config
    }

    fn api(&self, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), ns, &self.resource)
    }
}

fn err(e: kube::Error) -> ArgoError {
    match e {
        kube::Error::Api(s) => ArgoError::Refused {
            status: s.code,
            message: s.message,
        },
        other => ArgoError::Unavailable(other.to_string()),
    }
}

fn to_json(o: DynamicObject) -> Value {
    serde_json::to_value(o).unwrap_or(Value::Null)
}

/// The `.operation` object Argo CD's controller reads (Kubernetes field names).
pub fn operation(s: &SyncStep) -> Value {
    let mut sync = json!({ "prune": s.prune });
    if let Some(r) = &s.revision {
        sync["revision"] = json!(r);
    }
    if !s.revisions.is_empty() {
        sync["revisions"] = json!(s.revisions);
        sync["sourcePositions"] = json!(s.source_positions);
    }
    if !s.sync_options.is_empty() {
        sync["syncOptions"] = json!(s.sync_options);
    }
    if !s.resources.is_empty() {
        sync["resources"] = json!(s.resources);
    }
    if let Some(src) = &s.source {
        sync["source"] = src.clone();
    }
    if let Some(srcs) = &s.sources {
        sync["sources"] = srcs.clone();
    }
    json!({
        "initiatedBy": {"username": USERNAME},
        "info": s.infos.iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>(),
        "sync": sync,
    })
}

/// Count and time a call, as the REST client does (`argocd_requests_total`), its result
/// labelled by `label`.
async fn measured<T>(
    operation: &str,
    label: fn(&Result<T, ArgoError>) -> &'static str,
    call: impl std::future::Future<Output = Result<T, ArgoError>>,
) -> Result<T, ArgoError> {
    let started = std::time::Instant::now();
    let out = call.await;
    crate::telemetry::metrics::argocd_request(operation, label(&out), started.elapsed());
    out
}

#[async_trait]
impl ArgoCd for KubeBackend {
    async fn get(&self, app: &AppRef) -> Result<Option<Value>, ArgoError> {
        self.with_retries("get", super::get_label, |_| self.get_app(app))
            .await
    }

    /// One list request per namespace asked for.
    async fn list(
        &self,
        selector: &str,
        project: Option<&str>,
        namespaces: &[String],
    ) -> Result<Vec<Value>, ArgoError> {
        self.with_retries("list", super::result_label, |_| {
            self.list_apps(selector, project, namespaces)
        })
        .await
    }

    async fn execute(&self, app: &AppRef, step: &Step) -> Result<(), ArgoError> {
        self.with_retries(step.name(), super::result_label, |retried| {
            self.run_step(app, step, retried)
        })
        .await
    }
}

/// Does operation object `op` (`.operation`, or `status.operationState.operation`) carry
/// this sync's `info`, set by the gateway?
fn is_this_sync(op: &Value, s: &SyncStep) -> bool {
    let ours = operation(s);
    op["initiatedBy"]["username"] == USERNAME && op["info"] == ours["info"]
}

impl KubeBackend {
    /// `call` until it succeeds, fails for good, or has been tried `1 + retries` times; each
    /// attempt is counted. `call` is told whether an attempt came before it.
    async fn with_retries<T, F, Fut>(
        &self,
        operation: &str,
        label: fn(&Result<T, ArgoError>) -> &'static str,
        mut call: F,
    ) -> Result<T, ArgoError>
    where
        F: FnMut(bool) -> Fut,
        Fut: std::future::Future<Output = Result<T, ArgoError>>,
    {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = measured(operation, label, call(attempt > 1)).await;
            if !super::wait_to_retry(&outcome, operation, attempt, self.retries).await {
                return outcome;
            }
        }
    }

    async fn get_app(&self, app: &AppRef) -> Result<Option<Value>, ArgoError> {
        self.api(&app.namespace)
            .get_opt(&app.name)
            .await
            .map(|o| o.map(to_json))
            .map_err(err)
    }

    async fn list_apps(
        &self,
        selector: &str,
        project: Option<&str>,
        namespaces: &[String],
    ) -> Result<Vec<Value>, ArgoError> {
        let mut out = Vec::new();
        for ns in namespaces {
            let list = self
                .api(ns)
                .list(&ListParams::default().labels(selector))
                .await
                .map_err(err)?;
            out.extend(
                list.items
                    .into_iter()
                    .map(to_json)
                    .filter(|a| project.is_none_or(|p| a["spec"]["project"].as_str() == Some(p))),
            );
        }
        Ok(out)
    }

    /// Carry out `step` once; `retried`: an earlier attempt may have landed unanswered.
    async fn run_step(&self, app: &AppRef, step: &Step, retried: bool) -> Result<(), ArgoError> {
        let api = self.api(&app.namespace);
        let merge = |v: Value| Patch::Merge(v);
        match step {
            Step::Patch { patch } => api
                .patch(&app.name, &PatchParams::default(), &merge(patch.clone()))
                .await
                .map(|_| ())
                .map_err(err),
            Step::Sync(s) => {
                let current = api.get(&app.name).await.map_err(err)?;
                let current = to_json(current);
                if retried
                    && (is_this_sync(&current["operation"], s)
                        || is_this_sync(&current["status"]["operationState"]["operation"], s))
                {
                    tracing::info!("retried sync found its own operation set; counted as done");
                    return Ok(());
                }
                if !current["operation"].is_null() {
                    return Err(ArgoError::Refused {
                        status: 409,
                        message: "another operation is already in progress".into(),
                    });
                }
                // The resourceVersion makes the API server refuse the patch (409) if the
                // object changed since we looked: no operation is overwritten.
                let patch = json!({
                    "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
                    "operation": operation(s),
                });
                api.patch(&app.name, &PatchParams::default(), &merge(patch))
                    .await
                    .map(|_| ())
                    .map_err(err)
            }
            Step::Refresh { hard } => {
                let patch = json!({"metadata": {"annotations": {
                    "argocd.argoproj.io/refresh": if *hard { "hard" } else { "normal" }
                }}});
                api.patch(&app.name, &PatchParams::default(), &merge(patch))
                    .await
                    .map(|_| ())
                    .map_err(err)
            }
            Step::Create { app: object } => {
                let obj: DynamicObject = serde_json::from_value(object.clone())
                    .map_err(|e| ArgoError::Setup(format!("application object: {e}")))?;
                match api.create(&PostParams::default(), &obj).await.map_err(err) {
                    Err(ArgoError::Refused { status: 409, .. }) if retried => {
                        tracing::info!(
                            "retried create found the Application there; counted as done"
                        );
                        Ok(())
                    }
                    other => other.map(|_| ()),
                }
            }
            Step::Delete {
                cascade,
                propagation_policy,
            } => {
                if *cascade {
                    let current = to_json(api.get(&app.name).await.map_err(err)?);
                    let finalizer = if propagation_policy == "background" {
                        "resources-finalizer.argocd.argoproj.io/background"
                    } else {
                        "resources-finalizer.argocd.argoproj.io"
                    };
                    let mut finalizers: Vec<Value> = current["metadata"]["finalizers"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    if !finalizers.iter().any(|f| f == finalizer) {
                        finalizers.push(json!(finalizer));
                        let patch = json!({"metadata": {
                            "resourceVersion": current["metadata"]["resourceVersion"],
                            "finalizers": finalizers,
                        }});
                        api.patch(&app.name, &PatchParams::default(), &merge(patch))
                            .await
                            .map_err(err)?;
                    }
                }
                let dp = DeleteParams {
                    propagation_policy: Some(if propagation_policy == "background" {
                        PropagationPolicy::Background
                    } else {
                        PropagationPolicy::Foreground
                    }),
                    ..DeleteParams::default()
                };
                match api.delete(&app.name, &dp).await.map_err(err) {
                    Err(ArgoError::Refused { status: 404, .. }) if retried => {
                        tracing::info!(
                            "retried delete found the Application gone; counted as done"
                        );
                        Ok(())
                    }
                    other => other.map(|_| ()),
                }
            }
        }
    }
}
