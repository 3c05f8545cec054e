//! A TEST DOUBLE of the Argo CD API server (not Argo CD): the read endpoints the emit flow's
//! Argo CD source uses, and the write endpoints the react flow calls, with the rules of
//! Argo CD 3.6's server (../shared/argocd/API-NOTES.md). What it enforces:
//!
//! - Transport, in the real server's order. A non-GET request (DELETE too) whose whole,
//!   lower-cased `Content-Type` is not `application/json` gets 415 before anything else
//!   (`application/json; charset=utf-8` too); like Argo CD's `enforceContentTypes`, that
//!   answer is a plain-text `Invalid content type`, not a JSON error body. Then the path,
//!   method and query parameters are checked against ../shared/argocd/swagger.json (404
//!   otherwise); for an operation with a body, a body that is not JSON is 400 and the body
//!   is checked against the operation's swagger schema ([`super::swagger::check_body`],
//!   STRICTER than Argo CD: unknown fields are 400), while any body of one without (GET,
//!   DELETE) is ignored, as grpc-gateway ignores it; then a bearer token is required (401
//!   `no session information`).
//!   Booleans in the query parse as Go's `strconv.ParseBool` (400 otherwise).
//! - Every other error is Argo CD's JSON body `{error, code, message, details: []}` with the
//!   gRPC code: InvalidArgument 3 / FailedPrecondition 9 -> 400, PermissionDenied 7 -> 403,
//!   NotFound 5 -> 404, Unimplemented 12 -> 501, Unauthenticated 16 -> 401.
//! - Apps are keyed by (namespace, name); `appNamespace` (query or body) selects the
//!   namespace, [`DEFAULT_NAMESPACE`] when absent. A `name` in the body must equal the name in
//!   the path (400; STRICTER: grpc-gateway lets the path win). With `project` given, a missing
//!   app or one in another project is 404 `applications.argoproj.io "<name>" not found`;
//!   without it a missing app is 403 `permission denied`.
//! - `GET /api/v1/applications` (list, `selector`) and `GET /api/v1/stream/applications`:
//!   `{"result":{"type","application"}}` per line, or SSE `data:` frames with `:` keep-alives
//!   when asked for `text/event-stream`; without `resourceVersion` ADDED for every app first,
//!   with one only later changes. Tests can inject a mid-stream `{"error":{...}}` and cut
//!   open streams.
//! - `GET /api/v1/applications/{name}?refresh=normal|hard`: the app; a refresh is recorded
//!   ([`FakeArgoCd::refreshes`]; anything but `hard` is `normal`, as in Argo CD) and changes
//!   nothing (the real server waits for the controller to clear its annotation).
//! - `POST /api/v1/applications/{name}/sync`, checks in Argo CD's order: a sync window
//!   ([`FakeArgoCd::block_sync_window`]) is 403 `Cannot sync: Blocked by sync window`; under
//!   auto-sync (`spec.syncPolicy.automated` present, `enabled` not false) a `revision` other
//!   than `spec.source.targetRevision` (or `HEAD`) is 400 `Cannot sync to <rev>: auto-sync
//!   currently set to <targetRevision>`; `.operation` set or `status.operationState.phase`
//!   `Running` is 400 `another operation is already in progress`. Otherwise `.operation` is
//!   set as Argo CD builds it (REST `strategy` -> `syncStrategy`, `syncOptions.items` -> flat
//!   `syncOptions`, `retryStrategy` -> `retry`, `infos` -> `info`, `initiatedBy.username` =
//!   the token's subject [`FakeArgoCd::subject`]); MODIFIED on the stream, the app returned.
//!   The revision is kept as given (Argo CD resolves it to a commit first).
//! - `POST /api/v1/applications/{name}/rollback`: under auto-sync (and not `dryRun`) 400
//!   `rollback cannot be initiated when auto-sync is enabled`; an `id` not in
//!   `status.history` 400 `application <name> does not have deployment with id <id>`; an
//!   operation in progress 400; otherwise `.operation.sync` takes the history entry's
//!   revision(s) and source(s), with the `apply` strategy, as Argo CD does.
//! - `PATCH /api/v1/applications/{name}` `{patch, patchType}`: `merge` is an RFC 7386 merge
//!   patch of the app; a patch that is not JSON is 400; `json` (RFC 6902) is 400 "not
//!   supported by the test double", any other type 400. STRICTER: a patch that changes
//!   anything but `spec`, `metadata.labels`, `metadata.annotations` and
//!   `metadata.finalizers` is 400 (Argo CD copies only those and silently drops the rest),
//!   and the result must still be a valid `v1alpha1Application` by swagger (400 naming the
//!   field). MODIFIED on the stream when something changed.
//! - `POST /api/v1/applications?upsert=&validate=` with an Application: `.operation`
//!   dropped; a missing name, or a name or namespace that is not a DNS-1123 label, is 400.
//!   An existing app whose spec, labels, annotations and finalizers equal the request's
//!   (what Argo CD compares) is returned as is; a different one is 400 `existing application
//!   spec is different, use upsert flag to force update` unless `upsert=true`, which copies
//!   those four fields over (MODIFIED). A new app gets `uid`, `creationTimestamp`,
//!   `generation` and `resourceVersion` (ADDED). `validate` is accepted and not acted on.
//! - `DELETE /api/v1/applications/{name}?cascade=&propagationPolicy=`: `{}`, the app gone at
//!   once (DELETED; the real controller first deletes its resources when cascading) and the
//!   deletion recorded ([`FakeArgoCd::deletions`]). `propagationPolicy` other than
//!   `foreground`/`background` is 400, so is one with `cascade=false`.
//! - Anything else is 501 with an Argo CD error body.
//!
//! Every write bumps the app's `resourceVersion` (one counter for the double) and, when the
//! spec changes, `metadata.generation`.
//!
//! The double is also a fake application controller the test drives:
//! [`FakeArgoCd::complete_operations`] (or on a timer, [`FakeArgoCd::auto_complete`])
//! finishes every requested or running operation as Argo CD's controller reports a success;
//! [`FakeArgoCd::set_health`] and [`FakeArgoCd::set_operation_running`] set the states a
//! gateway guards on. Every request is logged ([`FakeArgoCd::requests`],
//! [`FakeArgoCd::bodies`]). Not modelled: RBAC beyond the one token, projects and their
//! destinations, `application.namespaces` (any namespace is served), `validate` checks,
//! terminate, resource actions, manifests, dry runs beyond not recording history.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Map, Value, json};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, broadcast};

