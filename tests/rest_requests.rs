//! Every request the REST backend can make, rendered from each kind of step, is valid by
//! Argo CD's swagger.json: path, method, query parameters and body (strict: unknown fields
//! fail). The end-to-end tests check the requests a running gateway sends the same way.

mod support;

use argocd_cdevents::argocd::rest::render;
use argocd_cdevents::argocd::step::{Step, SyncStep};
use argocd_cdevents::react::matcher::AppRef;
use serde_json::json;
use support::swagger;

#[test]
fn every_step_renders_a_request_swagger_accepts() {
    let app = AppRef {
        namespace: "team-a".into(),
        name: "web".into(),
    };
    let steps = [
        Step::Patch {
            patch: json!({"spec": {"syncPolicy": {"automated": {"enabled": false}}}}),
        },
        Step::Sync(SyncStep {
            revision: Some("abc".into()),
            prune: true,
            sync_options: vec!["CreateNamespace=true".into()],
            resources: vec![
                json!({"group": "apps", "kind": "Deployment", "name": "web", "namespace": "web"}),
            ],
            infos: vec![("cdevents.chainId".into(), "c".into())],
            ..SyncStep::default()
        }),
        Step::Sync(SyncStep {
            revisions: vec!["a".into(), "b".into()],
            source_positions: vec![1, 2],
            infos: vec![("cdevents.action".into(), "rollback".into())],
            ..SyncStep::default()
        }),
        Step::Refresh { hard: true },
        Step::Create {
            app: json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                "metadata": {"name": "web", "namespace": "team-a", "labels": {"app.kubernetes.io/managed-by": "argocd-cdevents"},
                    "annotations": {"cdevents.dev/chain-id": "c"}},
                "spec": {"project": "default", "source": {"repoURL": "https://g/x.git", "path": ".", "targetRevision": "main"},
                    "destination": {"server": "https://kubernetes.default.svc", "namespace": "x"}}}),
        },
        Step::Delete {
            cascade: true,
            propagation_policy: "foreground".into(),
        },
    ];
    for step in &steps {
        let req = render(step, &app);
        let url = reqwest::Url::parse(&format!("http://argocd{}", req.path))
            .unwrap_or_else(|e| panic!("{e}"));
        let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        if let Err(e) = swagger::check(req.method, url.path(), &query) {
            panic!("{}: {e}", step.name());
        }
        if let Some(body) = &req.body
            && let Err(e) = swagger::check_body(req.method, url.path(), body)
        {
            panic!("{} body {body}: {e}", step.name());
        }
        if req.method != "POST" || !req.path.starts_with("/api/v1/applications?") {
            assert!(
                query.contains(&("appNamespace".into(), "team-a".into()))
                    || req
                        .body
                        .as_ref()
                        .is_some_and(|b| b["appNamespace"] == "team-a"),
                "{req:?}"
            );
        }
    }
    // A misspelt field would fail: the check is not vacuous.
    assert!(
        swagger::check_body(
            "POST",
            "/api/v1/applications/web/sync",
            &json!({"syncOptions": ["x"]})
        )
        .is_err()
    );
}
