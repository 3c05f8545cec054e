//! The react flow end to end: the real binary, a test double of Argo CD (which checks every
//! request against swagger.json and Argo CD's server rules, and plays the application
//! controller), a recording sink, and real clients nobody here wrote — the Python
//! `cloudevents` SDK (binary and structured mode) and curl (batch, bare CDEvent). Covers the
//! three use cases and the loop: the emitted event that results from an action carries the
//! trigger's chainId and a TRIGGER link to it.

mod support;

use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::fake_argocd::{FakeArgoCd, fake_sha};
use support::gateway::{Gateway, cli};
use support::receiver::{Received, Receiver};
use support::schemas::{SchemaSet, shared};

const ARGO_TOKEN: &str = "argocd-api-token";
const CI_TOKEN: &str = "ci-token-0123456789abcdef";
const MON_SECRET: &str = "monitoring-hmac-secret-0123456789";

/// A CDEvent from the spec's own conformance examples (v0.5.1), with `edit` applied.
fn cdevent(example: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let path = shared().join(format!("cdevents/v0.5.1/examples/{example}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    v["context"]["id"] = json!(uuid::Uuid::new_v4().to_string());
    v["context"]["chainId"] = json!(uuid::Uuid::new_v4().to_string());
    edit(&mut v);
    v
}

fn artifact_packaged(tag: &str) -> Value {
    cdevent("artifact_packaged", |v| {
        v["context"]["source"] = json!("/ci/github/acme/web");
        v["subject"]["source"] = json!("/ci/github/acme/web");
        v["subject"]["id"] = json!(format!(
            "pkg:oci/web@sha256%3A{}?repository_url=ghcr.io/acme/web&tag={tag}",
            "a".repeat(64)
        ));
    })
}

fn app(name: &str, images: &[&str], history: &[(i64, &str)], auto_sync: bool, health: &str) -> Value {
    let repo = format!("https://github.com/acme/{name}.git");
    let source = json!({"repoURL": repo, "path": "deploy", "targetRevision": "main",
        "kustomize": {"images": images}});
    let hist: Vec<Value> = history
        .iter()
        .map(|(id, rev)| {
            json!({"id": id, "revision": fake_sha(&repo, rev), "source": source,
                "deployedAt": format!("2026-11-0{id}T10:00:00Z"), "deployStartedAt": format!("2026-11-0{id}T09:59:00Z")})
        })
        .collect();
    let last = history.last().map(|(_, r)| fake_sha(&repo, r)).unwrap_or_default();
    let mut spec = json!({"project": "default", "source": source,
        "destination": {"server": "https://kubernetes.default.svc", "namespace": name}});
    if auto_sync {
        spec["syncPolicy"] = json!({"automated": {"prune": true, "selfHeal": true}});
    }
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd", "labels": {"app.kubernetes.io/name": name}},
        "spec": spec,
        "status": {
            "sync": {"status": "Synced", "revision": last},
            "health": {"status": health},
            "history": hist,
            "operationState": {"phase": "Succeeded", "message": "successfully synced",
                "startedAt": "2026-11-02T09:59:00Z", "finishedAt": "2026-11-02T10:00:00Z",
                "operation": {"sync": {"revision": last}}, "syncResult": {"revision": last}},
            "summary": {"images": images}
        }
    })
}

const POLICIES: &str = r#"
name: web-image
on:
  types: [dev.cdevents.artifact.packaged]
  sources: ["/ci/*"]
target:
  selector: "app.kubernetes.io/name=web"
action:
  updateImage:
    kustomize: {name: ghcr.io/acme/web}
---
name: rollback-on-incident
on:
  types: [dev.cdevents.incident.detected]
  sources: ["/monitoring/*"]
  when: event.subject.content.environment.id == "production"
target:
  application: event.subject.content.service.id
action:
  rollback: {to: previous, disableAutoSync: true}
guard:
  when: app.status.health.status != "Healthy"
  cooldown: 15m
---
name: preview-create
on:
  types: [dev.cdevents.change.created]
action:
  createApplication:
    name: '"pr-" + event.subject.id'
    ttl: 72h
    template:
      spec:
        project: default
        source:
          repoURL: "{{ event.subject.content.repository.source }}"
          path: deploy
          targetRevision: "refs/pull/{{ event.subject.id }}/head"
        destination:
          server: https://kubernetes.default.svc
          namespace: "pr-{{ event.subject.id }}"
---
name: preview-delete
on:
  types: [dev.cdevents.change.merged, dev.cdevents.change.abandoned]
target:
  application: '"pr-" + event.subject.id'
action:
  deleteApplication: {}
"#;

struct World {
    fake: FakeArgoCd,
    sink: Receiver,
    gw: Gateway,
    url: String,
    dir: tempfile::TempDir,
    store: String,
}

