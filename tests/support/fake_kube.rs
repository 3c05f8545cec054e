//! A TEST DOUBLE of the Kubernetes API server (not Kubernetes): the read side of the
//! `applications.argoproj.io/v1alpha1` custom resource, as kube-runtime's watcher uses it,
//! and the writes a client makes on one Application (kube-rs `Api::get`, `patch` with
//! `Patch::Merge`, `create`, `delete`).
//!
//! Contract it enforces, as the real API server does:
//! - Paths: `GET /apis/argoproj.io/v1alpha1/applications` (all namespaces),
//!   `GET|POST /apis/argoproj.io/v1alpha1/namespaces/{ns}/applications` and
//!   `GET|PATCH|DELETE /apis/argoproj.io/v1alpha1/namespaces/{ns}/applications/{name}`. Any
//!   other path is 404 and any other method 405, each with a `Status` object (`kind: Status`,
//!   `status: Failure`, `reason`, `code`), as every API server error is.
//! - Query parameters are decoded as the API server decodes `ListOptions`: booleans are true
//!   unless absent, `0` or `false`; integers must parse (400 otherwise); a `labelSelector`
//!   (equality, set-based, exists, `!key`, `>`/`<`) or `fieldSelector` (only `metadata.name`
//!   and `metadata.namespace` for a custom resource) that does not parse is 400 `BadRequest`;
//!   the `ListOptions` validation rules (`resourceVersionMatch` only with `resourceVersion`,
//!   never with `continue`, on a watch only with `sendInitialEvents`; `sendInitialEvents`
//!   never on a list; `continue` never with `resourceVersion`) are 422 `Invalid`.
//!   STRICTER than the real server on purpose: a query parameter that is not a `ListOptions`
//!   field is 400 (the real server ignores it), so a misspelt parameter fails a test instead
//!   of being silently dropped.
//! - Resource versions are one global, increasing counter (etcd's revision): every create,
//!   update and delete bumps it, and so can "another resource changed" ([`World::bump`]).
//! - List: `ApplicationList` with `metadata.resourceVersion`, items in etcd key order
//!   (`<namespace>/<name>`), each with `apiVersion`, `kind` and its own
//!   `metadata.resourceVersion`; `limit` + `continue` paginate over one consistent snapshot
//!   (the first page's resource version), a `continue` token older than the compaction
//!   horizon is 410 `Expired`. `resourceVersion` with `Exact` lists that past state (410 if
//!   compacted), without or with `NotOlderThan` the current one (504 if in the future).
//! - Watch (`watch=true`/`1`): newline-delimited JSON events, chunked, for changes strictly
//!   after `resourceVersion`, in resource-version order; without one (or `0`) synthetic
//!   `ADDED` events for the current state come first; `sendInitialEvents=true` ends them with
//!   the `k8s.io/initial-events-end` bookmark. A change that moves an object into or out of
//!   the label/field selector is sent as `ADDED` / `DELETED`, as the watch cache does.
//!   `BOOKMARK`s (only `apiVersion`, `kind`, `metadata.resourceVersion`) are sent only when
//!   `allowWatchBookmarks=true`, when the test asks ([`World::bookmark`]). A resource version
//!   older than the compaction horizon gets one `ERROR` event carrying a 410 `Expired` Status
//!   (`too old resource version: X (Y)`), then the stream ends. `timeoutSeconds` ends the
//!   stream after that long. A reader too slow to keep up is disconnected.
//! - Objects get what the server sets: a `uid` and `creationTimestamp` on create (kept on
//!   update), `generation` bumped on spec changes; deleting an object with `finalizers` only
//!   sets `deletionTimestamp` (a `MODIFIED`), and it is gone (`DELETED`) when an update
//!   removes the last finalizer.
//! - Writes over HTTP go through the same state as [`World::apply`] / [`World::delete`]: each
//!   bumps the resource version, moves `generation` on a spec change and is seen by open
//!   watches; a write that changes nothing stores nothing. `dryRun=All` validates and
//!   answers without storing; other query parameters than each verb's options are 400
//!   (STRICTER, as for lists).
//!   - GET of one object: 404 `NotFound` Status (with `details`) when missing.
//!   - PATCH needs `Content-Type: application/merge-patch+json` (RFC 7386, [`merge_patch`]);
//!     any other type is 415 `UnsupportedMediaType`; a body that is not a JSON object is 400.
//!     A `metadata.resourceVersion` in the patch other than the object's is 409 `Conflict`
//!     (optimistic concurrency); a patch that changes the name or namespace is 400.
//!   - POST on a namespace's collection creates (201): `Content-Type: application/json`
//!     (415 otherwise), `apiVersion`/`kind` required and matching (400), a namespace other
//!     than the URL's 400, a `resourceVersion` 400, an existing name 409 `AlreadyExists`, no
//!     name (and no `generateName`) or one that is not a DNS-1123 subdomain 422 `Invalid`.
//!   - DELETE honours finalizers (202 with the object marked, 200 with the object once it is
//!     gone); `propagationPolicy` (query or `DeleteOptions` body) must be `Foreground`,
//!     `Background` or `Orphan` (422 otherwise), `preconditions` (`uid`, `resourceVersion`)
//!     that do not hold are 409. The garbage collector's own finalizers (`foregroundDeletion`,
//!     `orphan`) are not added: with no dependents it would remove them at once.
//!   - The object a create or patch would store is checked against the CRD's schema
//!     (../shared/argocd/application-crd.yaml; `null` members pruned first, as the server
//!     prunes them): a wrong type, a missing required field or a bad format is 422 `Invalid`
//!     with one `cause` per field. On a PATCH, a violation in a part the patch left as it
//!     was is ignored, as CRD validation ratcheting (on by default since Kubernetes 1.30)
//!     ignores it: objects put in place with [`World::apply`] are not validated, and Argo
//!     CD's own examples lack fields the CRD requires in `status`. REST's wrapped
//!     `syncOptions: {items}` is such a type error. STRICTER: an unknown field (REST's
//!     `strategy` for `syncStrategy`, `retryStrategy` for `retry`) is 400 `strict decoding
//!     error: unknown field`, as with `fieldValidation=Strict`, whatever `fieldValidation`
//!     says (the server's default, `Warn`, drops it with a warning header).
//!
//! Not served: PUT (replace), JSON patch and apply patch (415 here, served by the real
//! server), YAML or protobuf bodies, subresources, the legacy `/watch/` paths,
//! authentication, table output.
//!
//! Test controls: [`World::apply`] / [`World::delete`] / [`World::bump`] change the state,
//! [`World::compact`] drops history (so a watch or `continue` from before it gets 410),
//! [`World::drop_watches`] ends every open watch cleanly (an API server restart),
//! [`World::cut_watches`] aborts them mid-stream (a network cut); several of these inside
//! one [`FakeKube::edit`] happen atomically with respect to new requests. Every request is
//! logged with its body ([`FakeKube::requests`]).

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, broadcast, mpsc};