/// The namespace of an app when a request gives no `appNamespace` (Argo CD's own namespace).
pub const DEFAULT_NAMESPACE: &str = "argocd";
/// The subject of the double's token unless started with [`FakeArgoCd::start_as`].
pub const DEFAULT_SUBJECT: &str = "argocd-cdevents";
/// Argo CD's `status.history` length when `spec.revisionHistoryLimit` is not set.
const DEFAULT_HISTORY_LIMIT: usize = 10;

#[derive(Clone, Debug)]
pub struct Change {
    pub rv: u64,
    pub ty: &'static str,
    pub app: Value,
}

/// One `DELETE /api/v1/applications/{name}` the double carried out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deletion {
    /// `namespace/name`.
    pub app: String,
    /// `cascade` (Argo CD's default is true).
    pub cascade: bool,
    /// `propagationPolicy` as given, lower-cased (`""` when absent).
    pub propagation_policy: String,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    apps: Vec<Value>,
    log: Vec<Change>,
    requests: Vec<String>,
    bodies: Vec<(String, String, Value)>,
    refreshes: Vec<(String, String)>,
    deletions: Vec<Deletion>,
    /// `namespace/name` of apps whose syncs a sync window blocks.
    blocked: HashSet<String>,
    /// Fail the next stream after this many messages with a mid-stream error.
    fail_after: Option<usize>,
    streams_opened: usize,
    controller: Option<tokio::task::AbortHandle>,
}

#[derive(Clone)]
pub struct FakeArgoCd {
    inner: Arc<Mutex<Inner>>,
    changes: broadcast::Sender<Option<Change>>,
    opened: Arc<Notify>,
    pub token: String,
    /// The token's subject: `initiatedBy.username` of the operations the double starts. Set
    /// it with [`FakeArgoCd::start_as`]; the server keeps the value it started with.
    pub subject: String,
    pub url: String,
}

fn key(app: &Value) -> (String, String) {
    (
        app["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        app["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

fn argo_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": message, "code": code, "message": message, "details": []})),
    )
        .into_response()
}

/// An error answer (boxed: a `Response` is large).
type Rejection = Box<Response>;

/// An Argo CD error answer from its gRPC code.
fn grpc_error(code: u32, message: impl Into<String>) -> Rejection {
    let status = match code {
        3 | 9 => StatusCode::BAD_REQUEST,
        5 => StatusCode::NOT_FOUND,
        6 => StatusCode::CONFLICT,
        7 => StatusCode::FORBIDDEN,
        12 => StatusCode::NOT_IMPLEMENTED,
        16 => StatusCode::UNAUTHORIZED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Box::new(argo_error(status, code, &message.into()))
}

const INVALID_ARGUMENT: u32 = 3;
const NOT_FOUND: u32 = 5;
const PERMISSION_DENIED: u32 = 7;
const FAILED_PRECONDITION: u32 = 9;

fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A DNS-1123 label: at most 63 of `[a-z0-9-]`, starting and ending alphanumeric.
fn dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Go's `strconv.ParseBool`, as grpc-gateway parses a boolean query parameter.
fn parse_bool(name: &str, v: &str) -> Result<bool, Rejection> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(grpc_error(
            INVALID_ARGUMENT,
            format!("{name}: strconv.ParseBool: parsing {v:?}: invalid syntax"),
        )),
    }
}

/// Auto-sync is on: `spec.syncPolicy.automated` present and `enabled` not false.
fn auto_sync(app: &Value) -> bool {
    let automated = &app["spec"]["syncPolicy"]["automated"];
    automated.is_object() && automated["enabled"] != false
}

/// The single source (`spec.source`, else the first of `spec.sources`).
fn first_source(app: &Value) -> &Value {
    match &app["spec"]["source"] {
        Value::Null => &app["spec"]["sources"][0],
        s => s,
    }
}

fn target_revision(app: &Value) -> String {
    first_source(app)["targetRevision"]
        .as_str()
        .filter(|r| !r.is_empty())
        .unwrap_or("HEAD")
        .to_string()
}

fn project_of(app: &Value) -> &str {
    app["spec"]["project"]
        .as_str()
        .filter(|p| !p.is_empty())
        .unwrap_or("default")
}

/// Argo CD's `QualifiedName`: `name` in the control-plane namespace, else `namespace/name`.
fn qualified_name(ns: &str, name: &str) -> String {
    if ns == DEFAULT_NAMESPACE {
        name.to_string()
    } else {
        format!("{ns}/{name}")
    }
}

fn operation_in_progress(app: &Value) -> bool {
    !app["operation"].is_null() || app["status"]["operationState"]["phase"] == "Running"
}

