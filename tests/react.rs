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
const ANY_TOKEN: &str = "any-token-0123456789abcdef";
/// The first value of the `rotating` client's token file (a Kubernetes Secret mount).
const FILE_TOKEN: &str = "file-token-0123456789abcdef";

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

fn app(
    name: &str,
    images: &[&str],
    history: &[(i64, &str)],
    auto_sync: bool,
    health: &str,
) -> Value {
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
    let last = history
        .last()
        .map(|(_, r)| fake_sha(&repo, r))
        .unwrap_or_default();
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

/// `web` at `ghcr.io/acme/web:1.0.0`, one history entry, no auto-sync, Healthy: the app most
/// tests act on.
fn web() -> Value {
    app(
        "web",
        &["ghcr.io/acme/web:1.0.0"],
        &[(1, "main")],
        false,
        "Healthy",
    )
}

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
    let token_file = dir.path().join("rotating.token");
    std::fs::write(&token_file, format!("{FILE_TOKEN}\n")).unwrap_or_else(|e| panic!("{e}"));
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
    - name: anything
      bearer: {{tokenEnv: ANY_TOKEN}}
      sources: ["*"]
      types: ["*"]
    - name: rotating
      bearer: {{tokenFile: "{token_file}"}}
      sources: ["*"]
      types: ["*"]
  argocd:
    server: "{url}"
    tokenEnv: ARGOCD_AUTH_TOKEN
    rate: 100/s
"#,
        url = fake.url,
        sink = sink.url(),
        pdir = pdir.display(),
        token_file = token_file.display()
    );
    let gw = Gateway::start(
        dir.path(),
        "gw",
        &config,
        &store,
        &[
            ("ARGOCD_AUTH_TOKEN", ARGO_TOKEN),
            ("CI_TOKEN", CI_TOKEN),
            ("MON_SECRET", MON_SECRET),
            ("ANY_TOKEN", ANY_TOKEN),
        ],
    );
    let url = gw.base_url().await;
    // The emit flow has recorded every app as it is before anything acts.
    gw.wait_log("list committed", Duration::from_secs(30)).await;
    World {
        fake,
        sink,
        gw,
        url,
        dir,
        store,
    }
}

