//! The Kubernetes API test double (tests/support/fake_kube.rs) on the write side: GET of one
//! Application, merge PATCH, create and delete reject what the API server rejects, and every
//! write is seen by open watches. Plain reqwest against the double, and once kube-rs's own
//! client (what the gateway's Kubernetes backend uses).

mod support;

use futures::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;
use support::fake_kube::{FakeKube, example, merge_patch, variant, without_finalizers};

const SYNCED: &str = "application-sync-succeeded";
const MERGE: &str = "application/merge-patch+json";

struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    /// A `Status` object with this code and reason.
    #[track_caller]
    fn assert_status(&self, code: u16, reason: &str, message_contains: &str) {
        assert_eq!(self.status, code, "{}", self.body);
        assert_eq!(self.body["kind"], "Status", "{}", self.body);
        assert_eq!(self.body["status"], "Failure", "{}", self.body);
        assert_eq!(self.body["code"], code, "{}", self.body);
        assert_eq!(self.body["reason"], reason, "{}", self.body);
        let message = self.body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(message_contains),
            "{message:?} does not contain {message_contains:?}"
        );
    }
}

fn base(fake: &FakeKube) -> String {
    format!("{}/apis/argoproj.io/v1alpha1", fake.url)
}

fn object_url(fake: &FakeKube, ns: &str, name: &str) -> String {
    format!("{}/namespaces/{ns}/applications/{name}", base(fake))
}

async fn send(url: &str, method: &str, content_type: Option<&str>, body: Option<String>) -> Answer {
    let mut req =
        reqwest::Client::new().request(method.parse().unwrap_or_else(|e| panic!("{e}")), url);
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = tokio::time::timeout(Duration::from_secs(10), req.send())
        .await
        .unwrap_or_else(|_| panic!("{method} {url} timed out"))
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_else(|e| panic!("{e}"));
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer { status, body }
}

async fn patch(fake: &FakeKube, ns: &str, name: &str, content_type: &str, patch: &Value) -> Answer {
    send(
        &object_url(fake, ns, name),
        "PATCH",
        Some(content_type),
        Some(patch.to_string()),
    )
    .await
}

async fn create(fake: &FakeKube, ns: &str, obj: &Value) -> Answer {
    send(
        &format!("{}/namespaces/{ns}/applications", base(fake)),
        "POST",
        Some("application/json"),
        Some(obj.to_string()),
    )
    .await
}

/// An open watch from resource version `rv`, read line by line.
struct Watch {
    body: futures::stream::BoxStream<'static, reqwest::Result<axum::body::Bytes>>,
    buf: Vec<u8>,
}

impl Watch {
    async fn open(fake: &FakeKube, rv: u64) -> Watch {
        let resp = reqwest::get(format!(
            "{}/applications?watch=1&resourceVersion={rv}",
            base(fake)
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resp.status(), 200);
        Watch {
            body: resp.bytes_stream().boxed(),
            buf: Vec::new(),
        }
    }

    /// The next event: (type, object).
    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let v: Value = serde_json::from_slice(&line).unwrap_or_else(|e| panic!("{e}"));
                return (
                    v["type"].as_str().unwrap_or_default().to_string(),
                    v["object"].clone(),
                );
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.body.next())
                .await
                .unwrap_or_else(|_| panic!("no watch event within 10 s"))
                .unwrap_or_else(|| panic!("watch ended"))
                .unwrap_or_else(|e| panic!("{e}"));
            self.buf.extend_from_slice(&chunk);
        }
    }
}

fn rv(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no resourceVersion in {obj}"))
}

/// The operation a gateway writes through the Kubernetes API (API-NOTES.md: kube field names).
fn kube_operation() -> Value {
    json!({
        "initiatedBy": {"username": "argocd-cdevents"},
        "info": [{"name": "cdevents.id", "value": "e-1"}],
        "sync": {
            "revision": "0123456789abcdef0123456789abcdef01234567",
            "prune": true,
            "syncStrategy": {"hook": {}},
            "syncOptions": ["Validate=false"],
            "resources": [{"group": "apps", "kind": "Deployment", "name": "guestbook"}],
        },
        "retry": {"limit": 2},
    })
}