/// A deterministic stand-in for the commit `revision` of `repo` resolves to: 40 hex digits
/// (a revision that already is one is kept).
pub fn fake_sha(repo: &str, revision: &str) -> String {
    if revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit()) {
        return revision.to_ascii_lowercase();
    }
    let seed = format!("{repo}@{revision}");
    let a = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, seed.as_bytes()).simple();
    let b = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, seed.as_bytes()).simple();
    format!("{a}{b}")[..40].to_string()
}

/// What the controller reports as the synced revision of `source` when the operation named
/// none: a Helm chart's version as is, a Git revision as a commit.
fn resolve(source: &Value) -> String {
    let target = source["targetRevision"]
        .as_str()
        .filter(|r| !r.is_empty())
        .unwrap_or("HEAD");
    if source["chart"].as_str().is_some_and(|c| !c.is_empty()) {
        target.to_string()
    } else {
        fake_sha(source["repoURL"].as_str().unwrap_or_default(), target)
    }
}

/// An image reference without its tag or digest (`host:5000/app:1.0` -> `host:5000/app`).
fn image_name(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

/// `status.summary.images` after deploying `source`: each kustomize image override
/// (`[old=]new[:tag|@digest]`) replaces the image it names, reported as Argo CD reports live
/// images (`new:tag`).
fn images_after(current: &Value, source: &Value) -> Value {
    let mut images: Vec<String> = current
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    for spec in source["kustomize"]["images"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let (old, new) = match spec.split_once('=') {
            Some((old, new)) => (image_name(old).to_string(), new.to_string()),
            None => (image_name(spec).to_string(), spec.to_string()),
        };
        let new_name = image_name(&new).to_string();
        let same = |i: &str| image_name(i) == old || image_name(i) == new_name;
        match images.iter().position(|i| same(i)) {
            Some(pos) => {
                images[pos] = new;
                let mut idx = 0;
                images.retain(|i| {
                    let keep = idx == pos || !same(i);
                    idx += 1;
                    keep
                });
            }
            None => images.push(new),
        }
    }
    json!(images)
}

impl FakeArgoCd {
    pub async fn start(token: &str) -> FakeArgoCd {
        FakeArgoCd::start_as(token, DEFAULT_SUBJECT).await
    }

    /// Start the double with a token whose subject is `subject`.
    pub async fn start_as(token: &str, subject: &str) -> FakeArgoCd {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let url = format!(
            "http://{}",
            listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
        );
        let (changes, _) = broadcast::channel(4096);
        let fake = FakeArgoCd {
            inner: Arc::new(Mutex::new(Inner::default())),
            changes,
            opened: Arc::new(Notify::new()),
            token: token.to_string(),
            subject: subject.to_string(),
            url,
        };
        let app = Router::new().fallback(handle).with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Apply a watch-style change (`ADDED`, `MODIFIED`, `DELETED`) to the fake's apps.
    pub fn apply(&self, ty: &'static str, app: Value) {
        let change = {
            let mut inner = self.lock();
            Self::record(&mut inner, ty, app)
        };
        let _ = self.changes.send(Some(change));
    }

    fn record(inner: &mut Inner, ty: &'static str, mut app: Value) -> Change {
        inner.rv += 1;
        let rv = inner.rv;
        app["metadata"]["resourceVersion"] = json!(rv.to_string());
        let k = key(&app);
        inner.apps.retain(|a| key(a) != k);
        if ty != "DELETED" {
            inner.apps.push(app.clone());
        }
        let change = Change { rv, ty, app };
        inner.log.push(change.clone());
        change
    }

    /// Store a written app (MODIFIED, or ADDED when new): `generation` moves on when the spec
    /// changed. Returns the stored object.
    fn write(&self, mut app: Value) -> Value {
        let change = {
            let mut inner = self.lock();
            let k = key(&app);
            let prev = inner.apps.iter().find(|a| key(a) == k).cloned();
            let ty = match &prev {
                Some(p) => {
                    let generation = p["metadata"]["generation"].as_i64().unwrap_or(1);
                    let changed = p["spec"] != app["spec"];
                    app["metadata"]["generation"] =
                        json!(if changed { generation + 1 } else { generation });
                    "MODIFIED"
                }
                None => {
                    if app["metadata"]["generation"].is_null() {
                        app["metadata"]["generation"] = json!(1);
                    }
                    "ADDED"
                }
            };
            Self::record(&mut inner, ty, app)
        };
        let stored = change.app.clone();
        let _ = self.changes.send(Some(change));
        stored
    }

    /// Add an app as Argo CD would have it after creation (`uid`, `creationTimestamp`,
    /// `generation` set when missing, namespace [`DEFAULT_NAMESPACE`] when none): ADDED.
    pub fn insert(&self, mut app: Value) -> Value {
        let meta = &mut app["metadata"];
        if meta["namespace"].as_str().is_none_or(str::is_empty) {
            meta["namespace"] = json!(DEFAULT_NAMESPACE);
        }
        if meta["uid"].is_null() {
            meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
        }
        if meta["creationTimestamp"].is_null() {
            meta["creationTimestamp"] = json!(now_rfc3339());
        }
        if meta["generation"].is_null() {
            meta["generation"] = json!(1);
        }
        let change = {
            let mut inner = self.lock();
            Self::record(&mut inner, "ADDED", app)
        };
        let stored = change.app.clone();
        let _ = self.changes.send(Some(change));
        stored
    }

    /// The app `namespace/name` as the double holds it.
    pub fn app(&self, namespace: &str, name: &str) -> Option<Value> {
        let k = (namespace.to_string(), name.to_string());
        self.lock().apps.iter().find(|a| key(a) == k).cloned()
    }

    /// Change the app `namespace/name` with `f` and store it (MODIFIED). Panics if missing.
    fn modify(&self, namespace: &str, name: &str, f: impl FnOnce(&mut Value)) -> Value {
        let mut app = self
            .app(namespace, name)
            .unwrap_or_else(|| panic!("the double has no app {namespace}/{name}"));
        f(&mut app);
        self.write(app)
    }

    /// Set `status.health.status` (`Healthy`, `Degraded`, `Progressing`, ...): MODIFIED.
    pub fn set_health(&self, namespace: &str, name: &str, status: &str) -> Value {
        self.modify(namespace, name, |app| {
            app["status"]["health"] = json!({"status": status});
        })
    }

    /// Put the app in the middle of an operation, as the controller has it while syncing:
    /// `.operation` set (kept if already there) and `status.operationState.phase: Running`.
    pub fn set_operation_running(&self, namespace: &str, name: &str) -> Value {
        self.modify(namespace, name, |app| {
            if app["operation"].is_null() {
                app["operation"] = json!({
                    "sync": {"revision": target_revision(app)},
                    "initiatedBy": {"username": "admin"},
                });
            }
            app["status"]["operationState"] = json!({
                "phase": "Running",
                "message": "one or more tasks are running",
                "operation": app["operation"].clone(),
                "startedAt": now_rfc3339(),
            });
        })
    }

    /// A sync window blocks syncs of `namespace/name` from now on (403).
    pub fn block_sync_window(&self, namespace: &str, name: &str) {
        self.lock().blocked.insert(format!("{namespace}/{name}"));
    }

    /// The sync window of `namespace/name` is over.
    pub fn unblock_sync_window(&self, namespace: &str, name: &str) {
        self.lock().blocked.remove(&format!("{namespace}/{name}"));
    }

    /// The fake controller: finish every requested (`.operation` set) or running operation
    /// as Argo CD's controller reports a success. Writes `status.operationState` (phase
    /// `Succeeded`, the operation, `syncResult` with the revision and source, `startedAt`,
    /// `finishedAt`); the revision is the operation's, else `spec`'s target resolved
    /// ([`fake_sha`] for Git). Unless a dry run: appends `status.history` (`id` one more than
    /// the last, from 0 as Argo CD counts; trimmed to `spec.revisionHistoryLimit` or 10),
    /// sets `status.sync` Synced at that revision, `status.health` Healthy and
    /// `status.summary.images` from the source's kustomize images. Clears `.operation`;
    /// MODIFIED for each. Returns how many operations it finished.
    pub fn complete_operations(&self) -> usize {
        let pending: Vec<Value> = self
            .lock()
            .apps
            .iter()
            .filter(|a| operation_in_progress(a))
            .cloned()
            .collect();
        let n = pending.len();
        for app in pending {
            self.write(completed(app));
        }
        n
    }

    /// Run [`FakeArgoCd::complete_operations`] every `every` from now on (replacing an
    /// earlier timer).
    pub fn auto_complete(&self, every: Duration) {
        let fake = self.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                fake.complete_operations();
            }
        });
        if let Some(old) = self.lock().controller.replace(task.abort_handle()) {
            old.abort();
        }
    }

    /// Stop the timer started by [`FakeArgoCd::auto_complete`].
    pub fn stop_auto_complete(&self) {
        if let Some(old) = self.lock().controller.take() {
            old.abort();
        }
    }

    /// The next stream fails with a mid-stream error after `n` messages.
    pub fn fail_next_stream_after(&self, n: usize) {
        self.lock().fail_after = Some(n);
    }

    /// End every open stream (as a restarted server or cut connection would).
    pub fn cut_streams(&self) {
        let _ = self.changes.send(None);
    }

    pub fn streams_opened(&self) -> usize {
        self.lock().streams_opened
    }

    /// Wait until at least `n` streams have been opened in total.
    pub async fn wait_streams(&self, n: usize) {
        loop {
            let notified = self.opened.notified();
            if self.streams_opened() >= n {
                return;
            }
            notified.await;
        }
    }

    /// Every request received, as `METHOD path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    /// Every request received, as (method, path?query, body): the body parsed as JSON,
    /// `Null` when empty, a JSON string holding the raw text when it is not JSON.
    pub fn bodies(&self) -> Vec<(String, String, Value)> {
        self.lock().bodies.clone()
    }

    /// Refreshes asked for with `GET .../{name}?refresh=`: (`namespace/name`, `normal|hard`).
    pub fn refreshes(&self) -> Vec<(String, String)> {
        self.lock().refreshes.clone()
    }

    /// Deletions carried out, in order.
    pub fn deletions(&self) -> Vec<Deletion> {
        self.lock().deletions.clone()
    }

    /// The app `namespace/name` as a request with `project` may see it (Argo CD's
    /// `getAppEnforceRBAC`): missing or in another project is 404 with a project, a missing
    /// app 403 without.
    fn lookup(&self, ns: &str, name: &str, project: Option<&str>) -> Result<Value, Rejection> {
        let app = self.app(ns, name);
        match (app, project) {
            (Some(app), None) => Ok(app),
            (Some(app), Some(p)) if project_of(&app) == p => Ok(app),
            (_, Some(_)) => Err(grpc_error(
                NOT_FOUND,
                format!("applications.argoproj.io \"{name}\" not found"),
            )),
            (None, None) => Err(grpc_error(PERMISSION_DENIED, "permission denied")),
        }
    }
}

