//! The Argo CD test double (tests/support/fake_argocd.rs) and its swagger body check
//! (tests/support/swagger.rs) reject what the real Argo CD API server rejects, and carry out
//! the writes the react flow makes as Argo CD does. Plain reqwest against the double.

mod support;

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use support::fake_argocd::{DEFAULT_NAMESPACE, Deletion, FakeArgoCd, fake_sha};
use support::fake_kube::{example, variant};
use support::swagger::{check_body, check_definition};

const TOKEN: &str = "test-token";
const REPO: &str = "https://github.com/argoproj/argocd-example-apps.git";

/// An app in `namespace` built from Argo CD's own example, tracking `main`, with one
/// kustomize image, auto-sync on or off.
fn app(namespace: &str, name: &str, auto_sync: bool) -> Value {
    let mut app = variant(&example("application-sync-succeeded"), namespace, name);
    app["spec"]["source"] = json!({
        "repoURL": REPO,
        "path": "guestbook",
        "targetRevision": "main",
        "kustomize": {"images": ["registry.example/guestbook:1.0"]},
    });
    app["status"]["summary"] = json!({"images": ["registry.example/guestbook:0.9", "redis:7"]});
    if !auto_sync && let Some(spec) = app["spec"].as_object_mut() {
        spec.remove("syncPolicy");
    }
    app
}

/// `app` with a deployment history of ids 0..n, entry i at revision `rev{i}`.
fn with_history(mut app: Value, n: usize) -> Value {
    let history: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "id": i,
                "revision": fake_sha(REPO, &format!("rev{i}")),
                "source": {"repoURL": REPO, "path": "guestbook", "targetRevision": format!("rev{i}")},
                "deployedAt": "2025-01-01T00:00:00Z",
                "deployStartedAt": "2025-01-01T00:00:00Z",
            })
        })
        .collect();
    app["status"]["history"] = json!(history);
    app
}

struct Answer {
    status: u16,
    body: Value,
    content_type: String,
}

impl Answer {
    fn message(&self) -> String {
        self.body["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
    /// Argo CD's error body, with `code`, and the HTTP status it maps to.
    #[track_caller]
    fn assert_error(&self, status: u16, code: u64, message_contains: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.body["code"], code, "{}", self.body);
        assert_eq!(self.body["error"], self.body["message"], "{}", self.body);
        assert_eq!(self.body["details"], json!([]), "{}", self.body);
        assert!(
            self.message().contains(message_contains),
            "{:?} does not contain {message_contains:?}",
            self.message()
        );
    }
}

/// `method path` with the token and, for anything but GET, `Content-Type: application/json`.
async fn send(fake: &FakeArgoCd, method: &str, path: &str, body: Option<Value>) -> Answer {
    send_as(fake, method, path, body, Some("application/json")).await
}

async fn send_as(
    fake: &FakeArgoCd,
    method: &str,
    path: &str,
    body: Option<Value>,
    content_type: Option<&str>,
) -> Answer {
    let method = Method::from_bytes(method.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let mut req = reqwest::Client::new()
        .request(method.clone(), format!("{}{path}", fake.url))
        .bearer_auth(TOKEN);
    if method != Method::GET
        && let Some(ct) = content_type
    {
        req = req.header("Content-Type", ct);
    }
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{e}"));
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = resp.text().await.unwrap_or_else(|e| panic!("{e}"));
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        body,
        content_type,
    }
}

async fn started() -> FakeArgoCd {
    FakeArgoCd::start(TOKEN).await
}

/// The double's changes after resourceVersion `rv`, as its stream sends them: (type, app).
async fn stream_after(fake: &FakeArgoCd, rv: &str, n: usize) -> Vec<(String, Value)> {
    let resp = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/stream/applications?resourceVersion={rv}",
            fake.url
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while out.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .unwrap_or_else(|_| panic!("no stream message within 10 s (got {out:?})"))
            .unwrap_or_else(|| panic!("stream ended"))
            .unwrap_or_else(|e| panic!("{e}"));
        buf.extend_from_slice(&chunk);
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            let v: Value = serde_json::from_slice(&line).unwrap_or_else(|e| panic!("{e}"));
            out.push((
                v["result"]["type"].as_str().unwrap_or_default().to_string(),
                v["result"]["application"].clone(),
            ));
        }
    }
    out
}