mod leases;
mod writes;
use writes::{Write, create, media_type, object, object_path};

pub const API_VERSION: &str = "argoproj.io/v1alpha1";
pub const KIND: &str = "Application";
const PREFIX: &str = "/apis/argoproj.io/v1alpha1";
/// How long a watch lasts when the client does not say (the real server picks 30-60 min).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);
const ALLOWED_PARAMS: &[&str] = &[
    "watch",
    "resourceVersion",
    "resourceVersionMatch",
    "allowWatchBookmarks",
    "labelSelector",
    "fieldSelector",
    "limit",
    "continue",
    "timeoutSeconds",
    "sendInitialEvents",
];

// ---------------------------------------------------------------------------------------
// Real Application objects from ../shared/argocd/examples

/// An Application from ../shared/argocd/examples, by file stem (`application-sync-succeeded`).
pub fn example(stem: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/argocd/examples")
        .join(format!("{stem}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A new object built from `example`, named `namespace/name`, without the fields the
/// server sets (uid, resourceVersion, creationTimestamp, generation, managedFields).
pub fn variant(example: &Value, namespace: &str, name: &str) -> Value {
    let mut app = example.clone();
    let meta = app["metadata"]
        .as_object_mut()
        .unwrap_or_else(|| panic!("example without metadata"));
    for server_set in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "generation",
        "managedFields",
        "deletionTimestamp",
    ] {
        meta.remove(server_set);
    }
    meta.insert("name".into(), json!(name));
    meta.insert("namespace".into(), json!(namespace));
    app
}

/// `app` with exactly these labels.
pub fn with_labels(mut app: Value, labels: &[(&str, &str)]) -> Value {
    let map: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| ((*k).to_string(), json!(v)))
        .collect();
    app["metadata"]["labels"] = Value::Object(map);
    app
}

/// `app` without finalizers (so a delete removes it at once).
pub fn without_finalizers(mut app: Value) -> Value {
    if let Some(meta) = app["metadata"].as_object_mut() {
        meta.remove("finalizers");
    }
    app
}

/// RFC 7386 JSON merge patch: `patch`'s members replace `target`'s, recursively for objects;
/// a `null` member removes one; anything but an object replaces `target` whole.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(members) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(t) = target {
        for (k, v) in members {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

fn obj_key(obj: &Value) -> String {
    format!(
        "{}/{}",
        obj["metadata"]["namespace"].as_str().unwrap_or_default(),
        obj["metadata"]["name"].as_str().unwrap_or_default()
    )
}

fn has_finalizers(obj: &Value) -> bool {
    obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
}

fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

// ---------------------------------------------------------------------------------------
// The state: etcd-like history with a compaction horizon

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeType {
    Added,
    Modified,
    Deleted,
}

#[derive(Clone, Debug)]
struct Change {
    rv: u64,
    ty: ChangeType,
    key: String,
    /// The object after the change (for a delete: the last state, at the delete's version).
    object: Value,
    /// The object before the change.
    prev: Option<Value>,
}

#[derive(Clone, Debug)]
enum Msg {
    Change(Change),
    Bookmark(u64),
    Close { abrupt: bool },
}

/// The double's state. Change it inside [`FakeKube::edit`].
pub struct World {
    rv: u64,
    /// Oldest resource version a watch or `continue` may resume from.
    horizon: u64,
    /// State at `horizon`.
    base: BTreeMap<String, Value>,
    /// Changes after `horizon`, in order.
    log: Vec<Change>,
    current: BTreeMap<String, Value>,
    tx: broadcast::Sender<Msg>,
}

impl World {
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Value> {
        self.current.get(&format!("{namespace}/{name}")).cloned()
    }

    pub fn len(&self) -> usize {
        self.current.len()
    }

    fn record(&mut self, ty: ChangeType, key: String, object: Value, prev: Option<Value>) {
        match ty {
            ChangeType::Deleted => {
                self.current.remove(&key);
            }
            _ => {
                self.current.insert(key.clone(), object.clone());
            }
        }
        let change = Change {
            rv: self.rv,
            ty,
            key,
            object,
            prev,
        };
        self.log.push(change.clone());
        let _ = self.tx.send(Msg::Change(change));
    }

    /// Create or update (by namespace/name) an Application, as `kubectl apply` would end up;
    /// returns the stored object. An update of an object being deleted that removes its last
    /// finalizer deletes it.
    pub fn apply(&mut self, app: Value) -> Value {
        let mut obj = app;
        assert!(
            obj["metadata"]["name"]
                .as_str()
                .is_some_and(|n| !n.is_empty())
                && obj["metadata"]["namespace"]
                    .as_str()
                    .is_some_and(|n| !n.is_empty()),
            "an Application needs metadata.name and metadata.namespace"
        );
        obj["apiVersion"] = json!(API_VERSION);
        obj["kind"] = json!(KIND);
        let key = obj_key(&obj);
        let prev = self.current.get(&key).cloned();
        self.rv += 1;
        let rv = self.rv;
        let meta = &mut obj["metadata"];
        meta["resourceVersion"] = json!(rv.to_string());
        match &prev {
            Some(p) => {
                let pm = &p["metadata"];
                meta["uid"] = pm["uid"].clone();
                meta["creationTimestamp"] = pm["creationTimestamp"].clone();
                if let Some(m) = meta.as_object_mut() {
                    m.remove("deletionTimestamp");
                }
                let generation = pm["generation"].as_i64().unwrap_or(1);
                let spec_changed = p["spec"] != obj["spec"];
                obj["metadata"]["generation"] = json!(if spec_changed {
                    generation + 1
                } else {
                    generation
                });
                if !pm["deletionTimestamp"].is_null() {
                    obj["metadata"]["deletionTimestamp"] = pm["deletionTimestamp"].clone();
                    if !has_finalizers(&obj) {
                        self.record(ChangeType::Deleted, key, obj.clone(), prev);
                        return obj;
                    }
                }
                self.record(ChangeType::Modified, key, obj.clone(), prev);
            }
            None => {
                meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
                meta["creationTimestamp"] = json!(now_rfc3339());
                meta["generation"] = json!(1);
                if let Some(m) = meta.as_object_mut() {
                    m.remove("deletionTimestamp");
                }
                self.record(ChangeType::Added, key, obj.clone(), None);
            }
        }
        obj
    }

    /// Delete `namespace/name`. With finalizers it is only marked (`deletionTimestamp`, a
    /// `MODIFIED`); returns the object as last seen, `None` if there was none.
    pub fn delete(&mut self, namespace: &str, name: &str) -> Option<Value> {
        let key = format!("{namespace}/{name}");
        let prev = self.current.get(&key).cloned()?;
        let mut obj = prev.clone();
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        if has_finalizers(&prev) {
            if !prev["metadata"]["deletionTimestamp"].is_null() {
                self.rv -= 1; // already being deleted: nothing changes
                return Some(prev);
            }
            obj["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            self.record(ChangeType::Modified, key, obj.clone(), Some(prev));
        } else {
            self.record(ChangeType::Deleted, key, obj.clone(), Some(prev));
        }
        Some(obj)
    }

    /// Another resource somewhere in the cluster changed: the global resource version moves on.
    pub fn bump(&mut self) {
        self.rv += 1;
    }

    /// Forget the history up to now: a watch or `continue` from an older version gets 410.
    pub fn compact(&mut self) {
        self.base = self.current.clone();
        self.log.clear();
        self.horizon = self.rv;
    }

    /// Send a BOOKMARK at the current resource version to every watch that allows them.
    pub fn bookmark(&mut self) {
        let _ = self.tx.send(Msg::Bookmark(self.rv));
    }

    /// End every open watch cleanly (what an API server restart does).
    pub fn drop_watches(&mut self) {
        let _ = self.tx.send(Msg::Close { abrupt: false });
    }

    /// Abort every open watch mid-stream (a network cut: no terminating chunk).
    pub fn cut_watches(&mut self) {
        let _ = self.tx.send(Msg::Close { abrupt: true });
    }

    /// The objects at resource version `rv` (which must not be older than the horizon).
    fn state_at(&self, rv: u64) -> BTreeMap<String, Value> {
        if rv >= self.rv {
            return self.current.clone();
        }
        let mut s = self.base.clone();
        for c in self.log.iter().take_while(|c| c.rv <= rv) {
            match c.ty {
                ChangeType::Deleted => {
                    s.remove(&c.key);
                }
                _ => {
                    s.insert(c.key.clone(), c.object.clone());
                }
            }
        }
        s
    }
}

// ---------------------------------------------------------------------------------------
// The server

/// One request the double received, with what it answered.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    /// HTTP status answered (a watch that got a 410 ERROR event is still an HTTP 200).
    pub status: u16,
    /// `list`, `watch`, `watch-expired`, `get`, `patch`, `create`, `delete`, `rejected`, or
    /// `fault` / `fault-after-applying` for an injected [`Fault`].
    pub outcome: &'static str,
    /// The `Content-Type` sent, if any.
    pub content_type: Option<String>,
    /// The body: JSON, `Null` when empty, a JSON string holding the raw text otherwise.
    pub body: Value,
}

impl Recorded {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn is_watch(&self) -> bool {
        self.outcome.starts_with("watch")
    }
    pub fn is_list(&self) -> bool {
        self.outcome == "list"
    }
}

/// A failure the double answers once, for the next request with its method (see
/// [`FakeKube::fail_next`]).
#[derive(Clone, Debug)]
pub struct Fault {
    pub method: Method,
    /// The status of the `Status` answer: 500 `InternalError`, 503 `ServiceUnavailable`,
    /// 504 `Timeout` (what an API server answers when etcd or a webhook is slow).
    pub code: u16,
    /// The request takes effect first and only its answer is the failure: what a client
    /// sees when the API server committed the write but timed out answering.
    pub after_applying: bool,
}

struct Shared {
    faults: Mutex<std::collections::VecDeque<Fault>>,
    world: Mutex<World>,
    leases: Mutex<leases::Leases>,
    requests: Mutex<Vec<Recorded>>,
    watches_established: Mutex<usize>,
    changed: Notify,
}

#[derive(Clone)]
pub struct FakeKube {
    shared: Arc<Shared>,
    pub url: String,
}

impl FakeKube {
    /// Start the double on 127.0.0.1 (an OS-chosen port), empty, at resource version 0.
    pub async fn start() -> FakeKube {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("binding the fake Kubernetes API: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let (tx, _) = broadcast::channel(1 << 14);
        let fake = FakeKube {
            shared: Arc::new(Shared {
                faults: Mutex::new(std::collections::VecDeque::new()),
                world: Mutex::new(World {
                    rv: 0,
                    horizon: 0,
                    base: BTreeMap::new(),
                    log: Vec::new(),
                    current: BTreeMap::new(),
                    tx,
                }),
                leases: Mutex::new(leases::Leases::default()),
                requests: Mutex::new(Vec::new()),
                watches_established: Mutex::new(0),
                changed: Notify::new(),
            }),
            url: format!("http://{addr}"),
        };
        let router = Router::new().fallback(handle).with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        fake
    }

    /// A kube client talking to the double.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config()).unwrap_or_else(|e| panic!("kube client: {e}"))
    }

    /// The kube client settings for the double (kube-rs defaults otherwise).
    pub fn config(&self) -> kube::Config {
        kube::Config::new(self.url.parse().unwrap_or_else(|e| panic!("{e}")))
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.shared.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Change the state; everything `f` does is atomic with respect to requests.
    pub fn edit<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        f(&mut self.world())
    }

    pub fn apply(&self, app: Value) -> Value {
        self.edit(|w| w.apply(app))
    }

    /// A Lease as the double holds it.
    pub fn lease(&self, namespace: &str, name: &str) -> Option<Value> {
        self.shared
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(namespace, name)
    }
    pub fn delete(&self, namespace: &str, name: &str) -> Option<Value> {
        self.edit(|w| w.delete(namespace, name))
    }
    pub fn compact(&self) {
        self.edit(World::compact)
    }
    pub fn bookmark(&self) {
        self.edit(World::bookmark)
    }
    pub fn drop_watches(&self) {
        self.edit(World::drop_watches)
    }
    pub fn resource_version(&self) -> u64 {
        self.edit(|w| w.resource_version())
    }

    /// Answer the next request with `fault.method` with `fault.code` (faults queue up, each
    /// used once, in order). Only the server errors [`Fault::code`] names: the double's 4xx
    /// answers come from its rules.
    pub fn fail_next(&self, fault: Fault) {
        assert!(
            matches!(fault.code, 500 | 503 | 504),
            "a fault is 500, 503 or 504, not {}",
            fault.code
        );
        self.shared
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(fault);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Watches established so far (not counting 410s and rejected requests).
    pub fn watches_established(&self) -> usize {
        *self
            .shared
            .watches_established
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Wait until at least `n` watches have been established in total.
    pub async fn wait_watches(&self, n: usize) {
        loop {
            let notified = self.shared.changed.notified();
            if self.watches_established() >= n {
                return;
            }
            notified.await;
        }
    }

    fn log(&self, rec: Recorded) {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(rec);
        self.shared.changed.notify_waiters();
    }
}

fn status(code: StatusCode, reason: &str, message: impl Into<String>) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        status_body(code.as_u16(), reason, &message.into()).to_string(),
    )
        .into_response()
}

/// The `Status` answer of an injected [`Fault`].
fn fault_answer(code: u16) -> Response {
    let (code, reason) = match code {
        503 => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
        504 => (StatusCode::GATEWAY_TIMEOUT, "Timeout"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
    };
    status(code, reason, "injected by the test")
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

/// An error answer (boxed: a `Response` is large).
type Rejection = Box<Response>;

fn invalid(field: &str, detail: &str) -> Rejection {
    Box::new(status(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        format!("ListOptions.meta.k8s.io \"\" is invalid: {field}: Forbidden: {detail}"),
    ))
}

async fn handle(State(fake): State<FakeKube>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let query: Vec<(String, String)> = reqwest::Url::parse(&format!("http://double{}", parts.uri))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let bytes = axum::body::to_bytes(body, 16 << 20)
        .await
        .unwrap_or_default();
    let write = Write {
        method: &method,
        query: &query,
        media_type: media_type(content_type.as_deref().unwrap_or_default()),
        body: &bytes,
    };
    let fault = {
        let mut faults = fake.shared.faults.lock().unwrap_or_else(|p| p.into_inner());
        let at = faults.iter().position(|f| f.method == method);
        at.and_then(|i| faults.remove(i))
    };
    let (response, outcome) = match (object_path(&path), collection(&path)) {
        _ if let Some(f) = fault.as_ref().filter(|f| !f.after_applying) => {
            (fault_answer(f.code), "fault")
        }
        _ if path.starts_with(leases::PREFIX) && leases::lease_path(&path).is_some() => {
            let (ns, name) = leases::lease_path(&path).unwrap_or_default();
            let response = fake
                .shared
                .leases
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .handle(
                    &method,
                    &ns,
                    name.as_deref(),
                    &query,
                    &write.media_type,
                    &bytes,
                );
            (response, "lease")
        }
        (Some((ns, name)), _) => object(&fake, &write, &ns, &name),
        (None, Some(Some(ns))) if method == Method::POST => create(&fake, &write, &ns),
        _ => serve(&fake, &method, &path, &query),
    };
    // A fault after applying: the write took effect, the client sees only the failure.
    let (response, outcome) = match &fault {
        Some(f) if f.after_applying => (fault_answer(f.code), "fault-after-applying"),
        _ => (response, outcome),
    };
    let outcome = if response.status().is_success() || outcome.starts_with("fault") {
        outcome
    } else {
        "rejected"
    };
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    fake.log(Recorded {
        method: method.to_string(),
        path,
        query,
        status: response.status().as_u16(),
        outcome,
        content_type,
        body,
    });
    response
}

/// Which collection a path names: `Some(None)` all namespaces, `Some(Some(ns))` one.
fn collection(path: &str) -> Option<Option<String>> {
    let rest = path.strip_prefix(PREFIX)?;
    if rest == "/applications" {
        return Some(None);
    }
    let ns = rest
        .strip_prefix("/namespaces/")?
        .strip_suffix("/applications")?;
    (!ns.is_empty() && !ns.contains('/')).then(|| Some(ns.to_string()))
}

/// Go's `Convert_Slice_string_To_bool`: only `0` and `false` (any case) are false.
fn as_bool(v: &str) -> bool {
    !(v == "0" || v.eq_ignore_ascii_case("false"))
}

struct Options {
    watch: bool,
    resource_version: String,
    version_match: String,
    bookmarks: bool,
    filter: Filter,
    limit: i64,
    continue_token: String,
    timeout: Option<i64>,
    send_initial_events: Option<bool>,
}

fn serve(
    fake: &FakeKube,
    method: &Method,
    path: &str,
    query: &[(String, String)],
) -> (Response, &'static str) {
    let Some(namespace) = collection(path) else {
        return (
            status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            ),
            "rejected",
        );
    };
    if method != Method::GET {
        // POST on a namespace's collection is a create (see `handle`).
        let allow = if namespace.is_some() {
            "GET, POST"
        } else {
            "GET"
        };
        let mut r = status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({method} {path}; this double serves {allow} here)"
            ),
        );
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(allow));
        return (r, "rejected");
    }
    match options(namespace, query) {
        Err(r) => (*r, "rejected"),
        Ok(opts) if opts.watch => watch(fake, opts),
        Ok(opts) => (list(fake, &opts), "list"),
    }
}