/// `app` after the fake controller finished its operation (see
/// [`FakeArgoCd::complete_operations`]).
fn completed(mut app: Value) -> Value {
    let now = now_rfc3339();
    let state = &app["status"]["operationState"];
    let running = state["phase"] == "Running";
    let op = if app["operation"].is_null() {
        state["operation"].clone()
    } else {
        app["operation"].clone()
    };
    let started = match state["startedAt"].as_str() {
        Some(s) if running => s.to_string(),
        _ => now.clone(),
    };
    let sync = &op["sync"];
    let dry_run = sync["dryRun"] == true;
    let multi = app["spec"]["source"].is_null() && app["spec"]["sources"].is_array();
    let mut result = Map::new();
    let mut entry = Map::new();
    if multi {
        let sources = if sync["sources"].is_array() {
            sync["sources"].clone()
        } else {
            app["spec"]["sources"].clone()
        };
        let given: Vec<&str> = sync["revisions"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let revisions: Vec<String> = sources
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, s)| match given.get(i) {
                Some(r) if !r.is_empty() => r.to_string(),
                _ => resolve(s),
            })
            .collect();
        result.insert("revisions".into(), json!(revisions));
        result.insert("sources".into(), sources);
    } else {
        let source = if sync["source"].is_object() {
            sync["source"].clone()
        } else {
            app["spec"]["source"].clone()
        };
        let revision = match sync["revision"].as_str() {
            Some(r) if !r.is_empty() => r.to_string(),
            _ => resolve(&source),
        };
        result.insert("revision".into(), json!(revision));
        result.insert("source".into(), source);
    }
    for (k, v) in &result {
        entry.insert(k.clone(), v.clone());
    }
    app["status"]["operationState"] = json!({
        "phase": "Succeeded",
        "message": "successfully synced (all tasks run)",
        "operation": op,
        "syncResult": Value::Object(result.clone()),
        "startedAt": started,
        "finishedAt": now,
    });
    if !dry_run {
        let mut history: Vec<Value> = app["status"]["history"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let id = history
            .iter()
            .filter_map(|h| h["id"].as_i64())
            .max()
            .map_or(0, |m| m + 1);
        entry.insert("id".into(), json!(id));
        entry.insert("deployStartedAt".into(), json!(started));
        entry.insert("deployedAt".into(), json!(now));
        entry.insert("initiatedBy".into(), op["initiatedBy"].clone());
        history.push(Value::Object(entry));
        let limit = app["spec"]["revisionHistoryLimit"]
            .as_u64()
            .map_or(DEFAULT_HISTORY_LIMIT, |l| l as usize);
        let excess = history.len().saturating_sub(limit);
        history.drain(..excess);
        app["status"]["history"] = json!(history);
        let mut sync_status = json!({"status": "Synced"});
        for k in ["revision", "revisions"] {
            if let Some(v) = result.get(k) {
                sync_status[k] = v.clone();
            }
        }
        sync_status["comparedTo"] = json!({"destination": app["spec"]["destination"].clone()});
        for k in ["source", "sources"] {
            if let Some(v) = result.get(k) {
                sync_status["comparedTo"][k] = v.clone();
            }
        }
        app["status"]["sync"] = sync_status;
        app["status"]["health"] = json!({"status": "Healthy"});
        let mut images = app["status"]["summary"]["images"].clone();
        let deployed: Vec<Value> = match (result.get("source"), result.get("sources")) {
            (Some(s), _) => vec![s.clone()],
            (None, Some(Value::Array(ss))) => ss.clone(),
            _ => vec![],
        };
        for source in &deployed {
            images = images_after(&images, source);
        }
        app["status"]["summary"]["images"] = images;
    }
    app["status"]["reconciledAt"] = json!(now);
    if let Some(m) = app.as_object_mut() {
        m.remove("operation");
    }
    app
}