fn rv(app: &Value) -> String {
    app["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

// ---------------------------------------------------------------------------------------
// swagger.rs

#[test]
fn argocd_examples_are_valid_applications_by_swagger() {
    for stem in [
        "application-full-status",
        "application-multisource-sync-succeeded",
        "application-operation-running",
        "application-pending-operation-dryrun",
        "application-spec-reference",
        "application-sync-succeeded",
    ] {
        let app = example(stem);
        check_definition("v1alpha1Application", &app).unwrap_or_else(|e| panic!("{stem}: {e}"));
        check_body("POST", "/api/v1/applications", &app).unwrap_or_else(|e| panic!("{stem}: {e}"));
    }
}

#[test]
fn swagger_body_check_rejects_what_encoding_json_would_drop_or_refuse() {
    let sync = "/api/v1/applications/guestbook/sync";
    let good = json!({
        "name": "guestbook",
        "revision": "abc",
        "prune": true,
        "strategy": {"hook": {"force": true}},
        "syncOptions": {"items": ["Validate=false"]},
        "resources": [{"group": "apps", "kind": "Deployment", "name": "guestbook"}],
        "infos": [{"name": "reason", "value": "cdevents"}],
        "retryStrategy": {"limit": 2, "backoff": {"duration": "5s", "factor": 2}},
    });
    check_body("POST", sync, &good).unwrap_or_else(|e| panic!("{e}"));
    // null members are what encoding/json ignores
    check_body(
        "POST",
        sync,
        &json!({"name": "guestbook", "revision": null}),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // no body at all is `{}` to grpc-gateway
    check_body("POST", sync, &Value::Null).unwrap_or_else(|e| panic!("{e}"));

    let rejected = |body: Value, field: &str| {
        let err = check_body("POST", sync, &body)
            .err()
            .unwrap_or_else(|| panic!("accepted {body}"));
        assert!(
            err.contains(&format!("{field}: ")),
            "{field} not named in {err}"
        );
    };
    rejected(json!({"syncOptions": ["Validate=false"]}), "syncOptions");
    rejected(json!({"syncOption": {"items": []}}), "syncOption");
    rejected(
        json!({"strategy": {"hook": {"froce": true}}}),
        "strategy.hook.froce",
    );
    rejected(json!({"resources": [{"kind": 3}]}), "resources[0].kind");
    rejected(
        json!({"retryStrategy": {"limit": "2"}}),
        "retryStrategy.limit",
    );
    rejected(json!({"sourcePositions": ["1"]}), "sourcePositions[0]");
    check_body("POST", sync, &json!({"sourcePositions": [1]})).unwrap_or_else(|e| panic!("{e}"));

    let rollback = "/api/v1/applications/guestbook/rollback";
    check_body("POST", rollback, &json!({"id": 3})).unwrap_or_else(|e| panic!("{e}"));
    assert!(check_body("POST", rollback, &json!({"id": "3"})).is_err());
    assert!(check_body("POST", rollback, &json!({"id": 3.5})).is_err());

    // The operation a REST client must never send in an Application: kube field names.
    let mut app = app(DEFAULT_NAMESPACE, "guestbook", false);
    app["operation"] = json!({"sync": {"strategy": {"hook": {}}}});
    let err = check_definition("v1alpha1Application", &app).err();
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("operation.sync.strategy: unknown field")),
        "{err:?}"
    );
    // A DELETE has no body parameter: grpc-gateway never reads one. An unknown path or
    // method is named.
    assert!(check_body("DELETE", "/api/v1/applications/x", &Value::Null).is_ok());
    assert!(check_body("DELETE", "/api/v1/applications/x", &json!({"any": 1})).is_ok());
    assert!(check_body("PUT", "/api/v1/applications/x/sync", &json!({})).is_err());
    assert!(check_body("POST", "/api/v1/nothing", &json!({})).is_err());
}

#[test]
fn swagger_path_matching_prefers_the_template_with_the_method() {
    use support::swagger::check;
    // `{application.metadata.name}` (PUT only) and `{name}` (GET, PATCH, DELETE) both match.
    for method in ["GET", "PATCH", "DELETE", "PUT"] {
        check(method, "/api/v1/applications/guestbook", &[]).unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(check("POST", "/api/v1/applications/guestbook", &[]).is_err());
    let q = |k: &str| vec![(k.to_string(), "x".to_string())];
    assert!(check("GET", "/api/v1/applications/guestbook", &q("refresh")).is_ok());
    assert!(check("DELETE", "/api/v1/applications/guestbook", &q("cascade")).is_ok());
    assert!(check("DELETE", "/api/v1/applications/guestbook", &q("refresh")).is_err());
}

// ---------------------------------------------------------------------------------------
// Transport

#[tokio::test]
async fn content_type_must_be_exactly_application_json() {
    let fake = started().await;
    fake.insert(app(DEFAULT_NAMESPACE, "guestbook", false));
    let sync = "/api/v1/applications/guestbook/sync";
    let body = json!({"name": "guestbook"});
    for ct in [
        Some("application/json; charset=utf-8"),
        Some("text/plain"),
        Some("application/merge-patch+json"),
        None,
    ] {
        let a = send_as(&fake, "POST", sync, Some(body.clone()), ct).await;
        assert_eq!(a.status, 415, "{ct:?}: {}", a.body);
        assert_eq!(a.body, json!("Invalid content type\n"), "{ct:?}");
        assert!(
            a.content_type.starts_with("text/plain"),
            "{}",
            a.content_type
        );
    }
    // DELETE without a body needs it too; case does not matter.
    let del = "/api/v1/applications/guestbook";
    assert_eq!(send_as(&fake, "DELETE", del, None, None).await.status, 415);
    assert!(fake.app(DEFAULT_NAMESPACE, "guestbook").is_some());
    let a = send_as(&fake, "POST", sync, Some(body), Some("Application/JSON")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    // GET needs none.
    let a = send_as(&fake, "GET", del, None, None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        fake.app(DEFAULT_NAMESPACE, "guestbook")
            .map(|a| a["operation"].is_object()),
        Some(true)
    );
}

#[tokio::test]
async fn bodies_are_checked_against_swagger_and_name_the_field() {
    let fake = started().await;
    fake.insert(app(DEFAULT_NAMESPACE, "guestbook", false));
    let sync = "/api/v1/applications/guestbook/sync";
    let a = send(
        &fake,
        "POST",
        sync,
        Some(json!({"name": "guestbook", "syncOptions": ["Validate=false"]})),
    )
    .await;
    a.assert_error(400, 3, "syncOptions: ");
    let a = send(
        &fake,
        "POST",
        sync,
        Some(json!({"name": "guestbook", "dryrun": true})),
    )
    .await;
    a.assert_error(400, 3, "dryrun: unknown field");
    let a = send(
        &fake,
        "POST",
        "/api/v1/applications/guestbook/rollback",
        Some(json!({"id": "0"})),
    )
    .await;
    a.assert_error(400, 3, "id: ");
    let a = send_as(&fake, "POST", sync, None, Some("application/json")).await;
    assert_eq!(a.status, 200, "an empty body is {{}}: {}", a.body);
    // Not JSON at all.
    let resp = reqwest::Client::new()
        .post(format!("{}{sync}", fake.url))
        .bearer_auth(TOKEN)
        .header("Content-Type", "application/json")
        .body("{name: guestbook")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), 400);
    // Nothing of it reached the app but the one good sync.
    assert_eq!(
        fake.app(DEFAULT_NAMESPACE, "guestbook")
            .map(|a| a["operation"]["sync"].clone()),
        Some(json!({}))
    );
    // Every request and body is logged.
    let bodies = fake.bodies();
    assert_eq!(bodies.len(), 5);
    assert_eq!(bodies[0].0, "POST");
    assert_eq!(bodies[0].1, sync);
    assert_eq!(bodies[0].2["syncOptions"], json!(["Validate=false"]));
    assert_eq!(bodies[3].2, Value::Null);
    assert_eq!(bodies[4].2, json!("{name: guestbook"));
}

#[tokio::test]
async fn unauthenticated_and_unsupported_requests() {
    let fake = started().await;
    fake.insert(app(DEFAULT_NAMESPACE, "guestbook", false));
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/applications/guestbook", fake.url))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), 401);
    let a = send(
        &fake,
        "DELETE",
        "/api/v1/applications/guestbook/operation",
        None,
    )
    .await;
    a.assert_error(501, 12, "not implemented by the test double");
    let a = send(&fake, "GET", "/api/v1/applications/guestbook?bogus=1", None).await;
    a.assert_error(404, 5, "bogus");
    let a = send(
        &fake,
        "POST",
        "/api/v1/applications/guestbook/sync",
        Some(json!({"name": "other"})),
    )
    .await;
    a.assert_error(400, 3, "does not match the name in the path");
}

// ---------------------------------------------------------------------------------------
// Finding the app

#[tokio::test]
async fn a_missing_app_is_403_without_project_and_404_with_one() {
    let fake = started().await;
    fake.insert(app(DEFAULT_NAMESPACE, "guestbook", false));
    fake.insert(app("team-a", "billing", false));
    let a = send(&fake, "GET", "/api/v1/applications/nothere", None).await;
    a.assert_error(403, 7, "permission denied");
    let a = send(
        &fake,
        "GET",
        "/api/v1/applications/nothere?project=default",
        None,
    )
    .await;
    a.assert_error(404, 5, "applications.argoproj.io \"nothere\" not found");
    // An app of another project is as good as missing.
    let a = send(
        &fake,
        "GET",
        "/api/v1/applications/guestbook?project=other",
        None,
    )
    .await;
    a.assert_error(404, 5, "not found");
    let a = send(
        &fake,
        "GET",
        "/api/v1/applications/guestbook?project=default",
        None,
    )
    .await;
    assert_eq!(a.status, 200);
    // appNamespace selects the namespace; without it the app is looked for in argocd.
    let a = send(&fake, "GET", "/api/v1/applications/billing", None).await;
    a.assert_error(403, 7, "permission denied");
    let a = send(
        &fake,
        "GET",
        "/api/v1/applications/billing?appNamespace=team-a",
        None,
    )
    .await;
    assert_eq!(a.body["metadata"]["namespace"], "team-a");
    let a = send(
        &fake,
        "POST",
        "/api/v1/applications/billing/sync",
        Some(json!({"name": "billing", "appNamespace": "team-a", "project": "default"})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    for (method, path, body) in [
        ("POST", "/api/v1/applications/nothere/sync", json!({})),
        (
            "POST",
            "/api/v1/applications/nothere/rollback",
            json!({"id": 0}),
        ),
        (
            "PATCH",
            "/api/v1/applications/nothere",
            json!({"patch": "{}", "patchType": "merge"}),
        ),
    ] {
        send(&fake, method, path, Some(body.clone()))
            .await
            .assert_error(403, 7, "permission denied");
        let mut with_project = body;
        with_project["project"] = json!("default");
        send(&fake, method, path, Some(with_project))
            .await
            .assert_error(404, 5, "not found");
    }
    let a = send(&fake, "DELETE", "/api/v1/applications/nothere", None).await;
    a.assert_error(403, 7, "permission denied");
    let a = send(
        &fake,
        "DELETE",
        "/api/v1/applications/nothere?project=default",
        None,
    )
    .await;
    a.assert_error(404, 5, "not found");
}

#[tokio::test]
async fn refresh_is_recorded_and_changes_nothing() {
    let fake = started().await;
    let before = fake.insert(app(DEFAULT_NAMESPACE, "guestbook", false));
    for q in ["refresh=hard", "refresh=normal", "", "refresh="] {
        let a = send(
            &fake,
            "GET",
            &format!("/api/v1/applications/guestbook?{q}"),
            None,
        )
        .await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body, before);
    }
    assert_eq!(
        fake.refreshes(),
        vec![
            ("argocd/guestbook".to_string(), "hard".to_string()),
            ("argocd/guestbook".to_string(), "normal".to_string()),
            ("argocd/guestbook".to_string(), "normal".to_string()),
        ]
    );
    assert_eq!(fake.app(DEFAULT_NAMESPACE, "guestbook"), Some(before));
}

// ---------------------------------------------------------------------------------------
// Sync

#[tokio::test]
async fn sync_sets_the_operation_as_argo_cd_builds_it() {
    let fake = FakeArgoCd::start_as(TOKEN, "proj:default:gateway").await;
    let before = fake.insert(app(DEFAULT_NAMESPACE, "guestbook", false));
    let a = send(
        &fake,
        "POST",
        "/api/v1/applications/guestbook/sync",
        Some(json!({
            "name": "guestbook",
            "revision": "v2",
            "prune": true,
            "strategy": {"hook": {}},
            "syncOptions": {"items": ["Validate=false", "ServerSideApply=true"]},
            "resources": [{"group": "apps", "kind": "Deployment", "name": "guestbook"}],
            "infos": [{"name": "cdevents.id", "value": "e-1"}],
            "retryStrategy": {"limit": 2},
        })),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body["operation"],
        json!({
            "sync": {
                "revision": "v2",
                "prune": true,
                "syncStrategy": {"hook": {}},
                "syncOptions": ["Validate=false", "ServerSideApply=true"],
                "resources": [{"group": "apps", "kind": "Deployment", "name": "guestbook"}],
            },
            "initiatedBy": {"username": "proj:default:gateway"},
            "info": [{"name": "cdevents.id", "value": "e-1"}],
            "retry": {"limit": 2},
        })
    );
    let stored = fake.app(DEFAULT_NAMESPACE, "guestbook").unwrap_or_default();
    assert_eq!(stored, a.body);
    let changes = stream_after(&fake, &rv(&before), 1).await;
    assert_eq!(changes[0].0, "MODIFIED");
    assert_eq!(changes[0].1["operation"], a.body["operation"]);
}

#[tokio::test]
async fn sync_while_an_operation_is_in_progress_is_400() {
    let fake = started().await;
    fake.insert(app(DEFAULT_NAMESPACE, "guestbook", false));
    fake.insert(app(DEFAULT_NAMESPACE, "running", false));
    let sync = |name: &str| format!("/api/v1/applications/{name}/sync");
    assert_eq!(
        send(&fake, "POST", &sync("guestbook"), Some(json!({})))
            .await
            .status,
        200
    );
    let a = send(&fake, "POST", &sync("guestbook"), Some(json!({}))).await;
    a.assert_error(400, 9, "another operation is already in progress");

    fake.set_operation_running(DEFAULT_NAMESPACE, "running");
    let a = send(&fake, "POST", &sync("running"), Some(json!({}))).await;
    a.assert_error(400, 9, "another operation is already in progress");
    // A Running phase alone (as a status written by hand) is enough.
    let mut only_phase = fake.app(DEFAULT_NAMESPACE, "running").unwrap_or_default();
    if let Some(m) = only_phase.as_object_mut() {
        m.remove("operation");
    }
    fake.apply("MODIFIED", only_phase);
    let a = send(&fake, "POST", &sync("running"), Some(json!({}))).await;
    a.assert_error(400, 9, "another operation is already in progress");

    // Once the controller is done, a sync goes through again.
    assert_eq!(fake.complete_operations(), 2);
    assert_eq!(
        send(&fake, "POST", &sync("guestbook"), Some(json!({})))
            .await
            .status,
        200
    );
    assert_eq!(
        send(&fake, "POST", &sync("running"), Some(json!({})))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn auto_sync_refuses_another_revision() {
    let fake = started().await;
    fake.insert(app(DEFAULT_NAMESPACE, "auto", true));
    let mut disabled = app(DEFAULT_NAMESPACE, "disabled", true);
    disabled["spec"]["syncPolicy"]["automated"] = json!({"enabled": false});
    fake.insert(disabled);
    let mut head = app(DEFAULT_NAMESPACE, "head", true);
    head["spec"]["source"]["targetRevision"] = json!("");
    fake.insert(head);
    let sync = |name: &str| format!("/api/v1/applications/{name}/sync");

    let a = send(
        &fake,
        "POST",
        &sync("auto"),
        Some(json!({"revision": "v2"})),
    )
    .await;
    a.assert_error(400, 9, "Cannot sync to v2: auto-sync currently set to main");
    let a = send(
        &fake,
        "POST",
        &sync("head"),
        Some(json!({"revision": "main"})),
    )
    .await;
    a.assert_error(
        400,
        9,
        "Cannot sync to main: auto-sync currently set to HEAD",
    );
    // The target revision itself, or none, is fine; so is any revision with auto-sync off.
    let a = send(
        &fake,
        "POST",
        &sync("auto"),
        Some(json!({"revision": "main"})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    fake.complete_operations();
    let a = send(&fake, "POST", &sync("auto"), Some(json!({}))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = send(
        &fake,
        "POST",
        &sync("disabled"),
        Some(json!({"revision": "v2"})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test]
async fn a_sync_window_blocks_syncs() {
    let fake = started().await;
    fake.insert(app(DEFAULT_NAMESPACE, "guestbook", false));
    fake.block_sync_window(DEFAULT_NAMESPACE, "guestbook");
    let sync = "/api/v1/applications/guestbook/sync";
    let a = send(&fake, "POST", sync, Some(json!({}))).await;
    a.assert_error(403, 7, "Cannot sync: Blocked by sync window");
    assert!(
        fake.app(DEFAULT_NAMESPACE, "guestbook")
            .is_some_and(|a| a["operation"].is_null())
    );
    fake.unblock_sync_window(DEFAULT_NAMESPACE, "guestbook");
    assert_eq!(send(&fake, "POST", sync, Some(json!({}))).await.status, 200);
}

// ---------------------------------------------------------------------------------------
// The fake controller

#[tokio::test]
async fn complete_operations_appends_history_and_clears_the_operation() {
    let fake = started().await;
    let mut a = with_history(app(DEFAULT_NAMESPACE, "guestbook", false), 2);
    a["spec"]["revisionHistoryLimit"] = json!(2);
    a["spec"]["source"]["kustomize"]["images"] =
        json!(["registry.example/guestbook=registry.example/guestbook:2.0"]);
    fake.insert(a);
    let synced = send(
        &fake,
        "POST",
        "/api/v1/applications/guestbook/sync",
        Some(json!({"revision": "v2", "infos": [{"name": "k", "value": "v"}]})),
    )
    .await;
    assert_eq!(synced.status, 200, "{}", synced.body);
    assert_eq!(fake.complete_operations(), 1);
    assert_eq!(fake.complete_operations(), 0, "nothing left to do");
    let done = fake.app(DEFAULT_NAMESPACE, "guestbook").unwrap_or_default();
    assert!(done.get("operation").is_none(), "{}", done["operation"]);
    let state = &done["status"]["operationState"];
    assert_eq!(state["phase"], "Succeeded");
    assert_eq!(state["message"], "successfully synced (all tasks run)");
    assert_eq!(state["operation"], synced.body["operation"]);
    assert_eq!(state["syncResult"]["revision"], "v2");
    assert_eq!(state["syncResult"]["source"], done["spec"]["source"]);
    for t in ["startedAt", "finishedAt"] {
        let ts = state[t].as_str().unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(ts).is_ok() && ts.ends_with('Z'),
            "{t} {ts}"
        );
    }
    let history = done["status"]["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(history.len(), 2, "trimmed to revisionHistoryLimit");
    let last = &history[1];
    assert_eq!(history[0]["id"], 1);
    assert_eq!(last["id"], 2);
    assert_eq!(last["revision"], "v2");
    assert_eq!(last["source"], done["spec"]["source"]);
    assert_eq!(last["initiatedBy"], json!({"username": "argocd-cdevents"}));
    assert_eq!(last["deployedAt"], state["finishedAt"]);
    assert_eq!(last["deployStartedAt"], state["startedAt"]);
    assert_eq!(done["status"]["sync"]["status"], "Synced");
    assert_eq!(done["status"]["sync"]["revision"], "v2");
    assert_eq!(done["status"]["health"], json!({"status": "Healthy"}));
    assert_eq!(
        done["status"]["summary"]["images"],
        json!(["registry.example/guestbook:2.0", "redis:7"])
    );
    assert!(check_definition("v1alpha1Application", &done).is_ok());

    // Without a revision the target is resolved to a commit; history ids go on.
    send(
        &fake,
        "POST",
        "/api/v1/applications/guestbook/sync",
        Some(json!({})),
    )
    .await;
    fake.complete_operations();
    let done = fake.app(DEFAULT_NAMESPACE, "guestbook").unwrap_or_default();
    let sha = fake_sha(REPO, "main");
    assert_eq!(sha.len(), 40);
    assert_eq!(done["status"]["sync"]["revision"], json!(sha));
    assert_eq!(done["status"]["history"][1]["id"], 3);
}

#[tokio::test]
async fn a_first_deployment_is_history_id_0_and_a_dry_run_leaves_no_history() {
    let fake = started().await;
    fake.insert(app(DEFAULT_NAMESPACE, "guestbook", false));
    send(
        &fake,
        "POST",
        "/api/v1/applications/guestbook/sync",
        Some(json!({"dryRun": true})),
    )
    .await;
    fake.complete_operations();
    let done = fake.app(DEFAULT_NAMESPACE, "guestbook").unwrap_or_default();
    assert_eq!(done["status"]["operationState"]["phase"], "Succeeded");
    assert!(done["status"]["history"].is_null());
    send(
        &fake,
        "POST",
        "/api/v1/applications/guestbook/sync",
        Some(json!({})),
    )
    .await;
    fake.complete_operations();
    let done = fake.app(DEFAULT_NAMESPACE, "guestbook").unwrap_or_default();
    assert_eq!(done["status"]["history"][0]["id"], 0);
}

#[tokio::test]
async fn health_running_and_auto_complete_controls() {
    let fake = started().await;
    let before = fake.insert(app(DEFAULT_NAMESPACE, "guestbook", false));
    fake.set_health(DEFAULT_NAMESPACE, "guestbook", "Degraded");
    let running = fake.set_operation_running(DEFAULT_NAMESPACE, "guestbook");
    assert_eq!(running["status"]["health"]["status"], "Degraded");
    assert_eq!(running["status"]["operationState"]["phase"], "Running");
    let changes = stream_after(&fake, &rv(&before), 2).await;
    assert_eq!(changes[0].1["status"]["health"]["status"], "Degraded");
    assert_eq!(changes[1].1["status"]["operationState"]["phase"], "Running");

    fake.auto_complete(Duration::from_millis(20));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let app = fake.app(DEFAULT_NAMESPACE, "guestbook").unwrap_or_default();
        if app["status"]["operationState"]["phase"] == "Succeeded" {
            assert_eq!(
                app["status"]["operationState"]["startedAt"],
                running["status"]["operationState"]["startedAt"],
                "a running operation keeps its start"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "auto_complete did not run"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fake.stop_auto_complete();
}

// ---------------------------------------------------------------------------------------
// Rollback

#[tokio::test]
async fn rollback_is_refused_under_auto_sync() {
    let fake = started().await;
    fake.insert(with_history(app(DEFAULT_NAMESPACE, "auto", true), 2));
    let rollback = "/api/v1/applications/auto/rollback";
    let a = send(
        &fake,
        "POST",
        rollback,
        Some(json!({"name": "auto", "id": 0})),
    )
    .await;
    a.assert_error(
        400,
        9,
        "rollback cannot be initiated when auto-sync is enabled",
    );
    // A dry run is allowed.
    let a = send(
        &fake,
        "POST",
        rollback,
        Some(json!({"id": 0, "dryRun": true})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["operation"]["sync"]["dryRun"], true);
}

#[tokio::test]
async fn rollback_syncs_a_history_entry() {
    let fake = started().await;
    fake.insert(with_history(app(DEFAULT_NAMESPACE, "guestbook", false), 3));
    fake.insert(with_history(app("team-a", "billing", false), 1));
    let rollback = "/api/v1/applications/guestbook/rollback";
    let a = send(&fake, "POST", rollback, Some(json!({"id": 7}))).await;
    a.assert_error(
        400,
        3,
        "application guestbook does not have deployment with id 7",
    );
    let a = send(
        &fake,
        "POST",
        "/api/v1/applications/billing/rollback",
        Some(json!({"id": 7, "appNamespace": "team-a"})),
    )
    .await;
    a.assert_error(
        400,
        3,
        "application team-a/billing does not have deployment with id 7",
    );

    let a = send(
        &fake,
        "POST",
        rollback,
        Some(json!({"id": 1, "prune": true})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let sync = &a.body["operation"]["sync"];
    assert_eq!(sync["revision"], json!(fake_sha(REPO, "rev1")));
    assert_eq!(sync["source"]["targetRevision"], "rev1");
    assert_eq!(sync["syncStrategy"], json!({"apply": {}}));
    assert_eq!(sync["prune"], true);
    let a = send(&fake, "POST", rollback, Some(json!({"id": 0}))).await;
    a.assert_error(400, 9, "another operation is already in progress");

    fake.complete_operations();
    let done = fake.app(DEFAULT_NAMESPACE, "guestbook").unwrap_or_default();
    let last = &done["status"]["history"][3];
    assert_eq!(last["id"], 3);
    assert_eq!(last["revision"], json!(fake_sha(REPO, "rev1")));
    assert_eq!(
        last["source"]["targetRevision"], "rev1",
        "the source deployed, not spec's"
    );
    assert_eq!(done["spec"]["source"]["targetRevision"], "main");
}

// ---------------------------------------------------------------------------------------
// Patch

#[tokio::test]
async fn merge_patch_applies_to_the_app() {
    let fake = started().await;
    let before = fake.insert(app(DEFAULT_NAMESPACE, "guestbook", true));
    let patch = json!({
        "metadata": {"labels": {"preview": "true"}},
        "spec": {
            "syncPolicy": null,
            "source": {"kustomize": {"images": ["registry.example/guestbook:2.0"]}},
        },
    });
    let a = send(
        &fake,
        "PATCH",
        "/api/v1/applications/guestbook",
        Some(json!({"name": "guestbook", "patch": patch.to_string(), "patchType": "merge"})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["metadata"]["labels"]["preview"], "true");
    assert!(a.body["spec"].get("syncPolicy").is_none());
    assert_eq!(
        a.body["spec"]["source"]["kustomize"]["images"],
        json!(["registry.example/guestbook:2.0"])
    );
    assert_eq!(
        a.body["spec"]["source"]["repoURL"], REPO,
        "merged, not replaced"
    );
    assert_eq!(a.body["metadata"]["generation"], 2);
    assert_eq!(
        fake.app(DEFAULT_NAMESPACE, "guestbook"),
        Some(a.body.clone())
    );
    let changes = stream_after(&fake, &rv(&before), 1).await;
    assert_eq!(changes[0].0, "MODIFIED");
    assert_eq!(changes[0].1, a.body);
}

#[tokio::test]
async fn patches_argo_cd_would_not_apply_are_400() {
    let fake = started().await;
    let before = fake.insert(app(DEFAULT_NAMESPACE, "guestbook", false));
    let path = "/api/v1/applications/guestbook";
    let patch = |p: &str, t: &str| Some(json!({"patch": p, "patchType": t}));
    for (p, t, message) in [
        ("{not json", "merge", "patch is not JSON"),
        (
            r#"{"status": {"health": {"status": "Healthy"}}}"#,
            "merge",
            "changes status",
        ),
        (
            r#"{"metadata": {"name": "other"}}"#,
            "merge",
            "changes metadata.name",
        ),
        (
            r#"{"metadata": {"namespace": "other"}}"#,
            "merge",
            "changes metadata.namespace",
        ),
        (
            r#"{"operation": {"sync": {}}}"#,
            "merge",
            "changes operation",
        ),
        (
            r#"{"spec": {"syncPolicy": {"syncOptions": {"items": ["A=b"]}}}}"#,
            "merge",
            "spec.syncPolicy.syncOptions: ",
        ),
        (
            r#"{"spec": {"sorce": {}}}"#,
            "merge",
            "spec.sorce: unknown field",
        ),
        (
            r#"[{"op": "add", "path": "/spec/project", "value": "x"}]"#,
            "json",
            "not supported by the test double",
        ),
        ("{}", "strategic", "Patch type 'strategic' is not supported"),
    ] {
        let a = send(&fake, "PATCH", path, patch(p, t)).await;
        a.assert_error(400, 3, message);
    }
    assert_eq!(
        fake.app(DEFAULT_NAMESPACE, "guestbook"),
        Some(before.clone())
    );
    // A patch that changes nothing answers the app and writes nothing.
    let a = send(
        &fake,
        "PATCH",
        path,
        patch(r#"{"spec": {"project": "default"}}"#, "merge"),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, before);
}

// ---------------------------------------------------------------------------------------
// Create and delete

#[tokio::test]
async fn create_identical_is_200_different_is_400_unless_upsert() {
    let fake = started().await;
    let mut new = app(DEFAULT_NAMESPACE, "preview-42", false);
    new["operation"] = json!({"sync": {"revision": "x"}});
    if let Some(s) = new.as_object_mut() {
        s.remove("status");
    }
    let a = send(&fake, "POST", "/api/v1/applications", Some(new.clone())).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let created = a.body;
    assert!(created.get("operation").is_none(), "operation dropped");
    for f in ["uid", "creationTimestamp", "resourceVersion"] {
        assert!(
            created["metadata"][f].is_string(),
            "{f} set: {}",
            created["metadata"]
        );
    }
    assert_eq!(created["metadata"]["generation"], 1);
    let changes = stream_after(&fake, "0", 1).await;
    assert_eq!(changes[0].0, "ADDED");

    // The same again: the existing app, untouched.
    let a = send(&fake, "POST", "/api/v1/applications", Some(new.clone())).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, created);
    let a = send(
        &fake,
        "POST",
        "/api/v1/applications?upsert=false",
        Some(new.clone()),
    )
    .await;
    assert_eq!(a.body, created);

    let mut changed = new.clone();
    changed["spec"]["source"]["targetRevision"] = json!("pr-42");
    let a = send(&fake, "POST", "/api/v1/applications", Some(changed.clone())).await;
    a.assert_error(
        400,
        3,
        "existing application spec is different, use upsert flag to force update",
    );
    let mut relabelled = new.clone();
    relabelled["metadata"]["labels"] = json!({"owner": "someone-else"});
    let a = send(&fake, "POST", "/api/v1/applications", Some(relabelled)).await;
    a.assert_error(400, 3, "existing application spec is different");
    assert_eq!(
        fake.app(DEFAULT_NAMESPACE, "preview-42"),
        Some(created.clone())
    );

    let a = send(
        &fake,
        "POST",
        "/api/v1/applications?upsert=true",
        Some(changed),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["spec"]["source"]["targetRevision"], "pr-42");
    assert_eq!(a.body["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(a.body["metadata"]["generation"], 2);
    let a = send(
        &fake,
        "POST",
        "/api/v1/applications?upsert=maybe",
        Some(new),
    )
    .await;
    a.assert_error(400, 3, "upsert");
}

#[tokio::test]
async fn create_needs_a_dns_label_name() {
    let fake = started().await;
    let base = app(DEFAULT_NAMESPACE, "x", false);
    for (ns, name) in [
        ("argocd", ""),
        ("argocd", "Preview_42"),
        ("argocd", "-x"),
        ("Team", "ok"),
    ] {
        let mut a = base.clone();
        a["metadata"]["name"] = json!(name);
        a["metadata"]["namespace"] = json!(ns);
        let answer = send(&fake, "POST", "/api/v1/applications", Some(a)).await;
        answer.assert_error(400, 3, "metadata.");
    }
    let mut no_name = base.clone();
    if let Some(m) = no_name["metadata"].as_object_mut() {
        m.remove("name");
    }
    send(&fake, "POST", "/api/v1/applications", Some(no_name))
        .await
        .assert_error(400, 3, "metadata.name");
    // Without a namespace the app lands in argocd.
    let mut no_ns = base;
    if let Some(m) = no_ns["metadata"].as_object_mut() {
        m.remove("namespace");
    }
    assert_eq!(
        send(&fake, "POST", "/api/v1/applications", Some(no_ns))
            .await
            .status,
        200
    );
    assert!(fake.app(DEFAULT_NAMESPACE, "x").is_some());
    // The body is an Application by swagger.
    let mut bad = app(DEFAULT_NAMESPACE, "y", false);
    bad["spec"]["syncPolicy"]["syncOptions"] = json!({"items": ["A=b"]});
    send(&fake, "POST", "/api/v1/applications", Some(bad))
        .await
        .assert_error(400, 3, "spec.syncPolicy.syncOptions: ");
}

#[tokio::test]
async fn delete_answers_an_empty_object_and_is_recorded() {
    let fake = started().await;
    let before = fake.insert(app("team-a", "preview-42", false));
    fake.insert(app(DEFAULT_NAMESPACE, "keep", false));
    let a = send(
        &fake,
        "DELETE",
        "/api/v1/applications/keep?cascade=false&propagationPolicy=foreground",
        None,
    )
    .await;
    a.assert_error(
        400,
        3,
        "cannot set propagation policy when cascading is disabled",
    );
    let a = send(
        &fake,
        "DELETE",
        "/api/v1/applications/keep?propagationPolicy=orphan",
        None,
    )
    .await;
    a.assert_error(400, 3, "invalid propagation policy: orphan");
    let a = send(
        &fake,
        "DELETE",
        "/api/v1/applications/preview-42?appNamespace=team-a&propagationPolicy=Background",
        // a body on a DELETE is ignored, as grpc-gateway ignores it
        Some(json!({"name": "ignored"})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, json!({}));
    assert!(fake.app("team-a", "preview-42").is_none());
    assert!(fake.app(DEFAULT_NAMESPACE, "keep").is_some());
    assert_eq!(
        fake.deletions(),
        vec![Deletion {
            app: "team-a/preview-42".into(),
            cascade: true,
            propagation_policy: "background".into(),
        }]
    );
    let changes = stream_after(&fake, &rv(&before), 2).await;
    assert_eq!(changes[1].0, "DELETED");
    assert_eq!(changes[1].1["metadata"]["name"], "preview-42");
    // Gone is gone.
    let a = send(
        &fake,
        "DELETE",
        "/api/v1/applications/preview-42?appNamespace=team-a",
        None,
    )
    .await;
    a.assert_error(403, 7, "permission denied");
}