fn options(namespace: Option<String>, query: &[(String, String)]) -> Result<Options, Rejection> {
    let bad = |m: String| Box::new(status(StatusCode::BAD_REQUEST, "BadRequest", m));
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, v) in query {
        if !ALLOWED_PARAMS.contains(&k.as_str()) {
            return Err(bad(format!(
                "unknown query parameter \"{k}\" (allowed: {})",
                ALLOWED_PARAMS.join(", ")
            )));
        }
        seen.entry(k.as_str()).or_insert(v.as_str());
    }
    let int = |name: &str| -> Result<Option<i64>, Rejection> {
        match seen.get(name) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|e| bad(format!("{name}: invalid value {v:?}: {e}"))),
        }
    };
    let label_selector = seen.get("labelSelector").copied().unwrap_or_default();
    let labels = parse_label_selector(label_selector).map_err(|e| {
        bad(format!(
            "unable to parse requirement: {e} (labelSelector {label_selector:?})"
        ))
    })?;
    let field_selector = seen.get("fieldSelector").copied().unwrap_or_default();
    let fields = parse_field_selector(field_selector).map_err(bad)?;
    let opts = Options {
        watch: seen.get("watch").is_some_and(|v| as_bool(v)),
        resource_version: seen
            .get("resourceVersion")
            .copied()
            .unwrap_or_default()
            .to_string(),
        version_match: seen
            .get("resourceVersionMatch")
            .copied()
            .unwrap_or_default()
            .to_string(),
        bookmarks: seen.get("allowWatchBookmarks").is_some_and(|v| as_bool(v)),
        filter: Filter {
            namespace,
            labels,
            fields,
        },
        limit: int("limit")?.unwrap_or(0),
        continue_token: seen
            .get("continue")
            .copied()
            .unwrap_or_default()
            .to_string(),
        timeout: int("timeoutSeconds")?,
        send_initial_events: seen.get("sendInitialEvents").map(|v| as_bool(v)),
    };
    validate(&opts)?;
    Ok(opts)
}