/// A request as the handlers see it.
struct Call {
    path: String,
    query: Vec<(String, String)>,
    body: Value,
}

impl Call {
    fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn body_str(&self, name: &str) -> Option<&str> {
        self.body[name].as_str().filter(|v| !v.is_empty())
    }

    /// `appNamespace` (query, else body), else the default namespace.
    fn namespace(&self) -> String {
        self.query("appNamespace")
            .or_else(|| self.body_str("appNamespace"))
            .unwrap_or(DEFAULT_NAMESPACE)
            .to_string()
    }

    fn project(&self) -> Option<&str> {
        self.query("project").or_else(|| self.body_str("project"))
    }

    /// The `{name}` of `/api/v1/applications/{name}[/...]`, checked against the body's.
    fn name(&self) -> Result<String, Rejection> {
        let name = self
            .path
            .strip_prefix("/api/v1/applications/")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default()
            .to_string();
        match self.body_str("name") {
            Some(b) if b != name => Err(grpc_error(
                INVALID_ARGUMENT,
                format!("name in the body ({b:?}) does not match the name in the path ({name:?})"),
            )),
            _ => Ok(name),
        }
    }
}

async fn handle(State(fake): State<FakeArgoCd>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| path.clone(), |p| p.to_string());
    let query: Vec<(String, String)> = reqwest::Url::parse(&format!("http://double{target}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let parsed: Result<Value, String> = if bytes.is_empty() {
        Ok(Value::Null)
    } else {
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    };
    {
        let mut inner = fake.lock();
        inner.requests.push(format!("{method} {}", parts.uri));
        let logged = parsed
            .clone()
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        inner.bodies.push((method.clone(), target.clone(), logged));
    }
    // Argo CD's enforceContentTypes wraps the whole /api/ handler: first, and plain text.
    if method != "GET" {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if content_type != "application/json" {
            return (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "Invalid content type\n",
            )
                .into_response();
        }
    }
    if let Err(e) = super::swagger::check(&method, &path, &query) {
        return argo_error(StatusCode::NOT_FOUND, 5, &e);
    }
    if super::swagger::takes_body(&method, &path) {
        let body = match &parsed {
            Ok(b) => b,
            Err(e) => return *grpc_error(INVALID_ARGUMENT, e.clone()),
        };
        if let Err(e) = super::swagger::check_body(&method, &path, body) {
            return *grpc_error(INVALID_ARGUMENT, e);
        }
    }
    let authorized = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", fake.token));
    if !authorized {
        return argo_error(StatusCode::UNAUTHORIZED, 16, "no session information");
    }
    // grpc-gateway reads no body for an operation without one (DELETE, GET).
    let body = if super::swagger::takes_body(&method, &path) {
        parsed.unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    let call = Call {
        path: path.clone(),
        query: query.clone(),
        body,
    };
    let segments: Vec<&str> = path
        .trim_start_matches("/api/v1/applications")
        .split('/')
        .skip(1)
        .collect();
    let under_applications = path.starts_with("/api/v1/applications/");
    let result = match (method.as_str(), path.as_str()) {
        ("GET", "/api/v1/applications") => Ok(list(&fake, &query)),
        ("GET", "/api/v1/stream/applications") => {
            Ok(stream(fake, &parts.headers, &query, selector(&query)))
        }
        ("POST", "/api/v1/applications") => create(&fake, &call),
        _ if under_applications => match (method.as_str(), segments.as_slice()) {
            ("GET", [_]) => get(&fake, &call),
            ("PATCH", [_]) => patch(&fake, &call),
            ("DELETE", [_]) => delete(&fake, &call),
            ("POST", [_, "sync"]) => sync(&fake, &call),
            ("POST", [_, "rollback"]) => rollback(&fake, &call),
            _ => Err(unimplemented()),
        },
        _ => Err(unimplemented()),
    };
    result.unwrap_or_else(|e| *e)
}

fn unimplemented() -> Rejection {
    Box::new(argo_error(
        StatusCode::NOT_IMPLEMENTED,
        12,
        "not implemented by the test double",
    ))
}

fn ok(v: Value) -> Result<Response, Rejection> {
    Ok(axum::Json(v).into_response())
}

/// The label selector of `?selector=` as a predicate over apps.
fn selector(query: &[(String, String)]) -> impl Fn(&Value) -> bool + Send + 'static {
    let selector = query
        .iter()
        .find(|(k, _)| k == "selector")
        .map(|(_, v)| v.clone());
    move |app: &Value| match &selector {
        None => true,
        Some(sel) => sel.split(',').all(|term| match term.split_once('=') {
            Some((k, v)) => app["metadata"]["labels"][k] == v,
            None => !app["metadata"]["labels"][term].is_null(),
        }),
    }
}

