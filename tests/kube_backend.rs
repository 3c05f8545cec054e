//! The Kubernetes backend of the react flow against the Kubernetes API test double (which
//! checks writes against the Application CRD schema and the API server's rules): a sync is
//! a merge patch of `.operation` with Kubernetes field names and the gateway's user name,
//! refused while another operation is set; refresh is the annotation; create, patch and a
//! cascading delete (Argo CD's resources finalizer first) behave as the controller expects;
//! server errors are retried, a 4xx never is, and a retry whose first attempt landed
//! unanswered counts as done without acting twice. Selector targets and the preview sweeper
//! look in the namespaces the policies loaded at the time allow, reloads included.

mod support;

use argocd_cdevents::argocd::kube_backend::KubeBackend;
use argocd_cdevents::argocd::step::{Step, SyncStep};
use argocd_cdevents::argocd::{ArgoCd, ArgoError};
use argocd_cdevents::react::matcher::AppRef;
use axum::http::Method;
use serde_json::json;
use support::fake_kube::{FakeKube, Fault};

fn web() -> serde_json::Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "web", "namespace": "argocd", "labels": {"app.kubernetes.io/name": "web"}},
        "spec": {"project": "default",
            "source": {"repoURL": "https://github.com/acme/web.git", "path": "deploy", "targetRevision": "main"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "web"}}
    })
}

fn argocd() -> Vec<String> {
    vec!["argocd".into()]
}

/// The backend on a client built as the gateway builds it (kube-rs's own retry layer off).
fn backend(fake: &FakeKube, retries: u32) -> KubeBackend {
    let config = KubeBackend::client_config(fake.config(), std::time::Duration::from_secs(10));
    let client = kube::Client::try_from(config).unwrap_or_else(|e| panic!("{e}"));
    KubeBackend::new(client, retries)
}

