//! The pure planner: given a matched policy, the event and the target Application as Argo CD
//! returns it, decide whether to act (guards) and which steps to take. It stamps every
//! operation with `cdevents.chainId`, `cdevents.triggerId` and `cdevents.policy` (and
//! `cdevents.action: rollback`) so the emit flow can link the result to its cause. No I/O,
//! no clock: the caller passes the time in.

use super::cel::Vars;
use super::inbound::Inbound;
use super::matcher::{AppRef, is_dns_subdomain};
use super::policy::{Action, HelmValue, ImageSetter, Policy, RollbackTo, Template};
use crate::argocd::step::{Step, SyncStep};
use crate::emit::detect::{INFO_ACTION, INFO_CHAIN_ID, INFO_TRIGGER_ID};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

pub const INFO_POLICY: &str = "cdevents.policy";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "argocd-cdevents";
pub const POLICY_LABEL: &str = "cdevents.dev/policy";
pub use crate::emit::detect::{CHAIN_ANNOTATION, TRIGGER_ANNOTATION};
pub const EXPIRES_ANNOTATION: &str = "cdevents.dev/expires-at";

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// A note for the decision record (e.g. "auto-sync disabled first").
    pub note: String,
}

/// The chain id for an event: its own, or one derived from its source and id (stable, so a
/// redelivered event gets the same one).
pub fn chain_id(event: &Inbound) -> String {
    match event.chain_id() {
        Some(c) => c.to_string(),
        None => uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_URL,
            format!("{}#{}", event.source, event.id).as_bytes(),
        )
        .to_string(),
    }
}

/// Is an operation running (or requested) on this Application?
pub fn operation_running(app: &Value) -> bool {
    !app["operation"].is_null()
        || matches!(
            app["status"]["operationState"]["phase"].as_str(),
            Some("Running" | "Terminating")
        )
}

/// Is automated sync on?
pub fn auto_sync_enabled(app: &Value) -> bool {
    let automated = &app["spec"]["syncPolicy"]["automated"];
    automated.is_object() && automated["enabled"].as_bool() != Some(false)
}

/// Is the Application owned by the gateway (a preview it created)?
pub fn owned(app: &Value) -> bool {
    app["metadata"]["labels"][MANAGED_BY_LABEL].as_str() == Some(MANAGED_BY)
}

/// Check `target.project` and `guard.when` against the target.
pub fn guard(
    policy: &Policy,
    event: &Inbound,
    target: &AppRef,
    app: Option<&Value>,
) -> Result<(), String> {
    // Every action but createApplication needs its target: say so before any guard reads it.
    if app.is_none() && !matches!(policy.action, Action::CreateApplication { .. }) {
        return Err(format!("application {target} not found"));
    }
    if let (Some(want), Some(a)) = (&policy.target.project, app) {
        let project = a["spec"]["project"].as_str().unwrap_or_default();
        if project != want {
            return Err(format!(
                "application {} is in project {project:?}, not {want:?}",
                super::matcher::AppRef::of(a)
            ));
        }
    }
    let Some(when) = &policy.guard.when else {
        return Ok(());
    };
    let ce = event.ce();
    let null = Value::Null;
    let cache = super::cel::Converted::default();
    let vars = Vars {
        event: event.data(),
        ce: &ce,
        app: Some(app.unwrap_or(&null)),
        cache: &cache,
    };
    match when.eval_bool(vars) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("guard.when is false: {}", when.source)),
        Err(e) => Err(format!("CEL error in guard.when: {e}")),
    }
}