fn list(fake: &FakeArgoCd, query: &[(String, String)]) -> Response {
    let matches = selector(query);
    let inner = fake.lock();
    let items: Vec<Value> = inner.apps.iter().filter(|a| matches(a)).cloned().collect();
    axum::Json(json!({"metadata": {"resourceVersion": inner.rv.to_string()}, "items": items}))
        .into_response()
}

fn get(fake: &FakeArgoCd, call: &Call) -> Result<Response, Rejection> {
    let name = call.name()?;
    let ns = call.namespace();
    let app = fake.lookup(&ns, &name, call.project())?;
    // `refresh=` (even empty) asks for one; anything but `hard` is a normal refresh.
    if let Some((_, kind)) = call.query.iter().find(|(k, _)| k == "refresh") {
        let kind = if kind == "hard" { "hard" } else { "normal" };
        fake.lock()
            .refreshes
            .push((format!("{ns}/{name}"), kind.to_string()));
    }
    ok(app)
}

fn sync(fake: &FakeArgoCd, call: &Call) -> Result<Response, Rejection> {
    let name = call.name()?;
    let ns = call.namespace();
    let mut app = fake.lookup(&ns, &name, call.project())?;
    if fake.lock().blocked.contains(&format!("{ns}/{name}")) {
        return Err(grpc_error(
            PERMISSION_DENIED,
            "Cannot sync: Blocked by sync window",
        ));
    }
    let req = &call.body;
    if auto_sync(&app)
        && let Some(rev) = call.body_str("revision")
        && rev != target_revision(&app)
    {
        return Err(grpc_error(
            FAILED_PRECONDITION,
            format!(
                "Cannot sync to {rev}: auto-sync currently set to {}",
                target_revision(&app)
            ),
        ));
    }
    if operation_in_progress(&app) {
        return Err(grpc_error(
            FAILED_PRECONDITION,
            "another operation is already in progress",
        ));
    }
    let mut sync = Map::new();
    let copy = |sync: &mut Map<String, Value>, from: &str, to: &str| {
        let v = &req[from];
        let empty = v.is_null()
            || v == false
            || v.as_str() == Some("")
            || v.as_array().is_some_and(|a| a.is_empty());
        if !empty {
            sync.insert(to.to_string(), v.clone());
        }
    };
    copy(&mut sync, "revision", "revision");
    copy(&mut sync, "revisions", "revisions");
    copy(&mut sync, "prune", "prune");
    copy(&mut sync, "dryRun", "dryRun");
    copy(&mut sync, "strategy", "syncStrategy");
    copy(&mut sync, "resources", "resources");
    copy(&mut sync, "manifests", "manifests");
    let options = req["syncOptions"]["items"].clone();
    if options.as_array().is_some_and(|a| !a.is_empty()) {
        sync.insert("syncOptions".into(), options);
    }
    let mut op = json!({
        "sync": Value::Object(sync),
        "initiatedBy": {"username": fake.subject},
    });
    if req["infos"].as_array().is_some_and(|a| !a.is_empty()) {
        op["info"] = req["infos"].clone();
    }
    if req["retryStrategy"].is_object() {
        op["retry"] = req["retryStrategy"].clone();
    }
    app["operation"] = op;
    ok(fake.write(app))
}