/// apimachinery's `ValidateListOptions`.
fn validate(o: &Options) -> Result<(), Rejection> {
    let m = o.version_match.as_str();
    if o.watch {
        if o.send_initial_events.is_some() && m != "NotOlderThan" {
            return Err(invalid(
                "resourceVersionMatch",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if !m.is_empty() {
            if o.send_initial_events.is_none() {
                return Err(invalid(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                ));
            }
            if !o.continue_token.is_empty() {
                return Err(invalid(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
        }
    } else {
        if !m.is_empty() {
            if o.resource_version.is_empty() {
                return Err(invalid(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            if !o.continue_token.is_empty() {
                return Err(invalid(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
            if m != "Exact" && m != "NotOlderThan" {
                return Err(Box::new(status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    format!(
                        "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Unsupported value: {m:?}: supported values: \"Exact\", \"NotOlderThan\", \"\""
                    ),
                )));
            }
            if m == "Exact" && o.resource_version == "0" {
                return Err(invalid(
                    "resourceVersionMatch",
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                ));
            }
        }
        if o.send_initial_events.is_some() {
            return Err(invalid(
                "sendInitialEvents",
                "sendInitialEvents is forbidden for list",
            ));
        }
    }
    Ok(())
}

fn parse_rv(rv: &str) -> Result<u64, Rejection> {
    rv.parse::<u64>().map_err(|_| {
        Box::new(status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("invalid resource version: {rv:?}"),
        ))
    })
}

fn expired(message: String) -> Response {
    status(StatusCode::GONE, "Expired", message)
}

fn encode_continue(rv: u64, start: &str) -> String {
    let raw =
        json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{start}\u{0}")}).to_string();
    raw.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_continue(token: &str) -> Option<(u64, String)> {
    if !token.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| {
            token
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    let v: Value = serde_json::from_slice(&bytes?).ok()?;
    Some((v["rv"].as_u64()?, v["start"].as_str()?.to_string()))
}

fn list(fake: &FakeKube, o: &Options) -> Response {
    let world = fake.world();
    let (rv, start) = if !o.continue_token.is_empty() {
        if !o.resource_version.is_empty() {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "specifying resource version is not allowed when using continue",
            );
        }
        let Some((rv, start)) = decode_continue(&o.continue_token) else {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
            );
        };
        if rv < world.horizon {
            return expired(format!(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. (continue from {rv}, oldest available {})",
                world.horizon
            ));
        }
        (rv, Some(start))
    } else if o.resource_version.is_empty() || o.resource_version == "0" {
        (world.rv, None)
    } else {
        let rv = match parse_rv(&o.resource_version) {
            Ok(rv) => rv,
            Err(r) => return *r,
        };
        if o.version_match == "Exact" {
            if rv < world.horizon {
                return expired(format!(
                    "too old resource version: {rv} ({})",
                    world.horizon
                ));
            }
            if rv > world.rv {
                return status(
                    StatusCode::GATEWAY_TIMEOUT,
                    "Timeout",
                    format!("Too large resource version: {rv}, current: {}", world.rv),
                );
            }
            (rv, None)
        } else {
            if rv > world.rv {
                return status(
                    StatusCode::GATEWAY_TIMEOUT,
                    "Timeout",
                    format!("Too large resource version: {rv}, current: {}", world.rv),
                );
            }
            (world.rv, None)
        }
    };
    let snapshot = world.state_at(rv);
    drop(world);
    let matching: Vec<(&String, &Value)> = snapshot
        .iter()
        .filter(|(k, _)| start.as_deref().is_none_or(|s| k.as_str() >= s))
        .filter(|(_, v)| o.filter.selects(v))
        .collect();
    let limit = usize::try_from(o.limit)
        .ok()
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let page: Vec<Value> = matching
        .iter()
        .take(limit)
        .map(|(_, v)| (*v).clone())
        .collect();
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if matching.len() > page.len() {
        let last = matching[page.len() - 1].0;
        metadata["continue"] = json!(encode_continue(rv, last));
        if o.filter.labels.is_empty() && o.filter.fields.is_empty() {
            metadata["remainingItemCount"] = json!(matching.len() - page.len());
        }
    }
    let body = json!({
        "apiVersion": API_VERSION,
        "kind": "ApplicationList",
        "metadata": metadata,
        "items": page,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn event_line(ty: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": ty, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn bookmark_object(rv: u64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"apiVersion": API_VERSION, "kind": KIND, "metadata": meta})
}

/// The event a watch with `filter` sees for `c`, if any.
fn visible(filter: &Filter, c: &Change) -> Option<Bytes> {
    let now = filter.selects(&c.object);
    let before = c.prev.as_ref().is_some_and(|p| filter.selects(p));
    match c.ty {
        ChangeType::Added => now.then(|| event_line("ADDED", &c.object)),
        ChangeType::Deleted => before.then(|| event_line("DELETED", &c.object)),
        ChangeType::Modified => match (before, now) {
            (true, true) => Some(event_line("MODIFIED", &c.object)),
            (false, true) => Some(event_line("ADDED", &c.object)),
            (true, false) => Some(event_line("DELETED", &c.object)),
            (false, false) => None,
        },
    }
}

fn watch(fake: &FakeKube, o: Options) -> (Response, &'static str) {
    let rv = if o.resource_version.is_empty() {
        None
    } else {
        match parse_rv(&o.resource_version) {
            Ok(rv) => Some(rv),
            Err(r) => return (*r, "rejected"),
        }
    };
    let timeout = match o.timeout {
        Some(t) if t > 0 => Duration::from_secs(t.unsigned_abs()),
        _ => DEFAULT_WATCH_TIMEOUT,
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut first: Vec<Bytes> = Vec::new();
    let world = fake.world();
    let from_scratch = matches!(rv, None | Some(0));
    if let Some(rv) = rv.filter(|rv| *rv != 0 && *rv < world.horizon) {
        // The real server answers 200 and says so in the stream.
        let status = status_body(
            410,
            "Expired",
            &format!("too old resource version: {rv} ({})", world.horizon),
        );
        drop(world);
        let body = Body::from(event_line("ERROR", &status));
        return (
            ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
            "watch-expired",
        );
    }
    let initial_events = if o.send_initial_events.is_some() {
        o.send_initial_events == Some(true)
    } else {
        from_scratch
    };
    if initial_events {
        for obj in world.current.values().filter(|v| o.filter.selects(v)) {
            first.push(event_line("ADDED", obj));
        }
        if o.send_initial_events == Some(true) {
            first.push(event_line("BOOKMARK", &bookmark_object(world.rv, true)));
        }
    } else if let Some(rv) = rv.filter(|_| !from_scratch) {
        for c in world.log.iter().filter(|c| c.rv > rv) {
            if let Some(line) = visible(&o.filter, c) {
                first.push(line);
            }
        }
    }
    let mut live = world.tx.subscribe();
    drop(world);
    {
        *fake
            .shared
            .watches_established
            .lock()
            .unwrap_or_else(|p| p.into_inner()) += 1;
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(256);
    let filter = o.filter;
    let bookmarks = o.bookmarks;
    // Live changes at or before the requested version were already due (or not wanted).
    let after = rv.unwrap_or(0);
    tokio::spawn(async move {
        for line in first {
            if tx.send(Ok(line)).await.is_err() {
                return;
            }
        }
        loop {
            let msg = tokio::select! {
                m = live.recv() => m,
                _ = tokio::time::sleep_until(deadline) => return,
            };
            let line = match msg {
                Ok(Msg::Change(c)) if c.rv > after => visible(&filter, &c),
                Ok(Msg::Change(_)) => None,
                Ok(Msg::Bookmark(rv)) => {
                    bookmarks.then(|| event_line("BOOKMARK", &bookmark_object(rv, false)))
                }
                Ok(Msg::Close { abrupt: false }) => return,
                Ok(Msg::Close { abrupt: true }) => {
                    let _ = tx
                        .send(Err(std::io::Error::other("connection cut by the test")))
                        .await;
                    return;
                }
                // Too slow a reader, or the double is gone: the server closes the watch.
                Err(_) => return,
            };
            if let Some(line) = line
                && tx.send(Ok(line)).await.is_err()
            {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        (
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(stream),
        )
            .into_response(),
        "watch",
    )
}

// ---------------------------------------------------------------------------------------
// Selectors

#[derive(Debug, Clone)]
struct Filter {
    namespace: Option<String>,
    labels: Vec<LabelReq>,
    fields: Vec<FieldReq>,
}

impl Filter {
    fn selects(&self, obj: &Value) -> bool {
        let meta = &obj["metadata"];
        let ns = meta["namespace"].as_str().unwrap_or_default();
        if self.namespace.as_deref().is_some_and(|n| n != ns) {
            return false;
        }
        let labels = meta["labels"].as_object();
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.labels.iter().all(|r| r.matches(label(&r.key)))
            && self.fields.iter().all(|f| {
                let v = match f.field.as_str() {
                    "metadata.name" => meta["name"].as_str().unwrap_or_default(),
                    _ => ns,
                };
                (v == f.value) != f.negated
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    NotEq,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

#[derive(Debug, Clone)]
struct LabelReq {
    key: String,
    op: Op,
    values: Vec<String>,
}

impl LabelReq {
    fn matches(&self, v: Option<&str>) -> bool {
        let int = |s: &str| s.parse::<i64>().ok();
        match self.op {
            Op::Eq | Op::In => v.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Op::NotEq | Op::NotIn => v.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            Op::Exists => v.is_some(),
            Op::DoesNotExist => v.is_none(),
            Op::Gt => {
                matches!((v.and_then(int), self.values.first().and_then(|x| int(x))), (Some(a), Some(b)) if a > b)
            }
            Op::Lt => {
                matches!((v.and_then(int), self.values.first().and_then(|x| int(x))), (Some(a), Some(b)) if a < b)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Not,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    Open,
    Close,
    Comma,
}

fn lex(s: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | ',' | '>' | '<' => {
                chars.next();
                out.push(match c {
                    '(' => Tok::Open,
                    ')' => Tok::Close,
                    ',' => Tok::Comma,
                    '>' => Tok::Gt,
                    _ => Tok::Lt,
                });
            }
            '!' | '=' => {
                chars.next();
                let double = chars.peek() == Some(&'=');
                if double {
                    chars.next();
                }
                out.push(match (c, double) {
                    ('!', true) => Tok::NotEq,
                    ('!', false) => Tok::Not,
                    (_, true) => Tok::DoubleEq,
                    _ => Tok::Eq,
                });
            }
            _ => {
                let mut id = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || "()!=,<>".contains(c) {
                        break;
                    }
                    id.push(c);
                    chars.next();
                }
                out.push(Tok::Ident(id));
            }
        }
    }
    out
}

fn valid_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn valid_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn check_key(k: &str) -> Result<String, String> {
    let ok = match k.split_once('/') {
        None => valid_name_part(k),
        Some((prefix, name)) => valid_dns_subdomain(prefix) && valid_name_part(name),
    };
    if ok {
        Ok(k.to_string())
    } else {
        Err(format!("invalid label key {k:?}"))
    }
}

fn check_value(v: &str) -> Result<String, String> {
    if v.is_empty() || valid_name_part(v) {
        Ok(v.to_string())
    } else {
        Err(format!("invalid label value: {v:?}"))
    }
}

/// `labels.Parse`: `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x)`, `a>1`,
/// `a<1`, comma-joined.
fn parse_label_selector(s: &str) -> Result<Vec<LabelReq>, String> {
    let toks = lex(s);
    let mut out = Vec::new();
    if toks.is_empty() {
        return Ok(out);
    }
    let mut i = 0;
    let ident = |i: usize| match toks.get(i) {
        Some(Tok::Ident(s)) => Some(s.clone()),
        _ => None,
    };
    loop {
        let req = if toks.get(i) == Some(&Tok::Not) {
            let key = ident(i + 1).ok_or_else(|| {
                format!(
                    "found {:?}, expected: identifier after '!'",
                    toks.get(i + 1)
                )
            })?;
            i += 2;
            LabelReq {
                key: check_key(&key)?,
                op: Op::DoesNotExist,
                values: vec![],
            }
        } else {
            let key =
                ident(i).ok_or_else(|| format!("found {:?}, expected: identifier", toks.get(i)))?;
            let key = check_key(&key)?;
            i += 1;
            match toks.get(i) {
                None | Some(Tok::Comma) => LabelReq {
                    key,
                    op: Op::Exists,
                    values: vec![],
                },
                Some(Tok::Eq | Tok::DoubleEq | Tok::NotEq) => {
                    let op = if toks.get(i) == Some(&Tok::NotEq) {
                        Op::NotEq
                    } else {
                        Op::Eq
                    };
                    i += 1;
                    let value = match ident(i) {
                        Some(v) => {
                            i += 1;
                            v
                        }
                        None if matches!(toks.get(i), None | Some(Tok::Comma)) => String::new(),
                        None => {
                            return Err(format!("found {:?}, expected: identifier", toks.get(i)));
                        }
                    };
                    LabelReq {
                        key,
                        op,
                        values: vec![check_value(&value)?],
                    }
                }
                Some(Tok::Gt | Tok::Lt) => {
                    let op = if toks.get(i) == Some(&Tok::Gt) {
                        Op::Gt
                    } else {
                        Op::Lt
                    };
                    let v = ident(i + 1).ok_or_else(|| "expected an integer".to_string())?;
                    v.parse::<i64>().map_err(|_| {
                        format!("for 'Gt', 'Lt' operators, the value must be an integer: {v:?}")
                    })?;
                    i += 2;
                    LabelReq {
                        key,
                        op,
                        values: vec![v],
                    }
                }
                Some(Tok::Ident(word)) if word == "in" || word == "notin" => {
                    let op = if word == "in" { Op::In } else { Op::NotIn };
                    i += 1;
                    if toks.get(i) != Some(&Tok::Open) {
                        return Err(format!("found {:?}, expected: '('", toks.get(i)));
                    }
                    i += 1;
                    let mut values = Vec::new();
                    loop {
                        match toks.get(i) {
                            Some(Tok::Ident(v)) => {
                                values.push(check_value(v)?);
                                i += 1;
                            }
                            Some(Tok::Comma) => {
                                i += 1;
                            }
                            Some(Tok::Close) => {
                                i += 1;
                                break;
                            }
                            other => return Err(format!("found {other:?}, expected: ',' or ')'")),
                        }
                    }
                    if values.is_empty() {
                        return Err("for 'in', 'notin' operators, values set can't be empty".into());
                    }
                    LabelReq { key, op, values }
                }
                Some(other) => {
                    return Err(format!(
                        "found {other:?}, expected: in, notin, =, ==, !=, gt, lt"
                    ));
                }
            }
        };
        out.push(req);
        match toks.get(i) {
            None => return Ok(out),
            Some(Tok::Comma) if i + 1 < toks.len() => i += 1,
            other => return Err(format!("found {other:?}, expected: ',' or end of string")),
        }
    }
}

#[derive(Debug, Clone)]
struct FieldReq {
    field: String,
    value: String,
    negated: bool,
}

/// `fields.ParseSelector`, with the fields a custom resource supports.
fn parse_field_selector(s: &str) -> Result<Vec<FieldReq>, String> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|term| {
            let (field, value, negated) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, v, false)
            } else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                ));
            };
            let field = field.trim();
            if field != "metadata.name" && field != "metadata.namespace" {
                return Err(format!("field label not supported: {field}"));
            }
            Ok(FieldReq {
                field: field.to_string(),
                value: value.to_string(),
                negated,
            })
        })
        .collect()
}
