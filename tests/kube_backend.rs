//! The Kubernetes backend of the react flow against the Kubernetes API test double (which
//! checks writes against the Application CRD schema and the API server's rules): a sync is
//! a merge patch of `.operation` with Kubernetes field names and the gateway's user name,
//! refused while another operation is set; refresh is the annotation; create, patch and a
//! cascading delete (Argo CD's resources finalizer first) behave as the controller expects.

mod support;

use argocd_cdevents::argocd::kube_backend::KubeBackend;
use argocd_cdevents::argocd::step::{Step, SyncStep};
use argocd_cdevents::argocd::{ArgoCd, ArgoError};
use argocd_cdevents::react::matcher::AppRef;
use serde_json::json;
use support::fake_kube::FakeKube;

fn web() -> serde_json::Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "web", "namespace": "argocd", "labels": {"app.kubernetes.io/name": "web"}},
        "spec": {"project": "default",
            "source": {"repoURL": "https://github.com/acme/web.git", "path": "deploy", "targetRevision": "main"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "web"}}
    })
}

#[tokio::test]
async fn every_step_through_the_kubernetes_api() {
    let fake = FakeKube::start().await;
    fake.apply(web());
    let backend = KubeBackend::new(fake.client(), vec!["argocd".into()]);
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
        .list("app.kubernetes.io/name=web", Some("default"))
        .await
        .unwrap_or_default();
    assert_eq!(listed.len(), 1);
    assert!(
        backend
            .list("app.kubernetes.io/name=web", Some("other"))
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