/// Plan the action of `policy` for `event` on `target` (`app`: its current object, if it
/// exists). `Err` is the reason to skip.
pub fn plan(
    policy: &Policy,
    event: &Inbound,
    target: &AppRef,
    app: Option<&Value>,
    now: DateTime<Utc>,
) -> Result<Plan, String> {
    let ce = event.ce();
    let cache = super::cel::Converted::default();
    let vars = Vars {
        event: event.data(),
        ce: &ce,
        app,
        cache: &cache,
    };
    let chain = chain_id(event);
    let mut infos = vec![
        (INFO_CHAIN_ID.to_string(), chain.clone()),
        (INFO_TRIGGER_ID.to_string(), event.id.clone()),
        (INFO_POLICY.to_string(), policy.name.clone()),
    ];
    let existing =
        |what: &str| app.ok_or_else(|| format!("application {target} not found (cannot {what})"));
    match &policy.action {
        Action::Sync {
            revision,
            prune,
            sync_options,
            resources,
        } => {
            existing("sync")?;
            let revision = revision
                .as_ref()
                .map(|e| {
                    e.eval_string(vars)
                        .map_err(|m| format!("CEL error in action.sync.revision: {m}"))
                })
                .transpose()?;
            if let Some(r) = &revision
                && (r.is_empty() || r.len() > 255 || r.contains(char::is_whitespace))
            {
                return Err(format!("invalid revision {r:?} from the event"));
            }
            Ok(Plan {
                steps: vec![Step::Sync(SyncStep {
                    revision,
                    prune: *prune,
                    sync_options: sync_options.clone(),
                    resources: resources.clone(),
                    infos,
                    ..SyncStep::default()
                })],
                note: String::new(),
            })
        }
        Action::Rollback {
            to,
            disable_auto_sync,
        } => {
            let app = existing("roll back")?;
            let mut history: Vec<&Value> = app["status"]["history"]
                .as_array()
                .map(|h| h.iter().collect())
                .unwrap_or_default();
            history.sort_by_key(|h| history_id(h));
            let current = history
                .last()
                .copied()
                .ok_or("the application has no deployment history")?;
            let entry = match to {
                RollbackTo::Previous => history
                    .iter()
                    .rev()
                    .find(|h| {
                        history_id(h) < history_id(current)
                            && revisions_of(h) != revisions_of(current)
                    })
                    .copied()
                    .ok_or("no earlier deployment with another revision to roll back to")?,
                RollbackTo::Id(expr) => {
                    let id = expr
                        .eval_int(vars)
                        .map_err(|m| format!("CEL error in action.rollback.to: {m}"))?;
                    history
                        .iter()
                        .find(|h| history_id(h) == id)
                        .copied()
                        .ok_or_else(|| format!("the history has no entry with id {id}"))?
                }
            };
            let mut steps = Vec::new();
            let mut note = format!(
                "roll back to history id {} ({})",
                history_id(entry),
                revisions_of(entry).join(",")
            );
            if auto_sync_enabled(app) {
                if !*disable_auto_sync {
                    return Err("auto-sync is enabled and Argo CD refuses a rollback under auto-sync; set disableAutoSync: true to suspend it first".into());
                }
                steps.push(Step::Patch {
                    patch: json!({"spec": {"syncPolicy": {"automated": {"enabled": false}}}}),
                });
                note.push_str("; auto-sync disabled first");
            }
            infos.push((INFO_ACTION.to_string(), "rollback".to_string()));
            let mut sync = SyncStep {
                infos,
                source: entry.get("source").filter(|s| s.is_object()).cloned(),
                sources: entry.get("sources").filter(|s| s.is_array()).cloned(),
                ..SyncStep::default()
            };
            match entry["revisions"].as_array().filter(|r| !r.is_empty()) {
                Some(revs) => {
                    sync.revisions = revs
                        .iter()
                        .filter_map(|r| r.as_str().map(str::to_string))
                        .collect();
                    sync.source_positions = (1..=sync.revisions.len() as i64).collect();
                }
                None => sync.revision = entry["revision"].as_str().map(str::to_string),
            }
            steps.push(Step::Sync(sync));
            Ok(Plan { steps, note })
        }
        Action::Refresh { hard } => {
            existing("refresh")?;
            Ok(Plan {
                steps: vec![Step::Refresh { hard: *hard }],
                note: String::new(),
            })
        }
        Action::UpdateImage {
            image,
            set,
            source,
            prune,
            sync_options,
        } => {
            let app = existing("update its image")?;
            let reference = match image {
                Some(e) => e
                    .eval_string(vars)
                    .map_err(|m| format!("CEL error in action.updateImage.image: {m}"))?,
                None => {
                    let purl = event.data()["subject"]["id"].as_str().unwrap_or_default();
                    image_from_purl(purl).ok_or_else(|| format!("subject.id {purl:?} is not an oci or docker package URL with a tag or digest"))?
                }
            };
            let image = ImageRef::parse(&reference)
                .ok_or_else(|| format!("invalid image reference {reference:?}"))?;
            let (patch, changed) = image_patch(app, set, *source, &image)?;
            if !changed {
                return Err(format!("image already set to {reference}"));
            }
            Ok(Plan {
                steps: vec![
                    Step::Patch { patch },
                    Step::Sync(SyncStep {
                        prune: *prune,
                        sync_options: sync_options.clone(),
                        infos,
                        ..SyncStep::default()
                    }),
                ],
                note: format!("image {reference}"),
            })
        }
        Action::CreateApplication { ttl, template, .. } => {
            if let Some(a) = app {
                return Err(if owned(a) {
                    format!("application {target} already exists")
                } else {
                    format!(
                        "application {target} already exists and is not owned by argocd-cdevents"
                    )
                });
            }
            let mut object = render_template(template, vars)?;
            let meta = object
                .as_object_mut()
                .map(|o| o.entry("metadata").or_insert_with(|| json!({})))
                .ok_or("template is not an object")?;
            meta["name"] = json!(target.name);
            meta["namespace"] = json!(target.namespace);
            if !meta["labels"].is_object() {
                meta["labels"] = json!({});
            }
            meta["labels"][MANAGED_BY_LABEL] = json!(MANAGED_BY);
            meta["labels"][POLICY_LABEL] = json!(policy.name);
            if !meta["annotations"].is_object() {
                meta["annotations"] = json!({});
            }
            meta["annotations"][CHAIN_ANNOTATION] = json!(chain);
            meta["annotations"][TRIGGER_ANNOTATION] = json!(event.id);
            let mut note = String::new();
            if let Some(ttl) = ttl {
                let expires = now + chrono::Duration::from_std(*ttl).unwrap_or_default();
                meta["annotations"][EXPIRES_ANNOTATION] =
                    json!(expires.to_rfc3339_opts(SecondsFormat::Secs, true));
                note = format!(
                    "expires {}",
                    expires.to_rfc3339_opts(SecondsFormat::Secs, true)
                );
            }
            if let Some(o) = object.as_object_mut() {
                o.insert("apiVersion".into(), json!("argoproj.io/v1alpha1"));
                o.insert("kind".into(), json!("Application"));
                o.remove("status");
                o.remove("operation");
            }
            Ok(Plan {
                steps: vec![Step::Create { app: object }],
                note,
            })
        }
        Action::DeleteApplication {
            cascade,
            propagation_policy,
            only_owned,
        } => {
            let app = existing("delete it")?;
            if *only_owned && !owned(app) {
                return Err(format!(
                    "application {target} is not owned by argocd-cdevents (label {MANAGED_BY_LABEL})"
                ));
            }
            Ok(Plan {
                steps: vec![Step::Delete {
                    cascade: *cascade,
                    propagation_policy: propagation_policy.clone(),
                }],
                note: String::new(),
            })
        }
    }
}