impl World {
    fn write_event(&self, name: &str, v: &Value) -> std::path::PathBuf {
        let p = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&p, v.to_string()).unwrap_or_else(|e| panic!("{e}"));
        p
    }

    /// CI publishes `artifact.packaged` for `version` (Python SDK, binary mode, CI's token):
    /// accepted, then the first `n` decisions once none is still acting.
    async fn ci_packages(&self, version: &str, n: usize) -> Vec<Value> {
        let (status, body) = self.python(
            "binary",
            &artifact_packaged(version),
            &["--token", CI_TOKEN],
        );
        assert_eq!(status, 202, "artifact {version}: {body}");
        self.wait_decisions(n).await
    }

    /// Send with the Python CloudEvents SDK; returns (status, body).
    fn python(&self, mode: &str, event: &Value, auth: &[&str]) -> (u16, Value) {
        let file = self.write_event(&format!("py-{}", uuid::Uuid::new_v4()), event);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/send_event.py");
        let out = Command::new("python3")
            .arg(script)
            .args([
                "--url",
                &format!("{}/events", self.url),
                "--mode",
                mode,
                "--event",
            ])
            .arg(&file)
            .args(auth)
            .output()
            .unwrap_or_else(|e| panic!("python3: {e}"));
        assert!(
            out.status.success(),
            "send_event.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
        let status = v["status"].as_u64().unwrap_or_default() as u16;
        let body =
            serde_json::from_str(v["body"].as_str().unwrap_or_default()).unwrap_or(Value::Null);
        (status, body)
    }

    /// POST `body` with curl; returns (status, body).
    fn curl(&self, content_type: &str, body: &Value) -> (u16, Value) {
        self.curl_as(CI_TOKEN, content_type, body)
    }

    /// POST `body` with curl and bearer `token`; returns (status, body).
    fn curl_as(&self, token: &str, content_type: &str, body: &Value) -> (u16, Value) {
        let file = self.write_event(&format!("curl-{}", uuid::Uuid::new_v4()), body);
        let out = Command::new("curl")
            .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", "POST"])
            .args(["-H", &format!("Content-Type: {content_type}")])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .arg("--data-binary")
            .arg(format!("@{}", file.display()))
            .arg(format!("{}/", self.url))
            .output()
            .unwrap_or_else(|e| panic!("curl: {e}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (
            code.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    }

    async fn emitted(&self, what: &str, cond: impl Fn(&Received) -> bool) -> Value {
        let found = |log: &[Received]| {
            log.iter()
                .any(|r| (200..300).contains(&r.status) && cond(r))
        };
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
        out.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    async fn wait_decisions(&self, n: usize) -> Vec<Value> {
        for _ in 0..300 {
            let d = self.decisions();
            if d.len() >= n && d.iter().all(|d| d["outcome"] != "acting") {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "fewer than {n} settled decisions: {:?}\n{}",
            self.decisions(),
            self.gw.log_text()
        );
    }

    /// The write requests the double received (method, path, body).
    fn writes(&self) -> Vec<(String, String, Value)> {
        self.fake
            .bodies()
            .into_iter()
            .filter(|(m, _, _)| m != "GET")
            .collect()
    }
}

fn chain_and_trigger(ev: &Value) -> (String, String) {
    let chain = ev["context"]["chainId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
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
    let w = world(vec![web()], POLICIES).await;
    let ev = artifact_packaged("1.1.0");
    let (status, body) = w.python("binary", &ev, &["--token", CI_TOKEN]);
    assert_eq!(status, 202, "{body}");
    assert_eq!(body, json!({"accepted": 1, "duplicates": 0}));

    let upgraded = w
        .emitted("service.upgraded of argocd/web", |r| {
            r.ty.starts_with("dev.cdevents.service.upgraded")
                && r.body["subject"]["id"] == "argocd/web"
        })
        .await;
    valid(&upgraded);
    let (chain, trigger) = chain_and_trigger(&upgraded);
    assert_eq!(chain, ev["context"]["chainId"].as_str().unwrap_or("?"));
    assert_eq!(trigger, ev["context"]["id"].as_str().unwrap_or("?"));
    let artifact = upgraded["subject"]["content"]["artifactId"]
        .as_str()
        .unwrap_or_default();
    assert!(
        artifact.starts_with("pkg:oci/web") && artifact.contains("1.1.0"),
        "{artifact}"
    );

    // The calls, exactly: a merge patch of the kustomize images, then a sync stamped with
    // the chain. (The double has already checked both against swagger.json.)
    let writes = w.writes();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert_eq!(writes[0].0, "PATCH");
    let patch: Value =
        serde_json::from_str(writes[0].2["patch"].as_str().unwrap_or_default()).unwrap_or_default();
    assert_eq!(
        patch["spec"]["source"]["kustomize"]["images"],
        json!(["ghcr.io/acme/web:1.1.0"])
    );
    assert_eq!(writes[1].0, "POST");
    assert_eq!(writes[1].1, "/api/v1/applications/web/sync");
    let infos = &writes[1].2["infos"];
    assert!(
        infos
            .as_array()
            .is_some_and(|i| i.contains(&json!({"name": "cdevents.chainId", "value": chain}))),
        "{infos}"
    );

    let decisions = w.wait_decisions(1).await;
    assert_eq!(decisions[0]["outcome"], "acted", "{decisions:?}");
    assert_eq!(decisions[0]["policy"], "web-image");
    assert_eq!(decisions[0]["application"], "argocd/web");

    // The same event again: acknowledged, never acted on twice.
    let (status, body) = w.python("structured", &ev, &["--token", CI_TOKEN]);
    assert_eq!(
        (status, body),
        (202, json!({"accepted": 0, "duplicates": 1}))
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(w.writes().len(), 2);
    assert_eq!(w.decisions().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_suspends_auto_sync_rolls_back_and_the_rollback_joins_the_chain() {
    let w = world(
        vec![app(
            "shop",
            &["ghcr.io/acme/shop:2.0.0"],
            &[(1, "v1"), (2, "v2")],
            true,
            "Degraded",
        )],
        POLICIES,
    )
    .await;
    let incident = cdevent("incident_detected", |v| {
        v["context"]["source"] = json!("/monitoring/prometheus");
        v["subject"]["content"]["environment"]["id"] = json!("production");
        v["subject"]["content"]["service"]["id"] = json!("argocd/shop");
    });
    // HMAC-signed, structured mode, through the Python SDK.
    let (status, body) = w.python(
        "structured",
        &incident,
        &["--hmac-client", "monitoring", "--hmac-secret", MON_SECRET],
    );
    assert_eq!(status, 202, "{body}");

    let rolled = w
        .emitted("service.rolledback of argocd/shop", |r| {
            r.ty.starts_with("dev.cdevents.service.rolledback")
        })
        .await;
    valid(&rolled);
    let (chain, trigger) = chain_and_trigger(&rolled);
    assert_eq!(
        chain,
        incident["context"]["chainId"].as_str().unwrap_or("?")
    );
    assert_eq!(trigger, incident["context"]["id"].as_str().unwrap_or("?"));

    let writes = w.writes();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert_eq!(
        writes[0].2["patch"],
        json!(r#"{"spec":{"syncPolicy":{"automated":{"enabled":false}}}}"#)
    );
    assert_eq!(
        writes[1].2["revision"],
        json!(fake_sha("https://github.com/acme/shop.git", "v1"))
    );
    let d = w.wait_decisions(1).await;
    assert_eq!(d[0]["outcome"], "acted");
    assert!(
        d[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("auto-sync disabled first")),
        "{d:?}"
    );

    // A second incident within the cooldown is skipped and says why.
    let again = cdevent("incident_detected", |v| {
        v["context"]["source"] = json!("/monitoring/prometheus");
        v["subject"]["content"]["environment"]["id"] = json!("production");
        v["subject"]["content"]["service"]["id"] = json!("argocd/shop");
    });
    w.fake.set_health("argocd", "shop", "Degraded");
    let (status, _) = w.python(
        "binary",
        &again,
        &["--hmac-client", "monitoring", "--hmac-secret", MON_SECRET],
    );
    assert_eq!(status, 202);
    let d = w.wait_decisions(2).await;
    assert_eq!(d[0]["outcome"], "skipped", "{d:?}");
    assert!(
        d[0]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("cooldown")),
        "{d:?}"
    );
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
            r.ty.starts_with("dev.cdevents.environment.created")
                && r.body["subject"]["id"]
                    .as_str()
                    .is_some_and(|s| s.ends_with("/pr-42"))
        })
        .await;
    valid(&env);
    let (chain, trigger) = chain_and_trigger(&env);
    assert_eq!(chain, created["context"]["chainId"].as_str().unwrap_or("?"));
    assert_eq!(trigger, created["context"]["id"].as_str().unwrap_or("?"));
    let preview = w
        .fake
        .app("argocd", "pr-42")
        .unwrap_or_else(|| panic!("no preview app"));
    assert_eq!(
        preview["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "argocd-cdevents"
    );
    assert_eq!(preview["spec"]["destination"]["namespace"], "pr-42");
    assert_eq!(
        preview["spec"]["source"]["targetRevision"],
        "refs/pull/42/head"
    );
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
    let (status, body) = w.curl(
        "application/cloudevents-batch+json",
        &json!([ce(&merged), ce(&other)]),
    );
    assert_eq!(
        (status, body),
        (202, json!({"accepted": 2, "duplicates": 0}))
    );
    for _ in 0..100 {
        if w.fake.app("argocd", "pr-42").is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        w.fake.app("argocd", "pr-42").is_none(),
        "preview not deleted:\n{}",
        w.gw.log_text()
    );
    let deletions = w.fake.deletions();
    assert_eq!(deletions.len(), 1);
    assert_eq!(deletions[0].app, "argocd/pr-42");
    assert!(deletions[0].cascade);
    let d = w.wait_decisions(3).await;
    let outcome = |p: &str| {
        d.iter()
            .find(|x| x["policy"] == p)
            .map(|x| x["outcome"].clone())
    };
    assert_eq!(outcome("preview-create"), Some(json!("acted")));
    assert_eq!(outcome("preview-delete"), Some(json!("acted")));
    // The artifact event found no app with the web label: a recorded skip.
    assert_eq!(outcome("web-image"), Some(json!("skipped")));
}

/// `headers` with the value of `name` replaced by `f(old value)`.
fn with_header(
    headers: Vec<(String, String)>,
    name: &str,
    f: impl Fn(String) -> String,
) -> Vec<(String, String)> {
    headers
        .into_iter()
        .map(|(k, v)| if k == name { (k, f(v)) } else { (k, v) })
        .collect()
}

/// HMAC headers as the security doc describes them.
fn signed(client: &str, secret: &str, ts: i64, body: &[u8]) -> Vec<(String, String)> {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    vec![
        ("X-CDEvents-Client".into(), client.into()),
        ("X-CDEvents-Timestamp".into(), ts.to_string()),
        (
            "X-CDEvents-Signature".into(),
            format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
        ),
    ]
}

struct Row {
    name: &'static str,
    method: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    status: u16,
    /// A part of the answer's `error` message (or a header for OPTIONS).
    says: &'static str,
}

fn row(
    name: &'static str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    status: u16,
    says: &'static str,
) -> Row {
    Row {
        name,
        method: "POST",
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body,
        status,
        says,
    }
}

fn structured(e: &Value) -> Value {
    json!({"specversion": "1.0", "id": e["context"]["id"], "source": e["context"]["source"],
        "type": e["context"]["type"], "datacontenttype": "application/json", "data": e})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_and_malformed_requests_get_the_right_answer_and_nothing_is_acted_on() {
    let w = world(
        vec![
            web(),
            app(
                "shop",
                &["ghcr.io/acme/shop:2.0.0"],
                &[(1, "v1"), (2, "v2")],
                true,
                "Degraded",
            ),
        ],
        POLICIES,
    )
    .await;
    let now = chrono::Utc::now().timestamp();
    let bearer = format!("Bearer {CI_TOKEN}");
    let any = format!("Bearer {ANY_TOKEN}");
    let art = artifact_packaged("2.0.0");
    let art_bytes = art.to_string().into_bytes();
    let incident = |service: &str, env: &str| {
        cdevent("incident_detected", |v| {
            v["context"]["source"] = json!("/monitoring/prometheus");
            v["subject"]["content"]["environment"]["id"] = json!(env);
            v["subject"]["content"]["service"]["id"] = json!(service);
        })
    };
    let inc = incident("argocd/shop", "staging");
    let inc_bytes = inc.to_string().into_bytes();
    let json_ct = ("Content-Type", "application/json");
    let ce_ct = ("Content-Type", "application/cloudevents+json");
    let batch_ct = ("Content-Type", "application/cloudevents-batch+json");
    let auth = ("Authorization", bearer.as_str());
    let any_auth = ("Authorization", any.as_str());
    let hmac_rows =
        |name: &'static str, h: Vec<(String, String)>, body: &[u8], says: &'static str| {
            let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
            headers.extend(h);
            Row {
                name,
                method: "POST",
                headers,
                body: body.to_vec(),
                status: 401,
                says,
            }
        };
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut v = art.clone();
        v["context"]["id"] = json!(uuid::Uuid::new_v4().to_string());
        f(&mut v);
        v.to_string().into_bytes()
    };
    let mut rows = vec![
        // Authentication.
        row(
            "no credentials",
            &[json_ct],
            art_bytes.clone(),
            401,
            "credentials required",
        ),
        row(
            "basic auth",
            &[json_ct, ("Authorization", "Basic Y2k6Y2k=")],
            art_bytes.clone(),
            401,
            "not a Bearer token",
        ),
        row(
            "wrong bearer token",
            &[json_ct, ("Authorization", "Bearer nope-nope-nope-nope")],
            art_bytes.clone(),
            401,
            "invalid bearer token",
        ),
        row(
            "empty bearer token",
            &[json_ct, ("Authorization", "Bearer ")],
            art_bytes.clone(),
            401,
            "empty bearer token",
        ),
        row(
            "token of another client with a suffix",
            &[
                json_ct,
                ("Authorization", "Bearer ci-token-0123456789abcdefX"),
            ],
            art_bytes.clone(),
            401,
            "invalid bearer token",
        ),
        hmac_rows(
            "hmac with the wrong secret",
            signed("monitoring", "not-the-secret-at-all-0000", now, &inc_bytes),
            &inc_bytes,
            "signature does not match",
        ),
        hmac_rows(
            "hmac expired timestamp",
            signed("monitoring", MON_SECRET, now - 3600, &inc_bytes),
            &inc_bytes,
            "replay window",
        ),
        hmac_rows(
            "hmac timestamp in the future",
            signed("monitoring", MON_SECRET, now + 3600, &inc_bytes),
            &inc_bytes,
            "replay window",
        ),
        hmac_rows(
            "hmac over another body",
            signed("monitoring", MON_SECRET, now, b"{}"),
            &inc_bytes,
            "signature does not match",
        ),
        hmac_rows(
            "hmac unknown client",
            signed("nobody", MON_SECRET, now, &inc_bytes),
            &inc_bytes,
            "must name a client",
        ),
        hmac_rows(
            "hmac naming a bearer client",
            signed("ci", MON_SECRET, now, &inc_bytes),
            &inc_bytes,
            "must name a client",
        ),
        hmac_rows(
            "hmac timestamp missing",
            signed("monitoring", MON_SECRET, now, &inc_bytes)
                .into_iter()
                .filter(|(k, _)| k != "X-CDEvents-Timestamp")
                .collect(),
            &inc_bytes,
            "X-CDEvents-Timestamp is missing",
        ),
        hmac_rows(
            "hmac timestamp not a number",
            with_header(
                signed("monitoring", MON_SECRET, now, &inc_bytes),
                "X-CDEvents-Timestamp",
                |_| "yesterday".into(),
            ),
            &inc_bytes,
            "not Unix seconds",
        ),
        hmac_rows(
            "hmac signature not hex",
            with_header(
                signed("monitoring", MON_SECRET, now, &inc_bytes),
                "X-CDEvents-Signature",
                |_| "sha256=zz".into(),
            ),
            &inc_bytes,
            "not hex",
        ),
        hmac_rows(
            "hmac signature without algorithm",
            with_header(
                signed("monitoring", MON_SECRET, now, &inc_bytes),
                "X-CDEvents-Signature",
                |v| v.replace("sha256=", ""),
            ),
            &inc_bytes,
            "sha256=<hex>",
        ),
        // Scopes.
        row(
            "ci token reporting an incident",
            &[json_ct, auth],
            incident("argocd/shop", "production")
                .to_string()
                .into_bytes(),
            403,
            "may not send events with source",
        ),
        row(
            "ci token, own source, incident type",
            &[json_ct, auth],
            edit(&|v| {
                v["context"]["type"] = json!("dev.cdevents.incident.detected.0.3.0");
            }),
            403,
            "may not send events of type",
        ),
        row(
            "monitoring hmac sending an artifact",
            &[],
            Vec::new(),
            403,
            "may not send events",
        ),
        row(
            "batch with one event out of scope",
            &[batch_ct, auth],
            json!([
                structured(&art),
                structured(&incident("argocd/shop", "production"))
            ])
            .to_string()
            .into_bytes(),
            403,
            "may not send events with source",
        ),
        // Media types and framing.
        row(
            "text/plain",
            &[("Content-Type", "text/plain"), auth],
            art_bytes.clone(),
            415,
            "not accepted",
        ),
        row(
            "no content type",
            &[auth],
            art_bytes.clone(),
            415,
            "no Content-Type",
        ),
        row(
            "application/xml",
            &[("Content-Type", "application/xml"), auth],
            b"<event/>".to_vec(),
            415,
            "not accepted",
        ),
        row(
            "oversize body",
            &[json_ct, auth],
            vec![b' '; 2 * 1024 * 1024],
            413,
            "over the limit",
        ),
        row(
            "json that is not JSON",
            &[json_ct, auth],
            b"{not json".to_vec(),
            400,
            "body is not JSON",
        ),
        row(
            "json without a context",
            &[json_ct, auth],
            b"{\"hello\": 1}".to_vec(),
            400,
            "must be a CDEvent",
        ),
        row(
            "bare CDEvent without context.id",
            &[json_ct, auth],
            edit(&|v| {
                v["context"].as_object_mut().map(|c| c.remove("id"));
            }),
            400,
            "context.id",
        ),
        row(
            "bare CDEvent naming its context twice (a second one to smuggle past the schema)",
            &[json_ct, auth],
            {
                let text = String::from_utf8_lossy(&art_bytes).into_owned();
                text.replacen(
                    "{",
                    "{\"context\": {\"id\": \"x\", \"source\": \"/other\", \"type\": \"dev.cdevents.artifact.packaged.0.2.0\"}, ",
                    1,
                )
                .into_bytes()
            },
            400,
            "\"context\" twice in one object",
        ),
        row(
            "structured, not JSON",
            &[ce_ct, auth],
            b"][".to_vec(),
            400,
            "invalid structured CloudEvent",
        ),
        row(
            "structured without id",
            &[ce_ct, auth],
            {
                let mut s = structured(&art);
                s.as_object_mut().map(|o| o.remove("id"));
                s.to_string().into_bytes()
            },
            400,
            "invalid structured CloudEvent",
        ),
        row(
            "structured with specversion 0.1",
            &[ce_ct, auth],
            {
                let mut s = structured(&art);
                s["specversion"] = json!("0.1");
                s.to_string().into_bytes()
            },
            400,
            "invalid structured CloudEvent",
        ),
        row(
            "batch that is not an array",
            &[batch_ct, auth],
            structured(&art).to_string().into_bytes(),
            400,
            "not a JSON array",
        ),
        row(
            "empty batch",
            &[batch_ct, auth],
            b"[]".to_vec(),
            400,
            "batch is empty",
        ),
        row(
            "batch with a broken element",
            &[batch_ct, auth],
            json!([structured(&art), {"specversion": "1.0"}])
                .to_string()
                .into_bytes(),
            400,
            "batch[1]",
        ),
        // CDEvents schema and consistency.
        row(
            "context.id is a number",
            &[json_ct, auth],
            edit(&|v| {
                v["context"]["id"] = json!(7);
            }),
            400,
            "context.id",
        ),
        row(
            "subject missing",
            &[json_ct, auth],
            edit(&|v| {
                v.as_object_mut().map(|o| o.remove("subject"));
            }),
            400,
            "CDEvent is invalid",
        ),
        row(
            "unknown spec version",
            &[json_ct, auth],
            edit(&|v| {
                v["context"]["specversion"] = json!("9.9.9");
            }),
            400,
            "not a supported CDEvents version",
        ),
        row(
            "unknown CDEvents type",
            &[json_ct, any_auth],
            edit(&|v| {
                v["context"]["type"] = json!("dev.cdevents.artifact.exploded.0.1.0");
            }),
            400,
            "is not a CDEvents 0.5.1 event type",
        ),
        row(
            "extra field in context",
            &[json_ct, auth],
            edit(&|v| {
                v["context"]["evil"] = json!(true);
            }),
            400,
            "CDEvent is invalid",
        ),
        row(
            "timestamp not a date-time",
            &[json_ct, auth],
            edit(&|v| {
                v["context"]["timestamp"] = json!("yesterday");
            }),
            400,
            "CDEvent is invalid",
        ),
        row(
            "ce type differs from context.type",
            &[ce_ct, any_auth],
            {
                let mut s = structured(&art);
                s["type"] = json!("dev.cdevents.artifact.published.0.3.0");
                s.to_string().into_bytes()
            },
            400,
            "differs from the CDEvent's context.type",
        ),
        row(
            "ce id differs from context.id",
            &[ce_ct, auth],
            {
                let mut s = structured(&art);
                s["id"] = json!("other-id");
                s.to_string().into_bytes()
            },
            400,
            "differs from the CDEvent's context.id",
        ),
        row(
            "binary mode without ce-id",
            &[
                ("ce-specversion", "1.0"),
                ("ce-type", "dev.cdevents.artifact.packaged.0.3.0"),
                ("ce-source", "/ci/x"),
                json_ct,
                auth,
            ],
            art_bytes.clone(),
            400,
            "invalid binary-mode CloudEvent",
        ),
        row(
            "binary mode, CDEvent type, data not an object",
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "b1"),
                ("ce-type", "dev.cdevents.artifact.packaged.0.3.0"),
                ("ce-source", "/ci/x"),
                json_ct,
                auth,
            ],
            b"\"just a string\"".to_vec(),
            400,
            "not a CDEvent JSON object",
        ),
        row(
            "a CloudEvent no policy asks for",
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "x1"),
                ("ce-type", "com.example.unrelated"),
                ("ce-source", "/x"),
                json_ct,
                any_auth,
            ],
            b"{}".to_vec(),
            400,
            "no policy asks for it",
        ),
    ];
    // The monitoring client (HMAC) sending an artifact event: in scope of nothing.
    let art_sig = signed("monitoring", MON_SECRET, now, &art_bytes);
    if let Some(r) = rows
        .iter_mut()
        .find(|r| r.name == "monitoring hmac sending an artifact")
    {
        r.headers = vec![("Content-Type".into(), "application/json".into())];
        r.headers.extend(art_sig);
        r.body = art_bytes.clone();
    }
    // Accepted, then refused by the matcher: names that try to escape, CEL-breaking values.
    let escapes = [
        (
            "service id escaping upwards",
            incident("../kube-system/coredns", "production"),
        ),
        (
            "service id in another namespace",
            incident("kube-system/coredns", "production"),
        ),
        (
            "service id with two slashes",
            incident("argocd/shop/extra", "production"),
        ),
        (
            "service id with upper case",
            incident("argocd/SHOP", "production"),
        ),
        (
            "service id too long",
            incident(&"a".repeat(300), "production"),
        ),
    ];
    let mut accepted_rows = Vec::new();
    for (name, ev) in escapes {
        let body = ev.to_string().into_bytes();
        let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        headers.extend(signed("monitoring", MON_SECRET, now, &body));
        accepted_rows.push(Row {
            name,
            method: "POST",
            headers,
            body,
            status: 202,
            says: "",
        });
    }
    for (name, id) in [
        ("preview name with a shell", "42; rm -rf /"),
        ("preview name escaping", "../../kube-system"),
        ("preview name with a slash", "a/b"),
    ] {
        let ev = cdevent("change_created", |v| {
            v["context"]["source"] = json!("/scm/github/acme/shop");
            v["subject"]["id"] = json!(id);
        });
        accepted_rows.push(row(
            name,
            &[json_ct, auth],
            ev.to_string().into_bytes(),
            202,
            "",
        ));
    }
    let escaping = accepted_rows.len();
    rows.extend(accepted_rows);
    rows.push(Row {
        name: "handshake",
        method: "OPTIONS",
        headers: vec![("WebHook-Request-Origin".into(), "eventgrid.example".into())],
        body: Vec::new(),
        status: 200,
        says: "eventgrid.example",
    });
    rows.push(Row {
        name: "GET is not a method of the intake",
        method: "GET",
        headers: vec![auth_pair(&bearer)],
        body: Vec::new(),
        status: 405,
        says: "",
    });
    assert!(rows.len() >= 40, "{} rows", rows.len());

    let http = reqwest::Client::new();
    let mut failures = Vec::new();
    for r in &rows {
        let mut req = http.request(
            reqwest::Method::from_bytes(r.method.as_bytes()).unwrap_or(reqwest::Method::POST),
            format!("{}/events", w.url),
        );
        for (k, v) in &r.headers {
            req = req.header(k, v);
        }
        let resp = req
            .body(r.body.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", r.name));
        let status = resp.status().as_u16();
        let allowed_origin = resp
            .headers()
            .get("webhook-allowed-origin")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(allowed_origin);
        if status != r.status || !message.contains(r.says) {
            failures.push(format!(
                "{}: got {status} {message:?}, want {} containing {:?}",
                r.name, r.status, r.says
            ));
        }
    }
    // A replayed HMAC request (same signature twice) is refused the second time.
    let body = incident("argocd/shop", "staging").to_string().into_bytes();
    let headers = signed("monitoring", MON_SECRET, now, &body);
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let mut req = http
            .post(format!("{}/events", w.url))
            .header("Content-Type", "application/json");
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        statuses.push(
            req.body(body.clone())
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0),
        );
    }
    if statuses != [202, 401] {
        failures.push(format!(
            "replayed signature: got {statuses:?}, want [202, 401]"
        ));
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows wrong:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );

    // Nothing was acted on: every decision is a skip naming the problem, no write reached Argo CD.
    let d = w.wait_decisions(escaping).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let d2 = w.decisions();
    assert_eq!(d.len(), d2.len());
    assert_eq!(d2.len(), escaping, "{d2:#?}");
    for x in &d2 {
        assert_eq!(x["outcome"], "skipped", "{x}");
        let reason = x["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("invalid application name")
                || reason.contains("is not allowed for this policy"),
            "{reason}"
        );
    }
    assert!(w.writes().is_empty(), "{:?}", w.writes());
    // The batch refused for one out-of-scope event committed nothing: its in-scope event is new.
    let (status, body) = w.curl(
        "application/cloudevents-batch+json",
        &json!([structured(&art)]),
    );
    assert_eq!(
        (status, body),
        (202, json!({"accepted": 1, "duplicates": 0}))
    );
}

fn auth_pair(bearer: &str) -> (String, String) {
    ("Authorization".into(), bearer.into())
}

async fn metrics(url: &str) -> String {
    reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default()
}

/// The value of one series in a Prometheus text exposition (0 when absent).
fn series(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

const DRY_WEB: &str = r#"
name: web-image
on: {types: [dev.cdevents.artifact.packaged]}
target: {selector: "app.kubernetes.io/name=web"}
action: {updateImage: {kustomize: {name: ghcr.io/acme/web}}}
dryRun: true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_metrics_and_hot_reload_keep_the_last_good_policies() {
    let w = world(vec![web()], DRY_WEB).await;
    let d = w.ci_packages("1.1.0", 1).await;
    assert_eq!(d[0]["outcome"], "dry-run", "{d:?}");
    assert!(
        d[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("would updateImage")),
        "{d:?}"
    );
    assert_eq!(d[0]["requests"].as_array().map(Vec::len), Some(2), "{d:?}");
    assert!(w.writes().is_empty());
    let (status, _) = w.python(
        "binary",
        &artifact_packaged("1.1.1"),
        &["--token", "wrong-token-wrong-token"],
    );
    assert_eq!(status, 401);

    let m = metrics(&w.url).await;
    assert_eq!(
        series(
            &m,
            r#"argocd_cdevents_events_received_total{type="dev.cdevents.artifact.packaged.0.3.0"}"#
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        series(
            &m,
            r#"argocd_cdevents_events_rejected_total{reason="unauthenticated"}"#
        ),
        1.0
    );
    assert_eq!(
        series(
            &m,
            r#"argocd_cdevents_events_rejected_total{reason="forbidden"}"#
        ),
        0.0
    );
    assert!(
        m.contains(r#"argocd_cdevents_events_rejected_total{reason="forbidden"} 0"#),
        "series exist at zero"
    );
    assert_eq!(
        series(
            &m,
            r#"argocd_cdevents_decisions_total{outcome="dry-run",action="updateImage"}"#
        ),
        1.0
    );
    assert!(
        series(
            &m,
            r#"argocd_cdevents_argocd_requests_total{operation="list",result="success"}"#
        ) >= 1.0
    );
    assert!(
        series(
            &m,
            r#"argocd_cdevents_argocd_requests_total{operation="get",result="success"}"#
        ) >= 1.0
    );
    assert!(m.contains("argocd_cdevents_argocd_request_duration_seconds_bucket{"));
    assert_eq!(series(&m, "argocd_cdevents_policy_reload_success"), 1.0);
    assert_eq!(series(&m, "argocd_cdevents_policies_loaded"), 1.0);

    // A broken file: reported with path:line:column, the last good set stays active.
    let pfile = w.dir.path().join("policies/policies.yaml");
    std::fs::write(
        &pfile,
        DRY_WEB.replace("dryRun: true", "dryRun: true\nguard: {cooldown: soon}"),
    )
    .unwrap_or_default();
    let log =
        w.gw.wait_log("policy reload failed", Duration::from_secs(10))
            .await;
    assert!(
        log.contains("policies.yaml:7:19: guard.cooldown: invalid duration"),
        "{log}"
    );
    let m = metrics(&w.url).await;
    assert_eq!(series(&m, "argocd_cdevents_policy_reload_success"), 0.0);
    assert_eq!(
        series(
            &m,
            r#"argocd_cdevents_policy_reloads_total{result="error"}"#
        ),
        1.0
    );
    let d = w.ci_packages("1.2.0", 2).await;
    assert_eq!(
        d[0]["outcome"], "dry-run",
        "the old (dry-run) policy still decides: {d:?}"
    );

    // A good file: picked up, and now it acts.
    std::fs::write(&pfile, DRY_WEB.replace("dryRun: true", "dryRun: false")).unwrap_or_default();
    w.gw.wait_log("policies reloaded", Duration::from_secs(10))
        .await;
    let d = w.ci_packages("1.3.0", 3).await;
    assert_eq!(d[0]["outcome"], "acted", "{d:?}");
    assert_eq!(w.writes().len(), 2);
    let m = metrics(&w.url).await;
    assert_eq!(series(&m, "argocd_cdevents_policy_reload_success"), 1.0);
    assert!(
        series(
            &m,
            r#"argocd_cdevents_argocd_requests_total{operation="sync",result="success"}"#
        ) >= 1.0
    );
    assert_eq!(
        series(
            &m,
            r#"argocd_cdevents_decisions_total{outcome="acted",action="updateImage"}"#
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_coalesce_into_one_action_on_the_newest_event_and_rate_limits_hold() {
    let policy = r#"
name: web-image
on: {types: [dev.cdevents.artifact.packaged]}
target: {application: '"web"'}
action: {updateImage: {kustomize: {name: ghcr.io/acme/web}}}
guard: {coalesce: 1500ms}
rateLimit: 1/h
"#;
    let w = world(vec![web()], policy).await;
    let burst: Vec<Value> = ["1.1.0", "1.2.0", "1.3.0"]
        .iter()
        .map(|t| artifact_packaged(t))
        .collect();
    let batch: Vec<Value> = burst.iter().map(structured).collect();
    let (status, body) = w.curl("application/cloudevents-batch+json", &json!(batch));
    assert_eq!(
        (status, body),
        (202, json!({"accepted": 3, "duplicates": 0}))
    );
    let d = w.wait_decisions(3).await;
    let acted: Vec<&Value> = d.iter().filter(|x| x["outcome"] == "acted").collect();
    assert_eq!(acted.len(), 1, "{d:#?}");
    assert_eq!(
        acted[0]["eventId"], burst[2]["context"]["id"],
        "acted on the newest"
    );
    let coalesced = d
        .iter()
        .filter(|x| {
            x["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("coalesced"))
        })
        .count();
    assert_eq!(coalesced, 2, "{d:#?}");
    let writes = w.writes();
    assert_eq!(writes.len(), 2, "one patch and one sync: {writes:?}");
    let patch: Value =
        serde_json::from_str(writes[0].2["patch"].as_str().unwrap_or_default()).unwrap_or_default();
    assert_eq!(
        patch["spec"]["source"]["kustomize"]["images"],
        json!(["ghcr.io/acme/web:1.3.0"])
    );

    // A later event is over the policy's rate for this app.
    let d = w.ci_packages("1.4.0", 4).await;
    assert_eq!(d[0]["outcome"], "skipped", "{d:?}");
    assert!(
        d[0]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("rate limited")),
        "{d:?}"
    );
    assert_eq!(w.writes().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_deletes_expired_previews_once_and_leaves_the_rest() {
    use argocd_cdevents::react::PolicyHandle;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let fake = FakeArgoCd::start(ARGO_TOKEN).await;
    let preview = |name: &str, expires: &str, owned: bool| {
        let mut a = app(name, &[], &[], false, "Healthy");
        if owned {
            a["metadata"]["labels"]["app.kubernetes.io/managed-by"] = json!("argocd-cdevents");
            a["metadata"]["labels"]["cdevents.dev/policy"] = json!("preview-create");
        }
        a["metadata"]["annotations"] =
            json!({"cdevents.dev/expires-at": expires, "cdevents.dev/chain-id": "chain-7"});
        a
    };
    fake.insert(preview("pr-1", "2026-01-01T00:00:00Z", true));
    fake.insert(preview("pr-2", "2999-01-01T00:00:00Z", true));
    fake.insert(preview("not-ours", "2026-01-01T00:00:00Z", false));
    let store = support::engine::sqlite_store(dir.path()).await;
    let engine = support::engine::engine(
        store.clone(),
        support::engine::rest_client(&fake.url, ARGO_TOKEN),
        PolicyHandle::default(),
    );
    let now = chrono::Utc::now();
    assert_eq!(engine.sweep_once(now).await, Ok(1));
    assert!(fake.app("argocd", "pr-1").is_none());
    assert!(fake.app("argocd", "pr-2").is_some());
    assert!(fake.app("argocd", "not-ours").is_some());
    assert_eq!(fake.deletions().len(), 1);
    // Nothing left to do, and the decision is recorded once, with the preview's chain.
    assert_eq!(engine.sweep_once(now).await, Ok(0));
    let d = store.list_decisions(10).await.unwrap_or_default();
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].policy.as_str(), d[0].application.as_str()),
        ("preview-create", "argocd/pr-1")
    );
    assert_eq!(d[0].outcome, argocd_cdevents::store::Outcome::Acted);
    assert_eq!(d[0].chain_id.as_deref(), Some("chain-7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_file_takes_effect_without_a_restart_and_a_bad_one_keeps_the_last() {
    let w = world(vec![], DRY_WEB).await;
    let file = w.dir.path().join("rotating.token");
    let send = |token: &str, tag: &str| {
        w.curl_as(token, "application/json", &artifact_packaged(tag))
            .0
    };
    assert_eq!(send(FILE_TOKEN, "1.0.1"), 202);

    // Rotate the way the kubelet does: write the new value aside, then rename it in place.
    const NEW_TOKEN: &str = "file-token-rotated-0123456789";
    let swap = |text: &str| {
        let tmp = w.dir.path().join("rotating.token.tmp");
        std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("{e}"));
        std::fs::rename(&tmp, &file).unwrap_or_else(|e| panic!("{e}"));
    };
    swap(&format!("{NEW_TOKEN}\n"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    loop {
        n += 1;
        let (old, new) = (
            send(FILE_TOKEN, &format!("1.1.{n}")),
            send(NEW_TOKEN, &format!("1.2.{n}")),
        );
        if (old, new) == (401, 202) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rotation never took effect: old token {old}, new token {new}\n{}",
            w.gw.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w.gw.wait_log("client secret reloaded", Duration::from_secs(10))
        .await;

    // A value too short to be a secret: warned about (naming client and file, never the
    // value), and the last good token keeps working.
    swap("too-short\n");
    let log =
        w.gw.wait_log("client secret file is unusable", Duration::from_secs(10))
            .await;
    let line = log
        .lines()
        .find(|l| l.contains("client secret file is unusable"))
        .unwrap_or_default();
    assert!(
        line.contains("rotating") && line.contains("rotating.token"),
        "{line}"
    );
    assert!(
        !log.contains("too-short"),
        "a secret value reached the log:\n{log}"
    );
    assert!(!log.contains(NEW_TOKEN) && !log.contains(FILE_TOKEN));
    assert_eq!(send(NEW_TOKEN, "1.3.0"), 202);
    assert_eq!(send("too-short", "1.3.1"), 401);
    // Several intervals later the unchanged bad file has not been warned about again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(send(NEW_TOKEN, "1.3.2"), 202);
    let warnings =
        w.gw.log_text()
            .matches("client secret file is unusable")
            .count();
    assert_eq!(warnings, 1, "{}", w.gw.log_text());
    // The env-var clients never changed.
    assert_eq!(send(CI_TOKEN, "1.3.3"), 202);
}

/// A target that does not exist is a skip that says so, and its read is counted as
/// `not_found`, not as a refusal by Argo CD (which answers 403 `permission denied` for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_target_is_skipped_and_counted_as_not_found() {
    let w = world(
        vec![web()],
        "name: ghost\non: {types: [dev.cdevents.artifact.packaged]}\ntarget: {application: '\"ghost\"'}\naction: {refresh: {}}\n",
    )
    .await;
    let d = w.ci_packages("1.1.0", 1).await;
    assert_eq!(d[0]["outcome"], "skipped", "{d:?}");
    assert!(
        d[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("application argocd/ghost not found"),
        "{d:?}"
    );
    let m = metrics(&w.url).await;
    assert_eq!(
        series(
            &m,
            r#"argocd_cdevents_argocd_requests_total{operation="get",result="not_found"}"#
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        series(
            &m,
            r#"argocd_cdevents_argocd_requests_total{operation="get",result="refused"}"#
        ),
        0.0,
        "{m}"
    );
    assert!(w.writes().is_empty(), "{:?}", w.writes());
}

/// The inbox rows as stored: `(event id, status, payload)`, in the order received.
async fn inbox_rows(store: &str) -> Vec<(String, String, String)> {
    use sqlx::Connection;
    let mut db = sqlx::SqliteConnection::connect(&format!("{store}?mode=ro"))
        .await
        .unwrap_or_else(|e| panic!("{store}: {e}"));
    sqlx::query_as("SELECT event_id, status, payload FROM inbox ORDER BY seq")
        .fetch_all(&mut db)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_no_policy_asks_for_is_stored_done_without_its_payload_and_still_deduplicated() {
    let w = world(
        vec![web()],
        "name: refresh-web\non: {types: [dev.cdevents.artifact.packaged]}\ntarget: {application: '\"web\"'}\naction: {refresh: {}}\n",
    )
    .await;
    // A type the client may send but no policy asks for: accepted, nothing to decide.
    let change = cdevent("change_created", |v| {
        v["context"]["source"] = json!("/scm/acme/web");
    });
    let (status, body) = w.curl("application/json", &change);
    assert_eq!(
        (status, &body),
        (202, &json!({"accepted": 1, "duplicates": 0}))
    );
    let (status, body) = w.curl("application/json", &change);
    assert_eq!(
        (status, &body),
        (202, &json!({"accepted": 0, "duplicates": 1})),
        "a resend of the stored-done event"
    );
    // A wanted one is stored with the event, for the engine.
    let artifact = artifact_packaged("1.1.0");
    let (status, body) = w.curl("application/json", &artifact);
    assert_eq!((status, &body["accepted"]), (202, &json!(1)), "{body}");
    let d = w.wait_decisions(1).await;
    assert_eq!(d.len(), 1, "only the wanted event is decided: {d:?}");
    assert_eq!(d[0]["policy"], "refresh-web", "{d:?}");
    // Decided rows are marked done in batches, a little after their decision.
    let mut rows = inbox_rows(&w.store).await;
    for _ in 0..50 {
        if rows.iter().all(|r| r.1 == "done") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        rows = inbox_rows(&w.store).await;
    }
    let id = |v: &Value| v["context"]["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (&rows[0].0, rows[0].1.as_str(), rows[0].2.as_str()),
        (&id(&change), "done", ""),
        "stored done, no payload"
    );
    assert_eq!((&rows[1].0, rows[1].1.as_str()), (&id(&artifact), "done"));
    let stored: Value = serde_json::from_str(&rows[1].2).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        stored["data"]["subject"]["id"], artifact["subject"]["id"],
        "the wanted event's payload is the event: {stored}"
    );
}
