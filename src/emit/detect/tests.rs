//! Table-driven tests of the detector over Argo CD's own Application objects
//! (../shared/argocd/examples) and variants built from them.

use super::*;
use crate::argocd::model::{HistoryEntry, Info};
use std::collections::HashMap;

const OBSERVED: &str = "2026-11-21T00:00:00Z";

fn fixture(name: &str) -> Application {
    let path = format!(
        "{}/../shared/argocd/examples/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The real full-status Application (velero-test): healthy, history 14..=23, all at one revision.
fn velero() -> Application {
    fixture("application-full-status.yaml")
}

/// Environment membership as a plain map: env id -> number of *other* apps in it.
#[derive(Default)]
struct Envs(HashMap<String, usize>);

impl EnvironmentMembers for Envs {
    fn others_in(&self, environment_id: &str, _except_key: &str) -> usize {
        self.0.get(environment_id).copied().unwrap_or(0)
    }
}

fn cfg() -> DetectConfig {
    DetectConfig {
        environment_label: Some("cdevents.dev/environment".into()),
        custom_data_labels: vec!["project".into()],
    }
}

/// The state the gateway would have recorded from `app` at an earlier observation.
fn recorded(app: &Application) -> AppState {
    detect(
        &cfg(),
        None,
        Change::Applied(app),
        &Envs::default(),
        OBSERVED,
    )
    .next
    .unwrap_or_default()
}

fn push_history(app: &mut Application, revision: &str) {
    let id = app.status.history.iter().map(|h| h.id).max().unwrap_or(-1) + 1;
    let mut entry = app.status.history.last().cloned().unwrap_or_default();
    entry.id = id;
    entry.revision = Some(revision.to_string());
    entry.deployed_at = Some(format!("2024-03-06T00:00:{:02}Z", id % 60));
    app.status.history.push(entry);
}

fn kinds(d: &Detection) -> Vec<EventKind> {
    d.events.iter().map(|e| e.kind).collect()
}

type Case = (
    &'static str,
    Box<dyn Fn() -> (Option<AppState>, Application, Envs)>,
    Vec<EventKind>,
);

#[test]
fn mapping_table() {
    use EventKind::*;
    let new_rev = "1111111111111111111111111111111111111111";
    let cases: Vec<Case> = vec![
        (
            "first sight of a deployed app: its environment is new, its history is the baseline",
            Box::new(|| (None, velero(), Envs::default())),
            vec![EnvironmentCreated],
        ),
        (
            "first sight in an environment that already has apps",
            Box::new(|| {
                (
                    None,
                    velero(),
                    Envs([("gke-alpha-01-europe-west1/test-lla".to_string(), 2)].into()),
                )
            }),
            vec![],
        ),
        (
            "nothing changed",
            Box::new(|| (Some(recorded(&velero())), velero(), Envs::default())),
            vec![],
        ),
        (
            "a re-sync of the same revision and source is not news",
            Box::new(|| {
                let before = recorded(&velero());
                let mut app = velero();
                push_history(&mut app, "ea8759964626a583667a2bfd08f334ec2070040a");
                (Some(before), app, Envs::default())
            }),
            vec![],
        ),
        (
            "a new revision, healthy: upgraded",
            Box::new(move || {
                let before = recorded(&velero());
                let mut app = velero();
                push_history(&mut app, new_rev);
                (Some(before), app, Envs::default())
            }),
            vec![ServiceUpgraded],
        ),
        (
            "the same revision with other parameters: upgraded",
            Box::new(|| {
                let before = recorded(&velero());
                let mut app = velero();
                push_history(&mut app, "ea8759964626a583667a2bfd08f334ec2070040a");
                if let Some(h) = app.status.history.last_mut()
                    && let Some(s) = h.source.as_mut()
                {
                    s.rest.insert(
                        "helm".into(),
                        serde_json::json!({"parameters": [{"name": "replicas", "value": "3"}]}),
                    );
                }
                (Some(before), app, Envs::default())
            }),
            vec![ServiceUpgraded],
        ),
        (
            "a new revision while still progressing: nothing yet",
            Box::new(move || {
                let before = recorded(&velero());
                let mut app = velero();
                push_history(&mut app, new_rev);
                app.status.health.status = "Progressing".into();
                (Some(before), app, Envs::default())
            }),
            vec![],
        ),
        (
            "back to a revision older than the previous one: rolled back",
            Box::new(move || {
                let mut app = velero();
                push_history(&mut app, new_rev);
                let before = recorded(&app);
                push_history(&mut app, "ea8759964626a583667a2bfd08f334ec2070040a");
                (Some(before), app, Envs::default())
            }),
            vec![ServiceRolledback],
        ),
        (
            "a rollback the gateway made (operation info) is rolled back even to the previous revision",
            Box::new(move || {
                let before = recorded(&velero());
                let mut app = velero();
                push_history(&mut app, new_rev);
                if let Some(op) = app.status.operation_state.as_mut() {
                    op.operation.info.push(Info {
                        name: INFO_ACTION.into(),
                        value: "rollback".into(),
                    });
                }
                (Some(before), app, Envs::default())
            }),
            vec![ServiceRolledback],
        ),
        (
            "the first history entry of an app seen before it was ever deployed: deployed",
            Box::new(|| {
                let mut fresh = velero();
                fresh.status.history.clear();
                let before = recorded(&fresh);
                (Some(before), velero(), Envs::default())
            }),
            vec![ServiceDeployed],
        ),
        (
            "the sync-succeeded example with no health yet is not deployed",
            Box::new(|| {
                let app = fixture("application-sync-succeeded.yaml");
                let mut before = recorded(&app);
                before.last_history_id = None;
                let mut now = app.clone();
                now.status.history.push(HistoryEntry {
                    id: 0,
                    revision: Some("a".repeat(40)),
                    ..Default::default()
                });
                (Some(before), now, Envs::default())
            }),
            vec![],
        ),
        (
            "health Degraded: one incident",
            Box::new(|| {
                let before = recorded(&velero());
                let mut app = velero();
                app.status.health.status = "Degraded".into();
                (Some(before), app, Envs::default())
            }),
            vec![IncidentDetected],
        ),
        (
            "still Degraded: no second incident",
            Box::new(|| {
                let mut app = velero();
                app.status.health.status = "Degraded".into();
                let before = recorded(&app);
                (Some(before), app, Envs::default())
            }),
            vec![],
        ),
        (
            "Healthy again: resolved",
            Box::new(|| {
                let mut sick = velero();
                sick.status.health.status = "Degraded".into();
                (Some(recorded(&sick)), velero(), Envs::default())
            }),
            vec![IncidentResolved],
        ),
        (
            "Progressing after Degraded: still open",
            Box::new(|| {
                let mut sick = velero();
                sick.status.health.status = "Degraded".into();
                let mut app = velero();
                app.status.health.status = "Progressing".into();
                (Some(recorded(&sick)), app, Envs::default())
            }),
            vec![],
        ),
        (
            "an operation that is still running is neither a deploy nor an incident",
            Box::new(|| {
                let app = fixture("application-operation-running.yaml");
                (Some(recorded(&app)), app, Envs::default())
            }),
            vec![],
        ),
        (
            "sync Failed: incident",
            Box::new(|| {
                let app = fixture("application-sync-succeeded.yaml");
                let before = recorded(&app);
                let mut failed = app.clone();
                if let Some(op) = failed.status.operation_state.as_mut() {
                    op.phase = "Failed".into();
                    op.started_at = Some("2026-01-01T00:00:00Z".into());
                }
                (Some(before), failed, Envs::default())
            }),
            vec![IncidentDetected],
        ),
        (
            "sync Error after a resolved failure of the same operation: not reported again",
            Box::new(|| {
                let mut failed = fixture("application-sync-succeeded.yaml");
                if let Some(op) = failed.status.operation_state.as_mut() {
                    op.phase = "Error".into();
                }
                let mut before = recorded(&failed);
                before.incidents.clear();
                (Some(before), failed, Envs::default())
            }),
            vec![],
        ),
        (
            "sync status Unknown: incident; known again: resolved",
            Box::new(|| {
                let mut unknown = velero();
                unknown.status.sync.status = "Unknown".into();
                (Some(recorded(&velero())), unknown, Envs::default())
            }),
            vec![IncidentDetected],
        ),
        (
            "sync status known again: resolved",
            Box::new(|| {
                let mut unknown = velero();
                unknown.status.sync.status = "Unknown".into();
                (Some(recorded(&unknown)), velero(), Envs::default())
            }),
            vec![IncidentResolved],
        ),
        (
            "external URLs appear: published; they change: published again",
            Box::new(|| {
                let before = recorded(&velero());
                let mut app = velero();
                app.status.summary.external_urls = vec!["https://velero.example.com".into()];
                (Some(before), app, Envs::default())
            }),
            vec![ServicePublished],
        ),
        (
            "the same URLs in another order: nothing",
            Box::new(|| {
                let mut app = velero();
                app.status.summary.external_urls = vec!["https://b".into(), "https://a".into()];
                let before = recorded(&app);
                app.status.summary.external_urls = vec!["https://a".into(), "https://b".into()];
                (Some(before), app, Envs::default())
            }),
            vec![],
        ),
        (
            "moved to another destination: new environment created, old one deleted",
            Box::new(|| {
                let before = recorded(&velero());
                let mut app = velero();
                app.spec.destination.namespace = Some("test-llb".into());
                (Some(before), app, Envs::default())
            }),
            vec![EnvironmentCreated, EnvironmentDeleted],
        ),
        (
            "the environment label wins over the destination",
            Box::new(|| {
                let before = recorded(&velero());
                let mut app = velero();
                app.metadata
                    .labels
                    .get_or_insert_default()
                    .insert("cdevents.dev/environment".into(), "production".into());
                (
                    Some(before),
                    app,
                    Envs([("production".to_string(), 1)].into()),
                )
            }),
            vec![EnvironmentDeleted],
        ),
        (
            "recreated under the same name (new uid): removed, then a new app",
            Box::new(|| {
                let before = recorded(&velero());
                let mut app = velero();
                app.metadata.uid = Some("another-uid".into());
                (Some(before), app, Envs::default())
            }),
            vec![ServiceRemoved, EnvironmentDeleted, EnvironmentCreated],
        ),
    ];

    for (name, build, want) in cases {
        let (prev, app, envs) = build();
        let d = detect(
            &cfg(),
            prev.as_ref(),
            Change::Applied(&app),
            &envs,
            OBSERVED,
        );
        assert_eq!(kinds(&d), want, "{name}");
        // Determinism: the same inputs give the same events, ids included.
        let again = detect(
            &cfg(),
            prev.as_ref(),
            Change::Applied(&app),
            &envs,
            OBSERVED,
        );
        assert_eq!(d, again, "{name}: not deterministic");
    }
}

#[test]
fn deletion_table() {
    use EventKind::*;
    let mut sick = velero();
    sick.status.health.status = "Degraded".into();
    type Row = (&'static str, Option<AppState>, bool, usize, Vec<EventKind>);
    let cases: Vec<Row> = vec![
        (
            "last app of its environment",
            Some(recorded(&velero())),
            true,
            0,
            vec![ServiceRemoved, EnvironmentDeleted],
        ),
        (
            "other apps remain in the environment",
            Some(recorded(&velero())),
            true,
            1,
            vec![ServiceRemoved],
        ),
        (
            "gone from a re-list (no object)",
            Some(recorded(&velero())),
            false,
            0,
            vec![ServiceRemoved, EnvironmentDeleted],
        ),
        (
            "open incidents are resolved first",
            Some(recorded(&sick)),
            true,
            1,
            vec![IncidentResolved, ServiceRemoved],
        ),
        ("never recorded: nothing to say", None, true, 0, vec![]),
    ];
    let app = velero();
    for (name, prev, with_object, others, want) in cases {
        let envs = Envs([("gke-alpha-01-europe-west1/test-lla".to_string(), others)].into());
        let change = Change::Deleted(with_object.then_some(&app));
        let d = detect(&cfg(), prev.as_ref(), change, &envs, OBSERVED);
        assert_eq!(kinds(&d), want, "{name}");
        assert_eq!(d.next, None, "{name}: state must be forgotten");
    }
}

#[test]
fn deploy_events_carry_argo_cd_facts() {
    let before = recorded(&velero());
    let mut app = velero();
    push_history(&mut app, "1111111111111111111111111111111111111111");
    if let Some(op) = app.status.operation_state.as_mut() {
        op.operation.info = vec![
            Info {
                name: INFO_CHAIN_ID.into(),
                value: "chain-1".into(),
            },
            Info {
                name: INFO_TRIGGER_ID.into(),
                value: "trigger-1".into(),
            },
        ];
    }
    let d = detect(
        &cfg(),
        Some(&before),
        Change::Applied(&app),
        &Envs::default(),
        OBSERVED,
    );
    let [e] = d.events.as_slice() else {
        panic!("{:?}", kinds(&d))
    };
    assert_eq!(e.subject_id, "argo-cd/velero-test");
    assert_eq!(e.environment.id, "gke-alpha-01-europe-west1/test-lla");
    assert_eq!(
        e.timestamp, "2024-03-06T00:00:24Z",
        "deployedAt of the new entry"
    );
    assert_eq!(
        e.artifact_id.as_deref(),
        Some("pkg:oci/nginx?tag=latest"),
        "from status.summary.images"
    );
    assert_eq!(
        e.chain,
        Some(Chain {
            chain_id: Some("chain-1".into()),
            trigger_id: Some("trigger-1".into())
        })
    );
    let data = &e.custom_data;
    assert_eq!(data["application"]["project"], "sre");
    assert_eq!(data["historyId"], 24);
    assert_eq!(data["labels"]["project"], "sre", "configured label copied");
    assert!(
        data["labels"].get("foo").is_none(),
        "unconfigured label not copied"
    );
    assert_eq!(data["health"]["status"], "Healthy");
    let next = d.next.unwrap_or_default();
    assert_eq!(next.last_history_id, Some(24));
}

#[test]
fn multi_source_apps_get_a_purl_for_their_first_source_revision() {
    let app = fixture("application-multisource-sync-succeeded.yaml");
    let mut before = recorded(&app);
    before.deployed = false;
    let mut now = app.clone();
    now.status.health.status = "Healthy".into();
    now.status.history.push(HistoryEntry {
        id: 0,
        revisions: vec!["a".repeat(40), "b".repeat(40), "c".repeat(40)],
        sources: now.spec.sources.clone(),
        deployed_at: Some("2018-09-21T23:50:29Z".into()),
        ..Default::default()
    });
    let d = detect(
        &cfg(),
        Some(&before),
        Change::Applied(&now),
        &Envs::default(),
        OBSERVED,
    );
    let [e] = d.events.as_slice() else {
        panic!("{:?}", kinds(&d))
    };
    assert_eq!(e.kind, EventKind::ServiceDeployed);
    assert_eq!(
        e.artifact_id.as_deref(),
        Some(
            format!(
                "pkg:github/argoproj/argocd-example-apps@{}#some/path",
                "a".repeat(40)
            )
            .as_str()
        )
    );
    assert_eq!(
        e.custom_data["revisions"],
        serde_json::json!(["a".repeat(40), "b".repeat(40), "c".repeat(40)])
    );
}

#[test]
fn an_incident_keeps_its_subject_id_from_detected_to_resolved() {
    let healthy = velero();
    let mut sick = velero();
    sick.status.health.status = "Degraded".into();
    sick.status.health.message = Some("back-off restarting failed container".into());
    let s0 = recorded(&healthy);
    let d1 = detect(
        &cfg(),
        Some(&s0),
        Change::Applied(&sick),
        &Envs::default(),
        OBSERVED,
    );
    let s1 = d1.next.clone().unwrap_or_default();
    let d2 = detect(
        &cfg(),
        Some(&s1),
        Change::Applied(&healthy),
        &Envs::default(),
        OBSERVED,
    );
    let (open, close) = (&d1.events[0], &d2.events[0]);
    assert_eq!(open.kind, EventKind::IncidentDetected);
    assert_eq!(close.kind, EventKind::IncidentResolved);
    assert_eq!(open.subject_id, close.subject_id);
    assert_ne!(open.id, close.id);
    assert_eq!(
        open.description.as_deref(),
        Some("health Degraded: back-off restarting failed container")
    );
    assert_eq!(open.service_id.as_deref(), Some("argo-cd/velero-test"));
    // A second, later degradation is a new incident.
    let s2 = d2.next.unwrap_or_default();
    let d3 = detect(
        &cfg(),
        Some(&s2),
        Change::Applied(&sick),
        &Envs::default(),
        OBSERVED,
    );
    assert_ne!(d3.events[0].subject_id, open.subject_id);
}

#[test]
fn pending_operation_fixture_parses_and_is_not_a_deploy() {
    let app = fixture("application-pending-operation-dryrun.yaml");
    assert!(app.operation.is_some(), "top-level .operation is read");
    let before = recorded(&app);
    let d = detect(
        &cfg(),
        Some(&before),
        Change::Applied(&app),
        &Envs::default(),
        OBSERVED,
    );
    assert!(
        kinds(&d)
            .iter()
            .all(|k| !matches!(k, EventKind::ServiceDeployed | EventKind::ServiceUpgraded))
    );
}

#[test]
fn events_that_can_recur_get_new_ids_each_time() {
    // URLs A -> B -> A: three published events, three ids.
    let mut app = velero();
    let mut state = recorded(&app);
    let mut ids = Vec::new();
    for urls in [["https://a"], ["https://b"], ["https://a"]] {
        app.status.summary.external_urls = urls.iter().map(|u| u.to_string()).collect();
        let d = detect(
            &cfg(),
            Some(&state),
            Change::Applied(&app),
            &Envs::default(),
            OBSERVED,
        );
        assert_eq!(kinds(&d), vec![EventKind::ServicePublished]);
        ids.push(d.events[0].id);
        state = d.next.unwrap_or_default();
    }
    // Leaving an environment and coming back: new ids for created and deleted.
    let home = velero();
    let mut away = velero();
    away.spec.destination.namespace = Some("elsewhere".into());
    for next in [&away, &home, &away] {
        let d = detect(
            &cfg(),
            Some(&state),
            Change::Applied(next),
            &Envs::default(),
            OBSERVED,
        );
        assert_eq!(
            kinds(&d),
            vec![EventKind::EnvironmentCreated, EventKind::EnvironmentDeleted]
        );
        ids.extend(d.events.iter().map(|e| e.id));
        state = d.next.unwrap_or_default();
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "an id was reused");
}