fn history_id(h: &Value) -> i64 {
    h["id"]
        .as_i64()
        .or_else(|| h["id"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(-1)
}

fn revisions_of(h: &Value) -> Vec<String> {
    match h["revisions"].as_array().filter(|r| !r.is_empty()) {
        Some(r) => r
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        None => h["revision"]
            .as_str()
            .map(str::to_string)
            .into_iter()
            .collect(),
    }
}

/// A container image reference split into repository, tag and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    pub fn parse(s: &str) -> Option<ImageRef> {
        if s.is_empty() || s.len() > 512 || s.contains(char::is_whitespace) || s.contains('=') {
            return None;
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.to_string())),
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_string()),
            ),
            None => (rest, None),
        };
        if repository.is_empty() || (tag.is_none() && digest.is_none()) {
            return None;
        }
        Some(ImageRef {
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// `repo:tag`, `repo@digest` or `repo:tag@digest`.
    pub fn reference(&self) -> String {
        let mut s = self.repository.clone();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

/// The image an artifact package URL names: `pkg:oci/web@sha256:..?repository_url=ghcr.io/acme/web&tag=1.2.3`
/// -> `ghcr.io/acme/web:1.2.3` (the digest when there is no tag).
pub fn image_from_purl(purl: &str) -> Option<String> {
    let p: packageurl::PackageUrl<'_> = purl.parse().ok()?;
    let q = p.qualifiers();
    let get = |k: &str| {
        q.iter()
            .find(|(key, _)| key.as_ref() == k)
            .map(|(_, v)| v.to_string())
    };
    let repository = match p.ty() {
        "oci" => get("repository_url").unwrap_or_else(|| p.name().to_string()),
        "docker" => {
            let registry = get("repository_url").unwrap_or_else(|| "docker.io".into());
            match p.namespace() {
                Some(ns) => format!("{registry}/{ns}/{}", p.name()),
                None => format!("{registry}/{}", p.name()),
            }
        }
        _ => return None,
    };
    let image = ImageRef {
        repository,
        tag: get("tag"),
        digest: if get("tag").is_none() {
            p.version().map(str::to_string)
        } else {
            None
        },
    };
    if image.tag.is_none() && image.digest.is_none() {
        return None;
    }
    Some(image.reference())
}

/// The name part of a kustomize image override (`name=new:tag`, `name:tag`, `name@digest`).
fn kustomize_entry_name(entry: &str) -> &str {
    if let Some((name, _)) = entry.split_once('=') {
        return name;
    }
    let no_digest = entry.split('@').next().unwrap_or(entry);
    let last_slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    match no_digest[last_slash..].rfind(':') {
        Some(i) => &no_digest[..last_slash + i],
        None => no_digest,
    }
}

/// The merge patch that sets the image, and whether anything changes.
fn image_patch(
    app: &Value,
    set: &ImageSetter,
    source: Option<usize>,
    image: &ImageRef,
) -> Result<(Value, bool), String> {
    let multi = app["spec"]["sources"].as_array().filter(|s| !s.is_empty());
    let mut src = match (multi, source) {
        (Some(list), i) => list
            .get(i.unwrap_or(0))
            .cloned()
            .ok_or_else(|| format!("the application has no source {}", i.unwrap_or(0)))?,
        (None, Some(i)) if i > 0 => {
            return Err(format!(
                "the application has one source; source {i} does not exist"
            ));
        }
        (None, _) => app["spec"]["source"].clone(),
    };
    if !src.is_object() {
        return Err("the application has no source".into());
    }
    let changed = match set {
        ImageSetter::Kustomize { name } => {
            let entry = if *name == image.repository {
                image.reference()
            } else {
                format!("{name}={}", image.reference())
            };
            let mut images: Vec<Value> = src["kustomize"]["images"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let before = images.clone();
            images.retain(|e| e.as_str().is_none_or(|s| kustomize_entry_name(s) != name));
            images.push(json!(entry));
            let changed = {
                let mut a: Vec<String> = before
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
                let mut b: Vec<String> = images
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
                a.sort();
                b.sort();
                a != b
            };
            if !src["kustomize"].is_object() {
                src["kustomize"] = json!({});
            }
            src["kustomize"]["images"] = json!(images);
            changed
        }
        ImageSetter::Helm { parameter, value } => {
            let v = match value {
                HelmValue::Tag => image.tag.clone().ok_or("the image has no tag")?,
                HelmValue::Digest => image.digest.clone().ok_or("the image has no digest")?,
                HelmValue::Reference => image.reference(),
            };
            let mut params: Vec<Value> = src["helm"]["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let existing = params.iter_mut().find(|p| p["name"] == json!(parameter));
            let changed = match existing {
                Some(p) if p["value"] == json!(v) => false,
                Some(p) => {
                    p["value"] = json!(v);
                    true
                }
                None => {
                    // forceString: a tag like 1.10 must not become the number 1.1.
                    params.push(json!({"name": parameter, "value": v, "forceString": true}));
                    true
                }
            };
            if !src["helm"].is_object() {
                src["helm"] = json!({});
            }
            src["helm"]["parameters"] = json!(params);
            changed
        }
    };
    let patch = match multi {
        Some(list) => {
            let mut list = list.clone();
            list[source.unwrap_or(0)] = src;
            json!({"spec": {"sources": list}})
        }
        None => json!({"spec": {"source": src}}),
    };
    Ok((patch, changed))
}

/// Render a template: every `{{ CEL }}` in its strings replaced by its value.
fn render_template(template: &Template, vars: Vars<'_>) -> Result<Value, String> {
    fn walk(v: &Value, t: &Template, vars: Vars<'_>) -> Result<Value, String> {
        Ok(match v {
            Value::String(s) => {
                let mut out = String::new();
                let mut rest = s.as_str();
                while let Some(start) = rest.find("{{") {
                    let after = &rest[start + 2..];
                    let Some(end) = after.find("}}") else { break };
                    let src = after[..end].trim();
                    let expr = t
                        .placeholders
                        .get(src)
                        .ok_or_else(|| format!("placeholder {src:?} not compiled"))?;
                    let value = expr
                        .eval_string(vars)
                        .map_err(|m| format!("CEL error in template {{{{ {src} }}}}: {m}"))?;
                    if value.contains(['\n', '\r', '\0']) {
                        return Err(format!(
                            "template {{{{ {src} }}}} gave a value with control characters"
                        ));
                    }
                    out.push_str(&rest[..start]);
                    out.push_str(&value);
                    rest = &after[end + 2..];
                }
                out.push_str(rest);
                Value::String(out)
            }
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| walk(i, t, vars))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), walk(v, t, vars)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => other.clone(),
        })
    }
    let out = walk(&template.value, template, vars)?;
    if let Some(ns) = out["spec"]["destination"]["namespace"].as_str()
        && !super::matcher::is_dns_label(ns)
    {
        return Err(format!(
            "template gives the invalid destination namespace {ns:?}"
        ));
    }
    if let Some(name) = out["spec"]["project"].as_str()
        && !is_dns_subdomain(name)
        && name != "default"
    {
        return Err(format!("template gives the invalid project {name:?}"));
    }
    Ok(out)
}