#[tokio::test]
async fn every_step_through_the_kubernetes_api() {
    let fake = FakeKube::start().await;
    fake.apply(web());
    let backend = backend(&fake, 3);
    let target = AppRef {
        namespace: "argocd".into(),
        name: "web".into(),
    };

    assert!(backend.get(&target).await.ok().flatten().is_some());
    let missing = AppRef {
        namespace: "argocd".into(),
        name: "nope".into(),
    };
    assert_eq!(backend.get(&missing).await, Ok(None));
    let listed = backend
        .list("app.kubernetes.io/name=web", Some("default"), &argocd())
        .await
        .unwrap_or_default();
    assert_eq!(listed.len(), 1);
    assert!(
        backend
            .list("app.kubernetes.io/name=web", Some("other"), &argocd())
            .await
            .unwrap_or_default()
            .is_empty()
    );

    let sync = Step::Sync(SyncStep {
        revision: Some("abc123".into()),
        prune: true,
        sync_options: vec!["Validate=false".into()],
        infos: vec![
            ("cdevents.chainId".into(), "c-1".into()),
            ("cdevents.triggerId".into(), "t-1".into()),
        ],
        ..SyncStep::default()
    });
    backend
        .execute(&target, &sync)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let app = fake.edit(|w| w.get("argocd", "web")).unwrap_or_default();
    assert_eq!(
        app["operation"],
        json!({
            "initiatedBy": {"username": "argocd-cdevents"},
            "info": [{"name": "cdevents.chainId", "value": "c-1"}, {"name": "cdevents.triggerId", "value": "t-1"}],
            "sync": {"revision": "abc123", "prune": true, "syncOptions": ["Validate=false"]}
        })
    );
    // The controller has not picked it up: a second operation is refused, nothing overwritten.
    let again = backend.execute(&target, &sync).await;
    assert!(
        matches!(&again, Err(e) if e.is_operation_in_progress()),
        "{again:?}"
    );

    backend
        .execute(&target, &Step::Refresh { hard: true })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let app = fake.edit(|w| w.get("argocd", "web")).unwrap_or_default();
    assert_eq!(
        app["metadata"]["annotations"]["argocd.argoproj.io/refresh"],
        "hard"
    );

    let patch = Step::Patch {
        patch: json!({"spec": {"source": {"kustomize": {"images": ["ghcr.io/acme/web:2.0.0"]}}}}),
    };
    backend
        .execute(&target, &patch)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let app = fake.edit(|w| w.get("argocd", "web")).unwrap_or_default();
    assert_eq!(
        app["spec"]["source"]["kustomize"]["images"],
        json!(["ghcr.io/acme/web:2.0.0"])
    );
    assert_eq!(
        app["spec"]["source"]["repoURL"],
        "https://github.com/acme/web.git"
    );

    let mut preview = web();
    preview["metadata"]["name"] = json!("pr-7");
    let pr = AppRef {
        namespace: "argocd".into(),
        name: "pr-7".into(),
    };
    backend
        .execute(
            &pr,
            &Step::Create {
                app: preview.clone(),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(fake.edit(|w| w.get("argocd", "pr-7")).is_some());
    let dup = backend.execute(&pr, &Step::Create { app: preview }).await;
    assert!(
        matches!(dup, Err(ArgoError::Refused { status: 409, .. })),
        "{dup:?}"
    );

    backend
        .execute(
            &pr,
            &Step::Delete {
                cascade: true,
                propagation_policy: "foreground".into(),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The finalizer makes Argo CD delete the resources first: the object waits with a
    // deletionTimestamp until the controller removes the finalizer.
    let gone = fake.edit(|w| w.get("argocd", "pr-7")).unwrap_or_default();
    assert_eq!(
        gone["metadata"]["finalizers"],
        json!(["resources-finalizer.argocd.argoproj.io"])
    );
    assert!(gone["metadata"]["deletionTimestamp"].is_string(), "{gone}");

    let outcomes: Vec<&str> = fake.requests().iter().map(|r| r.outcome).collect();
    // Rejected only where expected: the missing app (404) and the duplicate create (409).
    assert_eq!(
        outcomes,
        [
            "get", "rejected", "list", "list", "get", "patch", "get", "patch", "patch", "create",
            "rejected", "get", "patch", "delete"
        ]
    );
}

fn sync_step(trigger: &str) -> SyncStep {
    SyncStep {
        revision: Some("abc123".into()),
        infos: vec![
            ("cdevents.chainId".into(), "c-1".into()),
            ("cdevents.triggerId".into(), trigger.into()),
        ],
        ..SyncStep::default()
    }
}

/// (method, outcome) of every request the double answered since `from`.
fn answered(fake: &FakeKube, from: usize) -> Vec<(String, &'static str)> {
    fake.requests()[from..]
        .iter()
        .map(|r| (r.method.clone(), r.outcome))
        .collect()
}

fn fault(method: Method, code: u16, after_applying: bool) -> Fault {
    Fault {
        method,
        code,
        after_applying,
    }
}

#[tokio::test]
async fn server_errors_are_retried_and_a_landed_first_attempt_counts_as_done() {
    let fake = FakeKube::start().await;
    fake.apply(web());
    let backend = backend(&fake, 2);
    let web_ref = AppRef {
        namespace: "argocd".into(),
        name: "web".into(),
    };
    let pairs = |v: &[(&str, &'static str)]| -> Vec<(String, &'static str)> {
        v.iter().map(|(m, o)| (m.to_string(), *o)).collect()
    };

    // A 503 on a read: read again.
    let from = fake.requests().len();
    fake.fail_next(fault(Method::GET, 503, false));
    assert!(backend.get(&web_ref).await.ok().flatten().is_some());
    assert_eq!(
        answered(&fake, from),
        pairs(&[("GET", "fault"), ("GET", "get")])
    );

    // A sync whose patch landed but whose answer was a 504: the retry reads the Application,
    // finds its own operation and stops there. One operation, set once.
    let from = fake.requests().len();
    fake.fail_next(fault(Method::PATCH, 504, true));
    backend
        .execute(&web_ref, &Step::Sync(sync_step("t-1")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        answered(&fake, from),
        pairs(&[
            ("GET", "get"),
            ("PATCH", "fault-after-applying"),
            ("GET", "get")
        ])
    );
    let app = fake.edit(|w| w.get("argocd", "web")).unwrap_or_default();
    assert_eq!(app["operation"]["info"][1]["value"], "t-1", "{app}");

    // Another sync is still refused (409, never retried), even with our operation pending,
    // and on a retry after a 500: an operation with other info is not its own.
    let from = fake.requests().len();
    fake.fail_next(fault(Method::GET, 500, false));
    let other = backend
        .execute(&web_ref, &Step::Sync(sync_step("t-2")))
        .await;
    assert!(
        matches!(&other, Err(e) if e.is_operation_in_progress()),
        "{other:?}"
    );
    assert_eq!(
        answered(&fake, from),
        pairs(&[("GET", "fault"), ("GET", "get")])
    );

    // The first attempt of a sync landed unanswered and the controller has already run it:
    // `.operation` is gone and the operation is in `status.operationState`. Its retry (here
    // after a 500 on the read) finds it there and does not patch again.
    let t3 = sync_step("t-3");
    fake.edit(|w| {
        let mut app = w.get("argocd", "web").unwrap_or_default();
        if let Some(m) = app.as_object_mut() {
            m.remove("operation");
        }
        app["status"]["operationState"] = json!({
            "operation": argocd_cdevents::argocd::kube_backend::operation(&t3),
            "phase": "Succeeded",
        });
        w.apply(app)
    });
    let from = fake.requests().len();
    fake.fail_next(fault(Method::GET, 500, false));
    backend
        .execute(&web_ref, &Step::Sync(t3))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        answered(&fake, from),
        pairs(&[("GET", "fault"), ("GET", "get")])
    );
    // Without a retry, the same finished operation is no reason to skip: a new sync is set.
    backend
        .execute(&web_ref, &Step::Sync(sync_step("t-3")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let app = fake.edit(|w| w.get("argocd", "web")).unwrap_or_default();
    assert_eq!(app["operation"]["info"][1]["value"], "t-3", "{app}");

    // A create that landed unanswered: the retry's 409 AlreadyExists counts as done.
    let mut preview = web();
    preview["metadata"]["name"] = json!("pr-8");
    let pr = AppRef {
        namespace: "argocd".into(),
        name: "pr-8".into(),
    };
    let from = fake.requests().len();
    fake.fail_next(fault(Method::POST, 500, true));
    backend
        .execute(&pr, &Step::Create { app: preview })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        answered(&fake, from),
        pairs(&[("POST", "fault-after-applying"), ("POST", "rejected")])
    );
    assert!(fake.edit(|w| w.get("argocd", "pr-8")).is_some());

    // A delete that landed unanswered: the retry's 404 counts as done.
    let from = fake.requests().len();
    fake.fail_next(fault(Method::DELETE, 503, true));
    let delete = Step::Delete {
        cascade: false,
        propagation_policy: "foreground".into(),
    };
    backend
        .execute(&pr, &delete)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        answered(&fake, from),
        pairs(&[("DELETE", "fault-after-applying"), ("DELETE", "rejected")])
    );
    assert!(fake.edit(|w| w.get("argocd", "pr-8")).is_none());

    // A 4xx is never retried: deleting what is not there is one request, refused.
    let from = fake.requests().len();
    let missing = backend.execute(&pr, &delete).await;
    assert!(
        matches!(missing, Err(ArgoError::Refused { status: 404, .. })),
        "{missing:?}"
    );
    assert_eq!(answered(&fake, from), pairs(&[("DELETE", "rejected")]));

    // Retries run out: 1 + 2 attempts, then the last failure.
    let from = fake.requests().len();
    for _ in 0..3 {
        fake.fail_next(fault(Method::GET, 503, false));
    }
    let out = backend.get(&web_ref).await;
    assert!(
        matches!(out, Err(ArgoError::Refused { status: 503, .. })),
        "{out:?}"
    );
    assert_eq!(
        answered(&fake, from),
        pairs(&[("GET", "fault"), ("GET", "fault"), ("GET", "fault")])
    );
}

/// An expired preview Application owned by the gateway, in `namespace`.
fn expired_preview(namespace: &str) -> serde_json::Value {
    let mut app = web();
    app["metadata"] = json!({
        "name": "pr-7", "namespace": namespace,
        "labels": {"app.kubernetes.io/managed-by": "argocd-cdevents", "cdevents.dev/policy": "preview"},
        "annotations": {"cdevents.dev/expires-at": "2026-01-01T00:00:00Z"}
    });
    app
}

#[tokio::test]
async fn a_selector_lists_only_the_namespaces_it_is_given() {
    let fake = FakeKube::start().await;
    fake.apply(web());
    let mut elsewhere = web();
    elsewhere["metadata"]["namespace"] = json!("team-b");
    fake.apply(elsewhere);
    let backend = backend(&fake, 0);
    let names = |apps: Vec<serde_json::Value>| -> Vec<String> {
        apps.iter()
            .map(|a| {
                format!(
                    "{}/{}",
                    a["metadata"]["namespace"].as_str().unwrap_or_default(),
                    a["metadata"]["name"].as_str().unwrap_or_default()
                )
            })
            .collect()
    };
    let only = backend
        .list("app.kubernetes.io/name=web", None, &argocd())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names(only), ["argocd/web"]);
    let both = backend
        .list(
            "app.kubernetes.io/name=web",
            None,
            &["argocd".into(), "team-b".into()],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names(both), ["argocd/web", "team-b/web"]);
}

/// The sweeper looks for expired previews in the namespaces of the policies loaded now: a
/// policy reloaded to allow another namespace is honoured without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_follows_the_namespaces_of_reloaded_policies() {
    use argocd_cdevents::react::{PolicyHandle, policy::parse_file};
    let fake = FakeKube::start().await;
    fake.apply(expired_preview("team-b"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = support::engine::sqlite_store(dir.path()).await;
    let policy = |namespaces: &str| {
        let text = format!(
            "name: refresh-web\non: {{types: [dev.cdevents.artifact.packaged]}}\ntarget: {{selector: \"app.kubernetes.io/name=web\", namespaces: {namespaces}}}\naction: {{refresh: {{}}}}\n"
        );
        argocd_cdevents::react::policy::PolicySet::new(
            parse_file("p.yaml", &text).unwrap_or_else(|e| panic!("{e}")),
        )
    };
    let handle = PolicyHandle::new(policy("[argocd]"));
    let engine = support::engine::engine(
        store,
        std::sync::Arc::new(backend(&fake, 0)),
        handle.clone(),
    );
    let now = chrono::Utc::now();
    assert_eq!(
        engine.sweep_once(now).await,
        Ok(0),
        "team-b is not allowed yet"
    );
    assert!(fake.edit(|w| w.get("team-b", "pr-7")).is_some());
    handle.set(policy("[argocd, team-b]"));
    assert_eq!(engine.sweep_once(now).await, Ok(1));
}