async fn world(apps: Vec<Value>, policies: &str) -> World {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = format!("sqlite://{}/gw.db", dir.path().display());
    let fake = FakeArgoCd::start(ARGO_TOKEN).await;
    for a in apps {
        fake.insert(a);
    }
    fake.auto_complete(Duration::from_millis(100));
    let sink = Receiver::start().await;
    let pdir = dir.path().join("policies");
    std::fs::create_dir_all(&pdir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(pdir.join("policies.yaml"), policies).unwrap_or_else(|e| panic!("{e}"));
    let config = format!(
        r#"listen: 127.0.0.1:0
log: {{level: "info,argocd_cdevents=debug", format: text}}
emit:
  source: /argocd/e2e
  watch:
    kind: argocd
    argocd: {{server: "{url}"}}
delivery: {{timeout: 2s, initialBackoff: 50ms, maxBackoff: 400ms, drainTimeout: 5s}}
sinks:
  - {{name: main, url: "{sink}", mode: binary}}
react:
  policies: {pdir}
  reloadInterval: 200ms
  clients:
    - name: ci
      bearer: {{tokenEnv: CI_TOKEN}}
      sources: ["/ci/*", "/scm/*"]
      types: [dev.cdevents.artifact.packaged, "dev.cdevents.change.*"]
      rate: 1000/s
    - name: monitoring
      hmac: {{secretEnv: MON_SECRET, window: 5m}}
      sources: ["/monitoring/*"]
      types: [dev.cdevents.incident.detected]
  argocd:
    server: "{url}"
    tokenEnv: ARGOCD_AUTH_TOKEN
    rate: 100/s
"#,
        url = fake.url,
        sink = sink.url(),
        pdir = pdir.display()
    );
    let gw = Gateway::start(
        dir.path(),
        "gw",
        &config,
        &store,
        &[("ARGOCD_AUTH_TOKEN", ARGO_TOKEN), ("CI_TOKEN", CI_TOKEN), ("MON_SECRET", MON_SECRET)],
    );
    let url = gw.base_url().await;
    // The emit flow has recorded every app as it is before anything acts.
    gw.wait_log("list committed", Duration::from_secs(30)).await;
    World { fake, sink, gw, url, dir, store }
}

impl World {
    fn write_event(&self, name: &str, v: &Value) -> std::path::PathBuf {
        let p = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&p, v.to_string()).unwrap_or_else(|e| panic!("{e}"));
        p
    }

    /// Send with the Python CloudEvents SDK; returns (status, body).
    fn python(&self, mode: &str, event: &Value, auth: &[&str]) -> (u16, Value) {
        let file = self.write_event(&format!("py-{}", uuid::Uuid::new_v4()), event);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/send_event.py");
        let out = Command::new("python3")
            .arg(script)
            .args(["--url", &format!("{}/events", self.url), "--mode", mode, "--event"])
            .arg(&file)
            .args(auth)
            .output()
            .unwrap_or_else(|e| panic!("python3: {e}"));
        assert!(out.status.success(), "send_event.py failed: {}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
        let status = v["status"].as_u64().unwrap_or_default() as u16;
        let body = serde_json::from_str(v["body"].as_str().unwrap_or_default()).unwrap_or(Value::Null);
        (status, body)
    }

    /// POST `body` with curl; returns (status, body).
    fn curl(&self, content_type: &str, body: &Value) -> (u16, Value) {
        let file = self.write_event(&format!("curl-{}", uuid::Uuid::new_v4()), body);
        let out = Command::new("curl")
            .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", "POST"])
            .args(["-H", &format!("Content-Type: {content_type}")])
            .args(["-H", &format!("Authorization: Bearer {CI_TOKEN}")])
            .arg("--data-binary")
            .arg(format!("@{}", file.display()))
            .arg(format!("{}/", self.url))
            .output()
            .unwrap_or_else(|e| panic!("curl: {e}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null))
    }

    async fn emitted(&self, what: &str, cond: impl Fn(&Received) -> bool) -> Value {
        let found = |log: &[Received]| log.iter().any(|r| (200..300).contains(&r.status) && cond(r));
        self.sink
            .wait_for(what, Duration::from_secs(30), |log| found(log))
            .await;
        self.sink
            .accepted()
            .into_iter()
            .find(|r| cond(r))
            .map(|r| r.body)
            .unwrap_or_default()
    }

    fn decisions(&self) -> Vec<Value> {
        let (code, out, err) = cli(&["decisions", "list", "--json", "--store", &self.store]);
        assert_eq!(code, 0, "{err}");
        out.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    async fn wait_decisions(&self, n: usize) -> Vec<Value> {
        for _ in 0..300 {
            let d = self.decisions();
            if d.len() >= n && d.iter().all(|d| d["outcome"] != "acting") {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("fewer than {n} settled decisions: {:?}\n{}", self.decisions(), self.gw.log_text());
    }

    /// The write requests the double received (method, path, body).
    fn writes(&self) -> Vec<(String, String, Value)> {
        self.fake.bodies().into_iter().filter(|(m, _, _)| m != "GET").collect()
    }
}

fn chain_and_trigger(ev: &Value) -> (String, String) {
    let chain = ev["context"]["chainId"].as_str().unwrap_or_default().to_string();
    let trigger = ev["context"]["links"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["linkKind"] == "TRIGGER"))
        .and_then(|l| l["target"]["contextId"].as_str())
        .unwrap_or_default()
        .to_string();
    (chain, trigger)
}

fn valid(ev: &Value) {
    if let Err(e) = SchemaSet::load("v0.5.1").validate(ev) {
        panic!("emitted event is not valid CDEvents 0.5.1: {e}\n{ev}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_packaged_updates_the_image_syncs_and_the_upgrade_joins_the_chain() {
    let w = world(
        vec![app("web", &["ghcr.io/acme/web:1.0.0"], &[(1, "main")], false, "Healthy")],
        POLICIES,
    )
    .await;
    let ev = artifact_packaged("1.1.0");
    let (status, body) = w.python("binary", &ev, &["--token", CI_TOKEN]);
    assert_eq!(status, 202, "{body}");
    assert_eq!(body, json!({"accepted": 1, "duplicates": 0}));

    let upgraded = w
        .emitted("service.upgraded of argocd/web", |r| {
            r.ty.starts_with("dev.cdevents.service.upgraded") && r.body["subject"]["id"] == "argocd/web"
        })
        .await;
    valid(&upgraded);
    let (chain, trigger) = chain_and_trigger(&upgraded);
    assert_eq!(chain, ev["context"]["chainId"].as_str().unwrap_or("?"));
    assert_eq!(trigger, ev["context"]["id"].as_str().unwrap_or("?"));
    let artifact = upgraded["subject"]["content"]["artifactId"].as_str().unwrap_or_default();
    assert!(artifact.starts_with("pkg:oci/web") && artifact.contains("1.1.0"), "{artifact}");

    // The calls, exactly: a merge patch of the kustomize images, then a sync stamped with
    // the chain. (The double has already checked both against swagger.json.)
    let writes = w.writes();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert_eq!(writes[0].0, "PATCH");
    let patch: Value = serde_json::from_str(writes[0].2["patch"].as_str().unwrap_or_default()).unwrap_or_default();
    assert_eq!(patch["spec"]["source"]["kustomize"]["images"], json!(["ghcr.io/acme/web:1.1.0"]));
    assert_eq!(writes[1].0, "POST");
    assert_eq!(writes[1].1, "/api/v1/applications/web/sync");
    let infos = &writes[1].2["infos"];
    assert!(infos.as_array().is_some_and(|i| i.contains(&json!({"name": "cdevents.chainId", "value": chain}))), "{infos}");

    let decisions = w.wait_decisions(1).await;
    assert_eq!(decisions[0]["outcome"], "acted", "{decisions:?}");
    assert_eq!(decisions[0]["policy"], "web-image");
    assert_eq!(decisions[0]["application"], "argocd/web");

    // The same event again: acknowledged, never acted on twice.
    let (status, body) = w.python("structured", &ev, &["--token", CI_TOKEN]);
    assert_eq!((status, body), (202, json!({"accepted": 0, "duplicates": 1})));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(w.writes().len(), 2);
    assert_eq!(w.decisions().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_suspends_auto_sync_rolls_back_and_the_rollback_joins_the_chain() {
    let w = world(
        vec![app("shop", &["ghcr.io/acme/shop:2.0.0"], &[(1, "v1"), (2, "v2")], true, "Degraded")],
        POLICIES,
    )
    .await;
    let incident = cdevent("incident_detected", |v| {
        v["context"]["source"] = json!("/monitoring/prometheus");
        v["subject"]["content"]["environment"]["id"] = json!("production");
        v["subject"]["content"]["service"]["id"] = json!("argocd/shop");
    });
    // HMAC-signed, structured mode, through the Python SDK.
    let (status, body) = w.python("structured", &incident, &["--hmac-client", "monitoring", "--hmac-secret", MON_SECRET]);
    assert_eq!(status, 202, "{body}");

    let rolled = w
        .emitted("service.rolledback of argocd/shop", |r| r.ty.starts_with("dev.cdevents.service.rolledback"))
        .await;
    valid(&rolled);
    let (chain, trigger) = chain_and_trigger(&rolled);
    assert_eq!(chain, incident["context"]["chainId"].as_str().unwrap_or("?"));
    assert_eq!(trigger, incident["context"]["id"].as_str().unwrap_or("?"));

    let writes = w.writes();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert_eq!(writes[0].2["patch"], json!(r#"{"spec":{"syncPolicy":{"automated":{"enabled":false}}}}"#));
    assert_eq!(writes[1].2["revision"], json!(fake_sha("https://github.com/acme/shop.git", "v1")));
    let d = w.wait_decisions(1).await;
    assert_eq!(d[0]["outcome"], "acted");
    assert!(d[0]["reason"].as_str().is_some_and(|r| r.contains("auto-sync disabled first")), "{d:?}");

    // A second incident within the cooldown is skipped and says why.
    let again = cdevent("incident_detected", |v| {
        v["context"]["source"] = json!("/monitoring/prometheus");
        v["subject"]["content"]["environment"]["id"] = json!("production");
        v["subject"]["content"]["service"]["id"] = json!("argocd/shop");
    });
    w.fake.set_health("argocd", "shop", "Degraded");
    let (status, _) = w.python("binary", &again, &["--hmac-client", "monitoring", "--hmac-secret", MON_SECRET]);
    assert_eq!(status, 202);
    let d = w.wait_decisions(2).await;
    assert_eq!(d[0]["outcome"], "skipped", "{d:?}");
    assert!(d[0]["reason"].as_str().is_some_and(|r| r.starts_with("cooldown")), "{d:?}");
    assert_eq!(w.writes().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_created_makes_a_preview_environment_and_change_merged_deletes_it() {
    let w = world(Vec::new(), POLICIES).await;
    let created = cdevent("change_created", |v| {
        v["context"]["source"] = json!("/scm/github/acme/shop");
        v["subject"]["id"] = json!("42");
        v["subject"]["content"]["repository"]["source"] = json!("https://github.com/acme/shop.git");
    });
    // A bare CDEvent, with curl.
    let (status, body) = w.curl("application/json", &created);
    assert_eq!(status, 202, "{body}");

    let env = w
        .emitted("environment.created for the preview", |r| {
            r.ty.starts_with("dev.cdevents.environment.created") && r.body["subject"]["id"].as_str().is_some_and(|s| s.ends_with("/pr-42"))
        })
        .await;
    valid(&env);
    let (chain, trigger) = chain_and_trigger(&env);
    assert_eq!(chain, created["context"]["chainId"].as_str().unwrap_or("?"));
    assert_eq!(trigger, created["context"]["id"].as_str().unwrap_or("?"));
    let preview = w.fake.app("argocd", "pr-42").unwrap_or_else(|| panic!("no preview app"));
    assert_eq!(preview["metadata"]["labels"]["app.kubernetes.io/managed-by"], "argocd-cdevents");
    assert_eq!(preview["spec"]["destination"]["namespace"], "pr-42");
    assert_eq!(preview["spec"]["source"]["targetRevision"], "refs/pull/42/head");
    assert!(preview["metadata"]["annotations"]["cdevents.dev/expires-at"].is_string());

    // change.merged in a batch (curl), with an artifact event for no app: all-or-nothing
    // commit, then each event decided on its own.
    let merged = cdevent("change_merged", |v| {
        v["context"]["source"] = json!("/scm/github/acme/shop");
        v["subject"]["id"] = json!("42");
    });
    let ce = |e: &Value| {
        json!({"specversion": "1.0", "id": e["context"]["id"], "source": e["context"]["source"],
            "type": e["context"]["type"], "datacontenttype": "application/json", "data": e})
    };
    let other = artifact_packaged("9.9.9");
    let (status, body) = w.curl("application/cloudevents-batch+json", &json!([ce(&merged), ce(&other)]));
    assert_eq!((status, body), (202, json!({"accepted": 2, "duplicates": 0})));
    for _ in 0..100 {
        if w.fake.app("argocd", "pr-42").is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(w.fake.app("argocd", "pr-42").is_none(), "preview not deleted:\n{}", w.gw.log_text());
    let deletions = w.fake.deletions();
    assert_eq!(deletions.len(), 1);
    assert_eq!(deletions[0].app, "argocd/pr-42");
    assert!(deletions[0].cascade);
    let d = w.wait_decisions(3).await;
    let outcome = |p: &str| d.iter().find(|x| x["policy"] == p).map(|x| x["outcome"].clone());
    assert_eq!(outcome("preview-create"), Some(json!("acted")));
    assert_eq!(outcome("preview-delete"), Some(json!("acted")));
    // The artifact event found no app with the web label: a recorded skip.
    assert_eq!(outcome("web-image"), Some(json!("skipped")));
}
