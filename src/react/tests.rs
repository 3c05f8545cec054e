//! Table-driven tests of the react flow's pure core — policy loading, matching, planning —
//! over real fixtures: the shipped policies/ with their testdata, Argo CD's own example
//! Applications (../shared/argocd/examples) and the CDEvents conformance events.

use super::inbound::Inbound;
use super::matcher::{Aim, AppRef, match_event};
use super::plan::{guard, image_from_purl, plan};
use super::policy::{PolicySet, load_dir, parse_file};
use super::simulate::{read_event, simulate};
use crate::argocd::step::Step;
use serde_json::{Value, json};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn argo_example(name: &str) -> Value {
    let p = root().join("../shared/argocd/examples").join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn cdevent(name: &str, edit: impl FnOnce(&mut Value)) -> Inbound {
    let p = root()
        .join("../shared/cdevents/v0.5.1/examples")
        .join(format!("{name}.json"));
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_default()).unwrap_or_default();
    edit(&mut v);
    read_event(&v.to_string()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn set(yaml: &str) -> PolicySet {
    PolicySet::new(parse_file("p.yaml", yaml).unwrap_or_else(|e| panic!("{e}")))
}

#[test]
fn the_shipped_policies_decide_what_their_readme_says() {
    let policies = load_dir(&root().join("policies")).unwrap_or_else(|e| panic!("{e}"));
    let apps: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(root().join("policies/testdata/apps.json")).unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("apps.json: {e}"));
    // (event file, policy, application, reason prefix, method and path of the main call)
    let rows = [
        (
            "artifact-packaged-web",
            "update-web-image-in-dev",
            "argocd/web-dev",
            "updateImage: image ghcr.io/acme/web:1.4.2",
            "POST",
            "/api/v1/applications/web-dev/sync",
        ),
        (
            "incident-detected-production",
            "rollback-on-incident",
            "argocd/shop-web",
            "rollback: roll back to history id 12",
            "POST",
            "/api/v1/applications/shop-web/sync",
        ),
        (
            "change-created",
            "shop-preview-create",
            "argocd/shop-pr-43",
            "createApplication: expires",
            "POST",
            "/api/v1/applications?upsert=false",
        ),
        (
            "change-merged",
            "shop-preview-delete",
            "argocd/shop-pr-42",
            "deleteApplication",
            "DELETE",
            "/api/v1/applications/shop-pr-42?cascade=true&propagationPolicy=foreground&appNamespace=argocd",
        ),
        (
            "service-upgraded-staging",
            "promote-shop-to-production",
            "argocd/shop-production",
            "sync",
            "POST",
            "/api/v1/applications/shop-production/sync",
        ),
        (
            "delivery-triggered",
            "deliver-on-request",
            "argocd/shop-production",
            "sync",
            "POST",
            "/api/v1/applications/shop-production/sync",
        ),
    ];
    for (file, policy, app, reason, method, path) in rows {
        let text = std::fs::read_to_string(root().join(format!("policies/testdata/{file}.json")))
            .unwrap_or_default();
        let ev = read_event(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let out = simulate(&policies, &ev, &apps, "argocd", chrono::Utc::now())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let d = out
            .iter()
            .find(|d| d.policy == policy)
            .unwrap_or_else(|| panic!("{file}: no decision of {policy}: {out:#?}"));
        assert_eq!(
            (d.application.as_str(), d.outcome),
            (app, "act"),
            "{file}: {d:#?}"
        );
        assert!(d.reason.starts_with(reason), "{file}: {}", d.reason);
        let req = d
            .request
            .as_ref()
            .unwrap_or_else(|| panic!("{file}: no request"));
        assert_eq!((req.method, req.path.as_str()), (method, path), "{file}");
        // Every operation carries the chain.
        if let Some(body) = &req.body
            && path.ends_with("/sync")
        {
            let names: Vec<&str> = body["infos"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["name"].as_str())
                .collect();
            assert!(
                names.contains(&"cdevents.chainId") && names.contains(&"cdevents.triggerId"),
                "{file}: {body}"
            );
        }
    }
}

#[test]
fn a_bad_policy_file_is_reported_with_its_line_and_column() {
    let rows: [(&str, &str); 12] = [
        (
            "name: x\non: {types: [a]}\ntarget: {application: '\"a\"'}\naction: {sync: {}}\nbogus: 1\n",
            "p.yaml:5:1: ",
        ),
        (
            "name: Bad_Name\non: {types: [a]}\ntarget: {application: '\"a\"'}\naction: {sync: {}}\n",
            "p.yaml:1:7: name: \"Bad_Name\"",
        ),
        (
            "name: x\non: {types: []}\ntarget: {application: '\"a\"'}\naction: {sync: {}}\n",
            "p.yaml:2:13: on.types",
        ),
        (
            "name: x\non:\n  types: [a]\n  when: 'event.('\ntarget: {application: '\"a\"'}\naction: {sync: {}}\n",
            "p.yaml:4:9: on.when: CEL does not compile",
        ),
        (
            "name: x\non: {types: [a]}\ntarget: {application: 'a +'}\naction: {sync: {}}\n",
            "p.yaml:3:23: target.application: CEL does not compile",
        ),
        (
            "name: x\non: {types: [a]}\ntarget: {application: '\"a\"'}\naction: {explode: {}}\n",
            "p.yaml:4:",
        ),
        (
            "name: x\non: {types: [a]}\ntarget: {application: '\"a\"'}\naction: {sync: {}}\nguard: {cooldown: soon}\n",
            "p.yaml:5:19: guard.cooldown: invalid duration",
        ),
        (
            "name: x\non: {types: [a]}\ntarget: {application: '\"a\"'}\naction: {sync: {}}\nrateLimit: 3 per hour\n",
            "p.yaml:5:12: rateLimit: invalid rate",
        ),
        (
            "name: x\non: {types: [a]}\naction: {sync: {}}\n",
            "p.yaml:1:1: target: missing",
        ),
        (
            "name: x\non: {types: [a]}\ntarget: {selector: 'a=(b'}\naction: {sync: {}}\n",
            "p.yaml:3:20: target.selector",
        ),
        (
            "name: x\non: {types: [a]}\ntarget: {application: '\"a\"'}\naction: {refresh: {type: soft}}\n",
            "p.yaml:4:26: action.refresh.type",
        ),
        (
            "name: x\non: {types: [a]}\naction:\n  createApplication:\n    name: '\"a\"'\n    template: {spec: {project: '{{ event. }}'}}\n",
            "p.yaml:6:15: action.createApplication.template",
        ),
    ];
    for (yaml, want) in rows {
        match parse_file("p.yaml", yaml) {
            Ok(_) => panic!("accepted:\n{yaml}"),
            Err(e) => assert!(
                e.to_string().starts_with(want),
                "{yaml}\n got: {e}\nwant: {want}…"
            ),
        }
    }
    // Names unique across the directory.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let p = "name: same\non: {types: [a]}\ntarget: {application: '\"a\"'}\naction: {sync: {}}\n";
    std::fs::write(dir.path().join("a.yaml"), p).unwrap_or_default();
    std::fs::write(dir.path().join("b.yaml"), format!("{p}---\n{p}")).unwrap_or_default();
    let e = load_dir(dir.path())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("b.yaml:1:1: name: \"same\" is already used by the policy at"),
        "{e}"
    );
}

#[test]
fn matching_types_sources_filters_and_targets() {
    let s = set(r#"
name: by-name
on:
  types: [dev.cdevents.incident.detected]
  sources: ["/monitoring/*"]
  when: event.subject.content.environment.id == "production"
target:
  application: event.subject.content.service.id
  namespaces: [argocd, team-a]
action: {refresh: {}}
---
name: by-label
on: {types: ["dev.cdevents.incident.*"]}
target: {selector: "tier=web", project: shop}
action: {refresh: {type: hard}}
"#);
    let incident = |source: &str, env: &str, service: &str| {
        cdevent("incident_detected", |v| {
            v["context"]["source"] = json!(source);
            v["subject"]["content"]["environment"]["id"] = json!(env);
            v["subject"]["content"]["service"]["id"] = json!(service);
        })
    };
    let app = |ns: &str, name: &str| {
        Aim::App(AppRef {
            namespace: ns.into(),
            name: name.into(),
        })
    };
    type Want = Vec<(&'static str, Result<Aim, &'static str>)>;
    let rows: Vec<(Inbound, Want)> = vec![
        (
            incident("/monitoring/p", "production", "shop"),
            vec![
                ("by-name", Ok(app("argocd", "shop"))),
                ("by-label", Err("")),
            ],
        ),
        (
            incident("/monitoring/p", "production", "team-a/shop"),
            vec![
                ("by-name", Ok(app("team-a", "shop"))),
                ("by-label", Err("")),
            ],
        ),
        (
            incident("/monitoring/p", "staging", "shop"),
            vec![("by-label", Err(""))],
        ),
        (
            incident("/ci/x", "production", "shop"),
            vec![("by-label", Err(""))],
        ),
        (
            incident("/monitoring/p", "production", "kube-system/x"),
            vec![
                ("by-name", Err("is not allowed for this policy")),
                ("by-label", Err("")),
            ],
        ),
        (
            incident("/monitoring/p", "production", "../x"),
            vec![
                ("by-name", Err("invalid application name")),
                ("by-label", Err("")),
            ],
        ),
        (
            incident("/monitoring/p", "production", "a/b/c"),
            vec![
                ("by-name", Err("invalid application name")),
                ("by-label", Err("")),
            ],
        ),
        (cdevent("artifact_packaged", |_| {}), vec![]),
    ];
    for (ev, want) in rows {
        let got = match_event(&s, &ev, "argocd");
        assert_eq!(got.len(), want.len(), "{}: {got:?}", ev.source);
        for (m, (name, aim)) in got.iter().zip(want) {
            assert_eq!(m.policy.name, name);
            match (&m.aim, aim) {
                (Ok(a), Ok(b)) => assert_eq!(*a, b),
                (Err(a), Err(b)) => assert!(a.contains(b), "{a}"),
                (_, Err("")) => assert!(matches!(m.aim, Ok(Aim::Selector { .. }))),
                (a, b) => panic!("{name}: got {a:?}, want {b:?}"),
            }
        }
    }
    // A `when` that cannot be evaluated (field missing) is a recorded skip, not a match.
    let ev = cdevent("incident_detected", |v| {
        v["context"]["source"] = json!("/monitoring/p");
        v["subject"]["content"]
            .as_object_mut()
            .map(|c| c.remove("environment"));
    });
    let got = match_event(&s, &ev, "argocd");
    assert!(
        got[0]
            .aim
            .as_ref()
            .is_err_and(|e| e.starts_with("CEL error in on.when")),
        "{got:?}"
    );
}

#[test]
fn plans_for_each_action_on_argo_cds_example_applications() {
    let now = chrono::Utc::now();
    let full = argo_example("application-full-status.yaml");
    let multi = argo_example("application-multisource-sync-succeeded.yaml");
    let running = argo_example("application-operation-running.yaml");
    let target = |a: &Value| AppRef::of(a);
    let art = cdevent("artifact_packaged", |v| {
        v["subject"]["id"] =
            json!("pkg:oci/web@sha256%3Aabc?repository_url=ghcr.io/acme/web&tag=1.2.3");
    });

    // sync with a revision from the event, prune and options, stamped with the chain.
    let s = set(
        "name: s\non: {types: [dev.cdevents.artifact.packaged]}\ntarget: {application: '\"x\"'}\naction: {sync: {revision: 'event.subject.content.change.id', prune: true, syncOptions: [Validate=false]}}\n",
    );
    let p = plan(&s.policies[0], &art, &target(&full), Some(&full), now)
        .unwrap_or_else(|e| panic!("{e}"));
    let Step::Sync(sync) = &p.steps[0] else {
        panic!("{p:?}")
    };
    assert_eq!(sync.revision.as_deref(), Some("myChange123"));
    assert!(sync.prune);
    assert!(
        sync.infos
            .iter()
            .any(|(k, v)| k == "cdevents.chainId" && v == "4c8cb7dd-3448-41de-8768-eec704e2829b")
    );
    assert!(
        sync.infos
            .iter()
            .any(|(k, v)| k == "cdevents.triggerId" && v == "271069a8-fc18-44f1-b38f-9d70a1695819")
    );

    // updateImage on a multi-source app patches the whole sources list.
    let s = set(
        "name: u\non: {types: [dev.cdevents.artifact.packaged]}\ntarget: {application: '\"x\"'}\naction: {updateImage: {helm: {parameter: image.tag}, source: 0}}\n",
    );
    let p = plan(&s.policies[0], &art, &target(&multi), Some(&multi), now)
        .unwrap_or_else(|e| panic!("{e}"));
    let Step::Patch { patch } = &p.steps[0] else {
        panic!("{p:?}")
    };
    let params = &patch["spec"]["sources"][0]["helm"]["parameters"];
    assert!(
        params
            .as_array()
            .is_some_and(|ps| ps
                .contains(&json!({"name": "image.tag", "value": "1.2.3", "forceString": true}))),
        "{patch}"
    );
    assert_eq!(
        patch["spec"]["sources"].as_array().map(Vec::len),
        multi["spec"]["sources"].as_array().map(Vec::len)
    );
    assert!(matches!(p.steps[1], Step::Sync(_)));
    // The same image again: nothing to do.
    let mut updated = multi.clone();
    updated["spec"]["sources"] = patch["spec"]["sources"].clone();
    let again = plan(&s.policies[0], &art, &target(&updated), Some(&updated), now);
    assert_eq!(
        again.err().as_deref(),
        Some("image already set to ghcr.io/acme/web:1.2.3")
    );

    // rollback: the newest older entry with another revision; auto-sync needs disableAutoSync.
    let mut app = full.clone();
    app["status"]["history"] = json!([
        {"id": 3, "revision": "aaa"}, {"id": 4, "revision": "bbb"}, {"id": 5, "revision": "bbb"}
    ]);
    app["spec"]["syncPolicy"] = json!({"automated": {"prune": true}});
    let inc = cdevent("incident_detected", |_| {});
    let refuse = set(
        "name: r\non: {types: [dev.cdevents.incident.detected]}\ntarget: {application: '\"x\"'}\naction: {rollback: {}}\n",
    );
    let e = plan(&refuse.policies[0], &inc, &target(&app), Some(&app), now)
        .err()
        .unwrap_or_default();
    assert!(e.starts_with("auto-sync is enabled"), "{e}");
    let s = set(
        "name: r\non: {types: [dev.cdevents.incident.detected]}\ntarget: {application: '\"x\"'}\naction: {rollback: {disableAutoSync: true}}\n",
    );
    let p = plan(&s.policies[0], &inc, &target(&app), Some(&app), now)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        p.steps[0],
        Step::Patch {
            patch: json!({"spec": {"syncPolicy": {"automated": {"enabled": false}}}})
        }
    );
    let Step::Sync(sync) = &p.steps[1] else {
        panic!("{p:?}")
    };
    assert_eq!(sync.revision.as_deref(), Some("aaa"));
    assert!(
        sync.infos
            .contains(&("cdevents.action".into(), "rollback".into()))
    );
    assert!(
        p.note.contains("history id 3") && p.note.contains("auto-sync disabled first"),
        "{}",
        p.note
    );
    // …to an id named by the event; an id not in the history is a skip.
    let by_id = set(
        "name: r\non: {types: [dev.cdevents.incident.detected]}\ntarget: {application: '\"x\"'}\naction: {rollback: {to: '4'}}\n",
    );
    let e = plan(&by_id.policies[0], &inc, &target(&full), Some(&full), now)
        .err()
        .unwrap_or_default();
    assert_eq!(e, "the history has no entry with id 4");
    // Argo CD's own example keeps re-deploying one revision: nothing older to go back to.
    let mut manual = full.clone();
    manual["spec"]["syncPolicy"] = Value::Null;
    let e = plan(&s.policies[0], &inc, &target(&manual), Some(&manual), now)
        .err()
        .unwrap_or_default();
    assert_eq!(
        e,
        "no earlier deployment with another revision to roll back to"
    );

    // deleteApplication only deletes what the gateway owns.
    let d = set(
        "name: d\non: {types: [dev.cdevents.change.merged]}\ntarget: {application: '\"x\"'}\naction: {deleteApplication: {}}\n",
    );
    let merged = cdevent("change_merged", |_| {});
    let e = plan(&d.policies[0], &merged, &target(&full), Some(&full), now)
        .err()
        .unwrap_or_default();
    assert!(e.contains("is not owned by argocd-cdevents"), "{e}");
    let mut owned = full.clone();
    owned["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "argocd-cdevents"});
    let p = plan(&d.policies[0], &merged, &target(&owned), Some(&owned), now)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        p.steps,
        vec![Step::Delete {
            cascade: true,
            propagation_policy: "foreground".into()
        }]
    );

    // Guards: project, and `when` over the app; an operation running is seen.
    let g = set(
        "name: g\non: {types: [dev.cdevents.incident.detected]}\ntarget: {application: '\"x\"', project: shop}\naction: {refresh: {}}\nguard: {when: 'app.status.health.status != \"Healthy\"'}\n",
    );
    let e = guard(&g.policies[0], &inc, &target(&full), Some(&full))
        .err()
        .unwrap_or_default();
    assert!(e.contains("is in project \"sre\", not \"shop\""), "{e}");
    let mut shop = full.clone();
    shop["spec"]["project"] = json!("shop");
    let e = guard(&g.policies[0], &inc, &target(&shop), Some(&shop))
        .err()
        .unwrap_or_default();
    assert!(e.starts_with("guard.when is false"), "{e}");
    let e = guard(&g.policies[0], &inc, &target(&full), None)
        .err()
        .unwrap_or_default();
    assert_eq!(e, "application argo-cd/velero-test not found");
    assert!(super::plan::operation_running(&running));
    assert!(!super::plan::operation_running(&full));
}

#[test]
fn image_references_from_package_urls() {
    let rows = [
        (
            "pkg:oci/web@sha256%3Aabc?repository_url=ghcr.io/acme/web&tag=1.2.3",
            Some("ghcr.io/acme/web:1.2.3"),
        ),
        (
            "pkg:oci/web@sha256%3Aabc?repository_url=ghcr.io/acme/web",
            Some("ghcr.io/acme/web@sha256:abc"),
        ),
        (
            "pkg:docker/acme/web@sha256%3Aabc?tag=2.0",
            Some("docker.io/acme/web:2.0"),
        ),
        (
            "pkg:docker/web?repository_url=registry.example&tag=1",
            Some("registry.example/web:1"),
        ),
        ("pkg:oci/web?repository_url=ghcr.io/acme/web", None),
        (
            "pkg:golang/mygit.com/myorg/myapp@234fd47e07d1004f0aed9c",
            None,
        ),
        ("not a purl", None),
    ];
    for (purl, want) in rows {
        assert_eq!(image_from_purl(purl).as_deref(), want, "{purl}");
    }
}

#[test]
fn decisions_are_kept_for_the_longest_cooldown_when_it_is_longer_than_their_retention() {
    use super::engine::Retention;
    let day = 86_400_000;
    let retention = Retention {
        events: std::time::Duration::from_secs(86_400),
        decisions: std::time::Duration::from_secs(2 * 86_400),
    };
    let now = 100 * day;
    let cooled = |cooldown: &str| {
        set(&format!(
            "name: c\non: {{types: [dev.cdevents.incident.detected]}}\ntarget: {{application: '\"x\"'}}\nguard: {{cooldown: {cooldown}}}\naction: {{refresh: {{}}}}\n"
        ))
    };
    let cases: &[(&str, Option<&str>, (i64, i64))] = &[
        ("no policies", None, (now - day, now - 2 * day)),
        ("a short cooldown", Some("1h"), (now - day, now - 2 * day)),
        (
            "a cooldown of 5 days",
            Some("5d"),
            (now - day, now - 5 * day),
        ),
    ];
    for (name, cooldown, want) in cases {
        let policies = cooldown.map(cooled);
        let list = policies.as_ref().map_or(&[][..], |p| &p.policies[..]);
        assert_eq!(retention.cutoffs(now, list), *want, "{name}");
    }
}

/// Every way an event arrives reads back from its inbox row as the same event, and so do rows
/// written in the older form (the whole event serialised); a bare CDEvent is stored as its
/// body came, and every new row is smaller than the older form.
#[test]
fn inbox_payloads_read_back_as_the_event_in_both_forms() {
    use super::inbound::decode;
    use axum::body::Bytes;
    use axum::http::{HeaderMap, HeaderName, HeaderValue};
    let p = root().join("../shared/cdevents/v0.5.1/examples/artifact_packaged.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let cdevent: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let ctx = &cdevent["context"];
    let structured = json!({
        "specversion": "1.0", "id": ctx["id"], "source": ctx["source"], "type": ctx["type"],
        "datacontenttype": "application/json", "chainid": "c-1", "data": cdevent,
    });
    let headers = |pairs: &[(&str, &str)]| {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap_or_else(|e| panic!("{e}")),
                HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        h
    };
    let binary = [
        ("content-type", "application/json"),
        ("ce-specversion", "1.0"),
        ("ce-id", ctx["id"].as_str().unwrap_or_default()),
        ("ce-source", ctx["source"].as_str().unwrap_or_default()),
        ("ce-type", ctx["type"].as_str().unwrap_or_default()),
        ("ce-chainid", "c-2"),
    ];
    let cases: [(&str, HeaderMap, String); 4] = [
        (
            "bare",
            headers(&[("content-type", "application/json")]),
            format!(
                " {}\n",
                text.replacen(
                    "\"subject\"",
                    "\"note\" : \"a \\\"quoted\\\"  value\",\n  \"subject\"",
                    1
                )
            ),
        ),
        ("binary", headers(&binary), text.clone()),
        (
            "structured",
            headers(&[("content-type", "application/cloudevents+json")]),
            structured.to_string(),
        ),
        (
            "batch",
            headers(&[("content-type", "application/cloudevents-batch+json")]),
            json!([structured, structured]).to_string(),
        ),
    ];
    for (mode, headers, body) in cases {
        let events = decode(
            &headers,
            &Bytes::from(body.clone()),
            super::schema::Schemas::get(),
        )
        .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert!(!events.is_empty(), "{mode}: no event decoded");
        for ev in events {
            let (new, old) = (
                ev.stored(),
                // The older form: the event serialised whole.
                json!({"id": ev.id, "source": ev.source, "type": ev.ty, "attributes": ev.ce(),
                    "data": ev.data()})
                .to_string(),
            );
            for (form, payload) in [("stored", &new), ("older", &old)] {
                let back = Inbound::from_stored(&ev.id, &ev.source, &ev.ty, payload)
                    .unwrap_or_else(|e| panic!("{mode}, {form} form: {e}"));
                assert_eq!(back, ev, "{mode}, {form} form");
                assert_eq!(
                    back.ce(),
                    ev.ce(),
                    "{mode}, {form} form: CloudEvent attributes"
                );
            }
            assert!(
                new.len() < old.len(),
                "{mode}: stored form ({} bytes) is not smaller than the older one ({})",
                new.len(),
                old.len()
            );
            if mode == "bare" {
                // The body in its own key order, without the whitespace between tokens but
                // with the spaces inside its strings: as long as serde_json's compact form.
                let compact: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}"));
                assert!(
                    new.starts_with("{\"data\":{\"context\":{\"specversion\""),
                    "{new}"
                );
                assert!(new.contains(r#""a \"quoted\"  value""#), "{new}");
                assert_eq!(new.len(), compact.to_string().len() + 9, "{new}");
            } else {
                assert!(new.contains("\"attributes\""), "{mode}: attributes kept");
            }
        }
    }
    // A row no form fits is an error, not a made-up event.
    for bad in ["", "{}", "{\"attributes\":{}}", "[1]"] {
        assert!(
            Inbound::from_stored("i", "s", "t", bad).is_err(),
            "payload {bad:?} was read as an event"
        );
    }
}

/// The inbox keeps a bare CDEvent's body without the whitespace between its tokens: every
/// byte of every string stays, escapes included (a quote or backslash escaped, a string that
/// ends in an escaped backslash, `\u` escapes), and the result is the same JSON.
#[test]
fn whitespace_between_tokens_is_dropped_and_strings_are_kept_whole() {
    use super::inbound::push_without_whitespace;
    let table = [
        ("{}", "{}"),
        (
            " { \"a\" : 1 ,\n\t\"b\" : [ 1 , 2 ] }\r\n",
            r#"{"a":1,"b":[1,2]}"#,
        ),
        (
            r#"{"s": "two  spaces\tand a tab"}"#,
            r#"{"s":"two  spaces\tand a tab"}"#,
        ),
        (
            r#"{"q": "a \"quoted\"  value" , "n": null}"#,
            r#"{"q":"a \"quoted\"  value","n":null}"#,
        ),
        (
            r#"{"b": "ends in a backslash \\" , "c": " x "}"#,
            r#"{"b":"ends in a backslash \\","c":" x "}"#,
        ),
        (
            r#"{"u": "\u0041 \u00e9 \\\" " }"#,
            r#"{"u":"\u0041 \u00e9 \\\" "}"#,
        ),
        (r#"[ "", " ", "\"", "\\\\" ]"#, r#"[""," ","\"","\\\\"]"#),
        ("{\"k y\": \"é ü\"}", "{\"k y\":\"é ü\"}"),
    ];
    for (input, want) in table {
        let mut out = Vec::new();
        push_without_whitespace(input.as_bytes(), &mut out);
        let got = String::from_utf8(out).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(got, want, "{input}");
        let (a, b): (Value, Value) = (
            serde_json::from_str(input).unwrap_or_else(|e| panic!("{input}: {e}")),
            serde_json::from_str(&got).unwrap_or_else(|e| panic!("{got}: {e}")),
        );
        assert_eq!(a, b, "{input}");
    }
}

/// A bare CDEvent is validated in place from its body; the same event arriving parsed (a
/// structured CloudEvent) is validated as a `serde_json::Value`. For every example of every
/// bundled spec version, and for broken copies of each, both get the same verdict, word
/// for word; and a bare event's data, read later, is its body parsed.
#[test]
fn a_bare_cdevent_read_in_place_is_judged_as_the_same_event_parsed() {
    use super::inbound::decode;
    use super::schema::{Schemas, VERSIONS};
    use axum::body::Bytes;
    use axum::http::{HeaderMap, HeaderValue, header};
    let schemas = Schemas::get();
    let none = PolicySet::default();
    let with_type = |ct: &'static str| {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        h
    };
    let verdict = |ct: &'static str, body: String| -> Result<Inbound, String> {
        let evs = decode(&with_type(ct), &Bytes::from(body), schemas).map_err(|e| e.to_string())?;
        let [ev] = <[Inbound; 1]>::try_from(evs).map_err(|v| format!("{} events", v.len()))?;
        ev.check(schemas, &none).map_err(|e| e.to_string())?;
        Ok(ev)
    };
    type Break = (&'static str, fn(&mut Value));
    let breaks: [Break; 5] = [
        ("as it is", |_| {}),
        ("subject not an object", |v| v["subject"] = json!(7)),
        ("an unknown top-level member", |v| {
            v["extra"] = json!({"a": 1})
        }),
        ("timestamp not a date-time", |v| {
            v["context"]["timestamp"] = json!("yesterday")
        }),
        ("subject without its id", |v| {
            v["subject"].as_object_mut().map(|s| s.remove("id"));
        }),
    ];
    let (mut valid, mut invalid) = (0, 0);
    for version in VERSIONS {
        let dir = root()
            .join("../shared/cdevents")
            .join(version)
            .join("examples");
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let example: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
            for (what, brk) in &breaks {
                let mut cdevent = example.clone();
                brk(&mut cdevent);
                let ctx = &cdevent["context"];
                let structured = json!({
                    "specversion": "1.0", "id": ctx["id"], "source": ctx["source"],
                    "type": ctx["type"], "datacontenttype": "application/json", "data": cdevent,
                });
                let bare = verdict("application/json", format!("{cdevent:#}"));
                let parsed = verdict("application/cloudevents+json", structured.to_string());
                let at = format!("{}, {what}", p.display());
                match (&bare, &parsed) {
                    (Ok(b), Ok(s)) => {
                        assert_eq!(b.data(), &cdevent, "{at}: the bare event's data");
                        assert_eq!(s.data(), &cdevent, "{at}: the parsed event's data");
                        valid += 1;
                    }
                    (Err(b), Err(s)) => {
                        assert_eq!(b, s, "{at}: the two verdicts differ");
                        assert!(b.contains("CDEvent is invalid"), "{at}: {b}");
                        invalid += 1;
                    }
                    _ => panic!(
                        "{at}: bare {:?}, parsed {:?}",
                        bare.map(|_| ()),
                        parsed.map(|_| ())
                    ),
                }
                if *what == "as it is" {
                    assert!(bare.is_ok(), "{at}: a spec example is refused");
                }
            }
        }
    }
    assert!(
        valid > 130 && invalid > 4 * 130,
        "{valid} valid, {invalid} invalid"
    );
}