fn rollback(fake: &FakeArgoCd, call: &Call) -> Result<Response, Rejection> {
    let name = call.name()?;
    let ns = call.namespace();
    let mut app = fake.lookup(&ns, &name, call.project())?;
    let req = &call.body;
    let dry_run = req["dryRun"] == true;
    if auto_sync(&app) && !dry_run {
        return Err(grpc_error(
            FAILED_PRECONDITION,
            "rollback cannot be initiated when auto-sync is enabled",
        ));
    }
    let id = req["id"].as_i64().unwrap_or(0);
    let entry = app["status"]["history"]
        .as_array()
        .and_then(|h| h.iter().find(|e| e["id"].as_i64() == Some(id)))
        .cloned()
        .ok_or_else(|| {
            grpc_error(
                INVALID_ARGUMENT,
                format!(
                    "application {} does not have deployment with id {id}",
                    qualified_name(&ns, &name)
                ),
            )
        })?;
    if operation_in_progress(&app) {
        return Err(grpc_error(
            FAILED_PRECONDITION,
            "another operation is already in progress",
        ));
    }
    let mut sync = json!({"syncStrategy": {"apply": {}}});
    for k in ["revision", "revisions", "source", "sources"] {
        if !entry[k].is_null() {
            sync[k] = entry[k].clone();
        }
    }
    if dry_run {
        sync["dryRun"] = json!(true);
    }
    if req["prune"] == true {
        sync["prune"] = json!(true);
    }
    app["operation"] = json!({
        "sync": sync,
        "initiatedBy": {"username": fake.subject},
    });
    ok(fake.write(app))
}

/// The parts of an Application an update through Argo CD may change.
fn updatable(app: &Value) -> Value {
    let meta = &app["metadata"];
    json!({
        "spec": app["spec"],
        "labels": meta["labels"],
        "annotations": meta["annotations"],
        "finalizers": meta["finalizers"],
    })
}

/// The first field outside `spec`, `metadata.labels|annotations|finalizers` that differs.
fn changed_elsewhere(before: &Value, after: &Value) -> Option<String> {
    let keys = |v: &Value| -> Vec<String> {
        v.as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut top = keys(before);
    top.extend(keys(after));
    for k in top.iter().filter(|k| k.as_str() != "spec") {
        if k == "metadata" {
            let mut mk = keys(&before[k]);
            mk.extend(keys(&after[k]));
            let skip = ["labels", "annotations", "finalizers"];
            if let Some(f) = mk
                .iter()
                .filter(|f| !skip.contains(&f.as_str()))
                .find(|f| before[k][f.as_str()] != after[k][f.as_str()])
            {
                return Some(format!("metadata.{f}"));
            }
        } else if before[k.as_str()] != after[k.as_str()] {
            return Some(k.clone());
        }
    }
    None
}

fn patch(fake: &FakeArgoCd, call: &Call) -> Result<Response, Rejection> {
    let name = call.name()?;
    let ns = call.namespace();
    let app = fake.lookup(&ns, &name, call.project())?;
    let patch_type = call.body_str("patchType").unwrap_or("");
    let text = call.body_str("patch").unwrap_or("");
    let patched = match patch_type {
        "merge" => {
            let patch: Value = serde_json::from_str(text)
                .map_err(|e| grpc_error(INVALID_ARGUMENT, format!("patch is not JSON: {e}")))?;
            let mut patched = app.clone();
            super::fake_kube::merge_patch(&mut patched, &patch);
            patched
        }
        "json" | "" => {
            return Err(grpc_error(
                INVALID_ARGUMENT,
                "patchType json (RFC 6902, Argo CD's default) is not supported by the test double; use merge",
            ));
        }
        other => {
            return Err(grpc_error(
                INVALID_ARGUMENT,
                format!("Patch type '{other}' is not supported"),
            ));
        }
    };
    if let Some(field) = changed_elsewhere(&app, &patched) {
        return Err(grpc_error(
            INVALID_ARGUMENT,
            format!(
                "the patch changes {field}: Argo CD only takes spec, metadata.labels, metadata.annotations and metadata.finalizers from a patch (the test double refuses the rest)"
            ),
        ));
    }
    super::swagger::check_definition("v1alpha1Application", &patched)
        .map_err(|e| grpc_error(INVALID_ARGUMENT, format!("the patched application is {e}")))?;
    if updatable(&patched) == updatable(&app) {
        return ok(app);
    }
    ok(fake.write(patched))
}

fn create(fake: &FakeArgoCd, call: &Call) -> Result<Response, Rejection> {
    let upsert = match call.query("upsert") {
        Some(v) => parse_bool("upsert", v)?,
        None => false,
    };
    if let Some(v) = call.query("validate") {
        parse_bool("validate", v)?;
    }
    let mut app = call.body.clone();
    if !app.is_object() {
        return Err(grpc_error(
            INVALID_ARGUMENT,
            "required argument 'application' is empty",
        ));
    }
    let name = app["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        return Err(grpc_error(
            INVALID_ARGUMENT,
            "metadata.name: Required value: an application needs a name",
        ));
    }
    if !dns1123_label(&name) {
        return Err(grpc_error(
            INVALID_ARGUMENT,
            format!(
                "metadata.name: Invalid value: {name:?}: not a DNS-1123 label (lower-case alphanumerics and '-', at most 63)"
            ),
        ));
    }
    let ns = app["metadata"]["namespace"]
        .as_str()
        .filter(|n| !n.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE)
        .to_string();
    if !dns1123_label(&ns) {
        return Err(grpc_error(
            INVALID_ARGUMENT,
            format!("metadata.namespace: Invalid value: {ns:?}: not a DNS-1123 label"),
        ));
    }
    app["metadata"]["namespace"] = json!(ns);
    if let Some(m) = app.as_object_mut() {
        m.remove("operation");
    }
    match fake.app(&ns, &name) {
        Some(existing) if updatable(&existing) == updatable(&app) => ok(existing),
        Some(_) if !upsert => Err(grpc_error(
            INVALID_ARGUMENT,
            "existing application spec is different, use upsert flag to force update",
        )),
        Some(mut existing) => {
            existing["spec"] = app["spec"].clone();
            for k in ["labels", "annotations", "finalizers"] {
                match &app["metadata"][k] {
                    Value::Null => {
                        if let Some(m) = existing["metadata"].as_object_mut() {
                            m.remove(k);
                        }
                    }
                    v => existing["metadata"][k] = v.clone(),
                }
            }
            ok(fake.write(existing))
        }
        None => {
            let meta = &mut app["metadata"];
            meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
            meta["creationTimestamp"] = json!(now_rfc3339());
            meta["generation"] = json!(1);
            ok(fake.write(app))
        }
    }
}