#[test]
fn merge_patch_follows_rfc_7386() {
    // The examples of RFC 7386 appendix A, a selection.
    for (target, patch, result) in [
        (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
        (
            json!({"a": "b"}),
            json!({"b": "c"}),
            json!({"a": "b", "b": "c"}),
        ),
        (json!({"a": "b"}), json!({"a": null}), json!({})),
        (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
        (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
        (
            json!({"a": {"b": "c"}}),
            json!({"a": {"b": "d", "c": null}}),
            json!({"a": {"b": "d"}}),
        ),
        (
            json!({"a": [{"b": "c"}]}),
            json!({"a": [1]}),
            json!({"a": [1]}),
        ),
        (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
        (json!({"a": "b"}), json!(["c"]), json!(["c"])),
        (
            json!({"e": null}),
            json!({"a": 1}),
            json!({"e": null, "a": 1}),
        ),
        (
            json!([1, 2]),
            json!({"a": "b", "c": null}),
            json!({"a": "b"}),
        ),
        (
            json!({}),
            json!({"a": {"bb": {"ccc": null}}}),
            json!({"a": {"bb": {}}}),
        ),
    ] {
        let mut t = target.clone();
        merge_patch(&mut t, &patch);
        assert_eq!(t, result, "{target} + {patch}");
    }
}

#[tokio::test]
async fn get_one_object() {
    let fake = FakeKube::start().await;
    let stored = fake.apply(variant(&example(SYNCED), "argocd", "guestbook"));
    let a = send(&object_url(&fake, "argocd", "guestbook"), "GET", None, None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, stored);
    let a = send(&object_url(&fake, "other", "guestbook"), "GET", None, None).await;
    a.assert_status(
        404,
        "NotFound",
        "applications.argoproj.io \"guestbook\" not found",
    );
    assert_eq!(
        a.body["details"],
        json!({"name": "guestbook", "group": "argoproj.io", "kind": "applications"})
    );
    let a = send(
        &format!("{}?watch=1", object_url(&fake, "argocd", "guestbook")),
        "GET",
        None,
        None,
    )
    .await;
    a.assert_status(400, "BadRequest", "watch");
    let a = send(
        &object_url(&fake, "argocd", "guestbook"),
        "PUT",
        Some("application/json"),
        Some(stored.to_string()),
    )
    .await;
    a.assert_status(405, "MethodNotAllowed", "PUT");
}

#[tokio::test]
async fn patch_needs_the_merge_patch_content_type() {
    let fake = FakeKube::start().await;
    let stored = fake.apply(variant(&example(SYNCED), "argocd", "guestbook"));
    let p = json!({"operation": kube_operation()});
    for ct in [
        "application/json",
        "application/strategic-merge-patch+json",
        "application/json-patch+json",
        "application/apply-patch+yaml",
        "text/plain",
    ] {
        let a = patch(&fake, "argocd", "guestbook", ct, &p).await;
        a.assert_status(415, "UnsupportedMediaType", "");
    }
    let a = send(
        &object_url(&fake, "argocd", "guestbook"),
        "PATCH",
        None,
        Some(p.to_string()),
    )
    .await;
    a.assert_status(415, "UnsupportedMediaType", "");
    assert_eq!(
        fake.edit(|w| w.get("argocd", "guestbook")),
        Some(stored.clone())
    );
    // Parameters on the media type are fine.
    let a = patch(
        &fake,
        "argocd",
        "guestbook",
        "application/merge-patch+json; charset=utf-8",
        &p,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    // Not JSON, or not an object.
    let a = send(
        &object_url(&fake, "argocd", "guestbook"),
        "PATCH",
        Some(MERGE),
        Some("{op".into()),
    )
    .await;
    a.assert_status(400, "BadRequest", "not valid JSON");
    let a = patch(&fake, "argocd", "guestbook", MERGE, &json!(["operation"])).await;
    a.assert_status(400, "BadRequest", "array");
    let a = patch(&fake, "argocd", "nothere", MERGE, &p).await;
    a.assert_status(404, "NotFound", "\"nothere\" not found");
}

#[tokio::test]
async fn a_merge_patch_is_seen_by_an_open_watch() {
    let fake = FakeKube::start().await;
    let stored = fake.apply(variant(&example(SYNCED), "argocd", "guestbook"));
    let mut watch = Watch::open(&fake, rv(&stored)).await;
    fake.wait_watches(1).await;

    let a = patch(
        &fake,
        "argocd",
        "guestbook",
        MERGE,
        &json!({"operation": kube_operation()}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["operation"], kube_operation());
    assert!(rv(&a.body) > rv(&stored));
    assert_eq!(
        a.body["metadata"]["generation"], stored["metadata"]["generation"],
        "not a spec change"
    );
    assert_eq!(a.body["metadata"]["uid"], stored["metadata"]["uid"]);
    let (ty, obj) = watch.next().await;
    assert_eq!(ty, "MODIFIED");
    assert_eq!(obj, a.body);

    // The controller's answer: status written, `.operation` cleared with a null.
    let done = patch(
        &fake,
        "argocd",
        "guestbook",
        MERGE,
        &json!({"operation": null, "status": {"operationState": {"phase": "Succeeded", "operation": kube_operation()}}}),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.get("operation").is_none());
    let (ty, obj) = watch.next().await;
    assert_eq!(
        (
            ty.as_str(),
            obj["status"]["operationState"]["phase"].as_str()
        ),
        ("MODIFIED", Some("Succeeded"))
    );
    assert!(obj.get("operation").is_none());

    // A spec change moves generation on.
    let a = patch(
        &fake,
        "argocd",
        "guestbook",
        MERGE,
        &json!({"spec": {"source": {"targetRevision": "v2"}}}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["metadata"]["generation"], 2);
    assert_eq!(
        a.body["spec"]["source"]["repoURL"],
        stored["spec"]["source"]["repoURL"]
    );
    let (_, obj) = watch.next().await;
    assert_eq!(obj["spec"]["source"]["targetRevision"], "v2");

    // A patch that changes nothing stores nothing and wakes no watch.
    let before = fake.resource_version();
    let a = patch(
        &fake,
        "argocd",
        "guestbook",
        MERGE,
        &json!({"spec": {"source": {"targetRevision": "v2"}}}),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(fake.resource_version(), before);
    fake.apply(variant(&example(SYNCED), "argocd", "marker"));
    let (ty, obj) = watch.next().await;
    assert_eq!(
        (ty.as_str(), obj["metadata"]["name"].as_str()),
        ("ADDED", Some("marker"))
    );
}

#[tokio::test]
async fn patches_are_checked_against_the_crd_schema() {
    let fake = FakeKube::start().await;
    let stored = fake.apply(variant(&example(SYNCED), "argocd", "guestbook"));
    // REST's field names in the Kubernetes object: wrapped syncOptions is a type error...
    let mut rest_style = kube_operation();
    rest_style["sync"]["syncOptions"] = json!({"items": ["Validate=false"]});
    let a = patch(
        &fake,
        "argocd",
        "guestbook",
        MERGE,
        &json!({"operation": rest_style}),
    )
    .await;
    a.assert_status(422, "Invalid", "operation.sync.syncOptions: ");
    assert_eq!(
        a.body["details"]["causes"][0]["field"],
        "operation.sync.syncOptions"
    );
    // ...and `strategy` (REST) for `syncStrategy` is an unknown field.
    let mut rest_style = kube_operation();
    rest_style["sync"]["strategy"] = json!({"hook": {}});
    let a = patch(
        &fake,
        "argocd",
        "guestbook",
        MERGE,
        &json!({"operation": rest_style}),
    )
    .await;
    a.assert_status(
        400,
        "BadRequest",
        "unknown field \"operation.sync.strategy\"",
    );
    // A required field removed, a wrong type in the spec.
    let a = patch(
        &fake,
        "argocd",
        "guestbook",
        MERGE,
        &json!({"spec": {"destination": null}}),
    )
    .await;
    a.assert_status(422, "Invalid", "spec");
    let a = patch(
        &fake,
        "argocd",
        "guestbook",
        MERGE,
        &json!({"spec": {"source": {"targetRevision": 2}}}),
    )
    .await;
    a.assert_status(422, "Invalid", "spec.source.targetRevision: ");
    // Name and namespace are the URL's.
    let a = patch(
        &fake,
        "argocd",
        "guestbook",
        MERGE,
        &json!({"metadata": {"name": "other"}}),
    )
    .await;
    a.assert_status(400, "BadRequest", "does not match the name on the URL");
    let a = patch(
        &fake,
        "argocd",
        "guestbook",
        MERGE,
        &json!({"metadata": {"namespace": "other"}}),
    )
    .await;
    a.assert_status(400, "BadRequest", "namespace");
    assert_eq!(fake.edit(|w| w.get("argocd", "guestbook")), Some(stored));
}

#[tokio::test]
async fn a_stale_resource_version_in_a_patch_is_409() {
    let fake = FakeKube::start().await;
    let stored = fake.apply(variant(&example(SYNCED), "argocd", "guestbook"));
    let seen = stored["metadata"]["resourceVersion"].clone();
    fake.edit(|w| {
        let mut changed = w.get("argocd", "guestbook").unwrap_or_default();
        changed["metadata"]["labels"] = json!({"touched": "yes"});
        w.apply(changed);
    });
    let p = json!({"metadata": {"resourceVersion": seen}, "operation": kube_operation()});
    let a = patch(&fake, "argocd", "guestbook", MERGE, &p).await;
    a.assert_status(409, "Conflict", "the object has been modified");
    assert!(
        fake.edit(|w| w.get("argocd", "guestbook"))
            .is_some_and(|o| o.get("operation").is_none())
    );
    let current = fake
        .edit(|w| w.get("argocd", "guestbook"))
        .unwrap_or_default();
    let p = json!({"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]}, "operation": kube_operation()});
    let a = patch(&fake, "argocd", "guestbook", MERGE, &p).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["operation"], kube_operation());
}

#[tokio::test]
async fn create_rejects_what_the_api_server_rejects() {
    let fake = FakeKube::start().await;
    let new = to_create(SYNCED, "argocd", "preview-42");
    let mut watch = Watch::open(&fake, 0).await;
    fake.wait_watches(1).await;

    let a = create(&fake, "argocd", &new).await;
    assert_eq!(a.status, 201, "{}", a.body);
    for f in ["uid", "creationTimestamp", "resourceVersion"] {
        assert!(
            a.body["metadata"][f].is_string(),
            "{f}: {}",
            a.body["metadata"]
        );
    }
    assert_eq!(a.body["metadata"]["generation"], 1);
    let (ty, obj) = watch.next().await;
    assert_eq!((ty.as_str(), &obj), ("ADDED", &a.body));

    create(&fake, "argocd", &new).await.assert_status(
        409,
        "AlreadyExists",
        "\"preview-42\" already exists",
    );
    let elsewhere = create(&fake, "team-a", &new).await;
    elsewhere.assert_status(
        400,
        "BadRequest",
        "namespace of the provided object does not match",
    );

    let mut unnamed = new.clone();
    if let Some(m) = unnamed["metadata"].as_object_mut() {
        m.remove("name");
    }
    let a = create(&fake, "argocd", &unnamed).await;
    a.assert_status(422, "Invalid", "metadata.name: Required value");
    let mut generated = unnamed.clone();
    generated["metadata"]["generateName"] = json!("preview-");
    let a = create(&fake, "argocd", &generated).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let name = a.body["metadata"]["name"].as_str().unwrap_or_default();
    assert!(
        name.starts_with("preview-") && name.len() == "preview-".len() + 5,
        "{name}"
    );

    for bad in ["Preview_42", "-x", "x-"] {
        let mut b = new.clone();
        b["metadata"]["name"] = json!(bad);
        create(&fake, "argocd", &b)
            .await
            .assert_status(422, "Invalid", "RFC 1123 subdomain");
    }
    let mut no_kind = new.clone();
    if let Some(m) = no_kind.as_object_mut() {
        m.remove("kind");
    }
    create(&fake, "argocd", &no_kind).await.assert_status(
        400,
        "BadRequest",
        "Object 'Kind' is missing",
    );
    let mut other_version = new.clone();
    other_version["apiVersion"] = json!("argoproj.io/v1beta1");
    create(&fake, "argocd", &other_version)
        .await
        .assert_status(400, "BadRequest", "API version");
    let mut with_rv = new.clone();
    with_rv["metadata"]["name"] = json!("with-rv");
    with_rv["metadata"]["resourceVersion"] = json!("7");
    create(&fake, "argocd", &with_rv)
        .await
        .assert_status(400, "BadRequest", "resourceVersion");
    let mut no_spec = new.clone();
    no_spec["metadata"]["name"] = json!("no-spec");
    if let Some(m) = no_spec.as_object_mut() {
        m.remove("spec");
    }
    create(&fake, "argocd", &no_spec)
        .await
        .assert_status(422, "Invalid", "spec");

    let a = send(
        &format!("{}/namespaces/argocd/applications", base(&fake)),
        "POST",
        Some("application/yaml"),
        Some(new.to_string()),
    )
    .await;
    a.assert_status(415, "UnsupportedMediaType", "");
    let a = send(
        &format!("{}/applications", base(&fake)),
        "POST",
        Some("application/json"),
        Some(new.to_string()),
    )
    .await;
    a.assert_status(405, "MethodNotAllowed", "");
    // dryRun validates without storing.
    let mut dry = new.clone();
    dry["metadata"]["name"] = json!("dry");
    let a = send(
        &format!("{}/namespaces/argocd/applications?dryRun=All", base(&fake)),
        "POST",
        Some("application/json"),
        Some(dry.to_string()),
    )
    .await;
    assert_eq!(a.status, 201);
    assert!(fake.edit(|w| w.get("argocd", "dry")).is_none());
}

/// `example(stem)` as a client would create it: named `namespace/name`, without `status`
/// (Argo CD's examples are Go test data whose status lacks fields the CRD requires, such as
/// `syncResult.resources[].group`; the API server would refuse them).
fn to_create(stem: &str, namespace: &str, name: &str) -> Value {
    let mut obj = without_finalizers(variant(&example(stem), namespace, name));
    obj["apiVersion"] = json!("argoproj.io/v1alpha1");
    obj["kind"] = json!("Application");
    if let Some(m) = obj.as_object_mut() {
        m.remove("status");
    }
    obj
}

#[tokio::test]
async fn every_argocd_example_can_be_created() {
    let fake = FakeKube::start().await;
    for (i, stem) in [
        "application-full-status",
        "application-multisource-sync-succeeded",
        "application-operation-running",
        "application-pending-operation-dryrun",
        "application-spec-reference",
        "application-sync-succeeded",
    ]
    .iter()
    .enumerate()
    {
        let obj = to_create(stem, "argocd", &format!("app-{i}"));
        let a = create(&fake, "argocd", &obj).await;
        assert_eq!(a.status, 201, "{stem}: {}", a.body);
    }
}

#[tokio::test]
async fn delete_honours_finalizers() {
    let fake = FakeKube::start().await;
    let mut held = variant(&example(SYNCED), "argocd", "held");
    held["metadata"]["finalizers"] = json!(["resources-finalizer.argocd.argoproj.io"]);
    let held = fake.apply(held);
    let free = fake.apply(without_finalizers(variant(
        &example(SYNCED),
        "argocd",
        "free",
    )));
    let mut watch = Watch::open(&fake, fake.resource_version()).await;
    fake.wait_watches(1).await;

    let a = send(
        &object_url(&fake, "argocd", "held"),
        "DELETE",
        Some("application/json"),
        Some(
            json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"})
                .to_string(),
        ),
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.body);
    assert!(a.body["metadata"]["deletionTimestamp"].is_string());
    let (ty, obj) = watch.next().await;
    assert_eq!(ty, "MODIFIED");
    assert!(obj["metadata"]["deletionTimestamp"].is_string());
    // Removing the last finalizer (the Argo CD controller's job) lets it go.
    let a = patch(
        &fake,
        "argocd",
        "held",
        MERGE,
        &json!({"metadata": {"finalizers": null}}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let (ty, obj) = watch.next().await;
    assert_eq!(
        (ty.as_str(), obj["metadata"]["name"].as_str()),
        ("DELETED", Some("held"))
    );
    assert!(fake.edit(|w| w.get("argocd", "held")).is_none());
    assert_eq!(obj["metadata"]["uid"], held["metadata"]["uid"]);

    let url = object_url(&fake, "argocd", "free");
    let a = send(
        &format!("{url}?propagationPolicy=Sideways"),
        "DELETE",
        None,
        None,
    )
    .await;
    a.assert_status(
        422,
        "Invalid",
        "propagationPolicy: Unsupported value: \"Sideways\"",
    );
    let a = send(
        &url,
        "DELETE",
        Some("application/json"),
        Some(json!({"preconditions": {"uid": "someone-else"}}).to_string()),
    )
    .await;
    a.assert_status(409, "Conflict", "Precondition failed: UID");
    let a = send(
        &format!("{url}?propagationPolicy=Background"),
        "DELETE",
        None,
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["metadata"]["uid"], free["metadata"]["uid"]);
    let (ty, _) = watch.next().await;
    assert_eq!(ty, "DELETED");
    send(&url, "DELETE", None, None)
        .await
        .assert_status(404, "NotFound", "\"free\" not found");
}

#[tokio::test]
async fn kube_rs_client_writes_through_the_double() {
    use kube::api::{
        Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
        PostParams,
    };
    let fake = FakeKube::start().await;
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "argoproj.io",
        "v1alpha1",
        "Application",
    ));
    let api: Api<DynamicObject> = Api::namespaced_with(fake.client(), "argocd", &ar);
    let new: DynamicObject = serde_json::from_value(to_create(SYNCED, "argocd", "guestbook"))
        .unwrap_or_else(|e| panic!("{e}"));
    let created = api
        .create(&PostParams::default(), &new)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(created.metadata.uid.is_some());
    let patched = api
        .patch(
            "guestbook",
            &PatchParams::default(),
            &Patch::Merge(json!({"operation": kube_operation()})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(patched.data["operation"], kube_operation());
    assert!(
        api.get_opt("nothere")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
    let got = api.get("guestbook").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        got.metadata.resource_version,
        patched.metadata.resource_version
    );
    let err = api
        .patch(
            "guestbook",
            &PatchParams::default(),
            &Patch::Merge(json!({"operation": {"sync": {"strategy": {}}}})),
        )
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("unknown field"), "{err}");
    api.delete("guestbook", &DeleteParams::foreground())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(fake.edit(|w| w.get("argocd", "guestbook")).is_none());
    let posts: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| {
            format!(
                "{} {} {}",
                r.method,
                r.outcome,
                r.content_type.clone().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        posts,
        [
            "POST create application/json",
            "PATCH patch application/merge-patch+json",
            "PATCH rejected application/merge-patch+json",
            "DELETE delete application/json",
        ]
    );
}