fn delete(fake: &FakeArgoCd, call: &Call) -> Result<Response, Rejection> {
    let name = call.name()?;
    let ns = call.namespace();
    let cascade = match call.query("cascade") {
        Some(v) => Some(parse_bool("cascade", v)?),
        None => None,
    };
    let policy = call
        .query("propagationPolicy")
        .unwrap_or_default()
        .to_ascii_lowercase();
    if cascade == Some(false) && !policy.is_empty() {
        return Err(grpc_error(
            INVALID_ARGUMENT,
            "cannot set propagation policy when cascading is disabled",
        ));
    }
    if !matches!(policy.as_str(), "" | "foreground" | "background") {
        return Err(grpc_error(
            INVALID_ARGUMENT,
            format!("invalid propagation policy: {policy}"),
        ));
    }
    let app = fake.lookup(&ns, &name, call.project())?;
    fake.apply("DELETED", app);
    fake.lock().deletions.push(Deletion {
        app: format!("{ns}/{name}"),
        cascade: cascade.unwrap_or(true),
        propagation_policy: policy,
    });
    ok(json!({}))
}

fn stream(
    fake: FakeArgoCd,
    headers: &HeaderMap,
    query: &[(String, String)],
    matches: impl Fn(&Value) -> bool + Send + 'static,
) -> Response {
    let sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let since: Option<u64> = query
        .iter()
        .find(|(k, _)| k == "resourceVersion")
        .and_then(|(_, v)| v.parse().ok());
    let mut rx = fake.changes.subscribe();
    let (backlog, fail_after) = {
        let mut inner = fake.lock();
        inner.streams_opened += 1;
        let backlog: Vec<Change> = match since {
            Some(rv) => inner.log.iter().filter(|c| c.rv > rv).cloned().collect(),
            None => inner
                .apps
                .iter()
                .map(|a| Change {
                    rv: inner.rv,
                    ty: "ADDED",
                    app: a.clone(),
                })
                .collect(),
        };
        (backlog, inner.fail_after.take())
    };
    fake.opened.notify_waiters();
    let frame = move |v: Value| -> String {
        if sse {
            format!("data: {v}\n\n")
        } else {
            format!("{v}\n")
        }
    };
    let out = async_stream(move |tx| async move {
        let mut sent = 0usize;
        let mut last_rv = since.unwrap_or(0);
        if sse {
            let _ = tx.send(":\n".to_string()).await;
        }
        let mut pending: std::collections::VecDeque<Change> = backlog.into();
        loop {
            let change = match pending.pop_front() {
                Some(c) => c,
                None => match rx.recv().await {
                    Ok(Some(c)) => c,
                    Ok(None) | Err(_) => return,
                },
            };
            if change.rv <= last_rv && since.is_some() {
                continue;
            }
            last_rv = last_rv.max(change.rv);
            if !matches(&change.app) {
                continue;
            }
            if fail_after == Some(sent) {
                let err = json!({"error": {"grpc_code": 14, "http_code": 503, "message": "transport is closing", "http_status": "Service Unavailable", "details": []}});
                let _ = tx.send(frame(err)).await;
                return;
            }
            let msg = json!({"result": {"type": change.ty, "application": change.app}});
            if tx.send(frame(msg)).await.is_err() {
                return;
            }
            sent += 1;
        }
    });
    let content_type = if sse {
        "text/event-stream"
    } else {
        "application/json"
    };
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(
            out.map(Ok::<_, std::convert::Infallible>),
        ))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A stream fed by a task writing into a channel.
fn async_stream<F, Fut>(f: F) -> impl futures::Stream<Item = String> + Send
where
    F: FnOnce(tokio::sync::mpsc::Sender<String>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
