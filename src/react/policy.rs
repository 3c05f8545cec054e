//! Policies: YAML files in a directory, each holding one policy or several separated by
//! `---`. Loading parses and checks every field and compiles every CEL expression; any
//! problem is reported as `path:line:column: message` and the whole set is refused (the
//! caller keeps the last good set). This module reads files and nothing else: it never
//! matches events or talks to Argo CD.

use super::cel::Expr;
use crate::config::Rate;
use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A policy file that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}:{column}: {message}")]
pub struct PolicyError {
    pub path: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

/// The loaded, compiled policies, indexed by event type for matching.
#[derive(Debug, Default)]
pub struct PolicySet {
    pub policies: Vec<Policy>,
    /// Unversioned exact type -> policy indexes.
    by_type: HashMap<String, Vec<usize>>,
    /// Policies with a glob in a type pattern: checked for every event.
    globbed: Vec<usize>,
    /// Name -> policy index (names are unique).
    by_name: HashMap<String, usize>,
}

#[derive(Debug)]
pub struct Policy {
    pub name: String,
    /// `path:line` of the policy document.
    pub at: String,
    pub types: Vec<String>,
    pub sources: Vec<String>,
    pub when: Option<Expr>,
    pub target: Target,
    pub action: Action,
    pub guard: Guard,
    pub rate_limit: Option<Rate>,
    pub dry_run: bool,
}

#[derive(Debug)]
pub struct Target {
    pub selects: TargetKind,
    pub project: Option<String>,
    /// Namespaces the target may be in; empty: the configured Argo CD namespace.
    pub namespaces: Vec<String>,
}

#[derive(Debug)]
pub enum TargetKind {
    /// A CEL expression giving `name` or `namespace/name`.
    Application(Expr),
    /// A label selector.
    Selector(String),
    /// The Application the action creates (createApplication).
    Created,
}

#[derive(Debug)]
pub enum Action {
    Sync {
        revision: Option<Expr>,
        prune: bool,
        sync_options: Vec<String>,
        resources: Vec<Value>,
    },
    Rollback {
        to: RollbackTo,
        disable_auto_sync: bool,
    },
    Refresh {
        hard: bool,
    },
    UpdateImage {
        image: Option<Expr>,
        set: ImageSetter,
        source: Option<usize>,
        prune: bool,
        sync_options: Vec<String>,
    },
    CreateApplication {
        name: Expr,
        namespace: Option<String>,
        ttl: Option<Duration>,
        template: Template,
    },
    DeleteApplication {
        cascade: bool,
        propagation_policy: String,
        only_owned: bool,
    },
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Sync { .. } => "sync",
            Action::Rollback { .. } => "rollback",
            Action::Refresh { .. } => "refresh",
            Action::UpdateImage { .. } => "updateImage",
            Action::CreateApplication { .. } => "createApplication",
            Action::DeleteApplication { .. } => "deleteApplication",
        }
    }
}

#[derive(Debug)]
pub enum RollbackTo {
    Previous,
    Id(Expr),
}

#[derive(Debug)]
pub enum ImageSetter {
    Kustomize { name: String },
    Helm { parameter: String, value: HelmValue },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HelmValue {
    Tag,
    Digest,
    Reference,
}

/// An Application template whose string values may hold `{{ CEL }}` placeholders.
#[derive(Debug)]
pub struct Template {
    pub value: Value,
    /// Compiled placeholders, by their source text.
    pub placeholders: HashMap<String, Expr>,
}

#[derive(Debug)]
pub struct Guard {
    pub when: Option<Expr>,
    pub operation_in_progress: InProgress,
    pub max_wait: Duration,
    pub cooldown: Option<Duration>,
    pub coalesce: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InProgress {
    #[default]
    Wait,
    Skip,
}

// ---- the YAML shape ----

type Cel = Spanned<String>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPolicy {
    name: Spanned<String>,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    on: RawOn,
    #[serde(default)]
    target: Option<RawTarget>,
    action: RawAction,
    #[serde(default)]
    guard: Option<RawGuard>,
    #[serde(default)]
    rate_limit: Option<Spanned<String>>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawOn {
    types: Spanned<Vec<String>>,
    #[serde(default)]
    sources: Vec<String>,
    #[serde(default)]
    when: Option<Cel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTarget {
    #[serde(default)]
    application: Option<Cel>,
    #[serde(default)]
    selector: Option<Spanned<String>>,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    namespaces: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
enum RawAction {
    Sync(RawSync),
    Rollback(RawRollback),
    Refresh(RawRefresh),
    UpdateImage(RawUpdateImage),
    CreateApplication(RawCreate),
    DeleteApplication(RawDelete),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSync {
    #[serde(default)]
    revision: Option<Cel>,
    #[serde(default)]
    prune: bool,
    #[serde(default)]
    sync_options: Vec<String>,
    #[serde(default)]
    resources: Vec<RawResource>,
}

#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawResource {
    #[serde(default)]
    group: String,
    kind: String,
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRollback {
    #[serde(default)]
    to: Option<Cel>,
    #[serde(default)]
    disable_auto_sync: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRefresh {
    #[serde(default, rename = "type")]
    kind: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawUpdateImage {
    #[serde(default)]
    image: Option<Cel>,
    #[serde(default)]
    kustomize: Option<RawKustomize>,
    #[serde(default)]
    helm: Option<RawHelm>,
    #[serde(default)]
    source: Option<usize>,
    #[serde(default)]
    prune: bool,
    #[serde(default)]
    sync_options: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawKustomize {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawHelm {
    parameter: String,
    #[serde(default = "default_helm_value")]
    value: HelmValue,
}

fn default_helm_value() -> HelmValue {
    HelmValue::Tag
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawCreate {
    name: Cel,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    ttl: Option<Spanned<String>>,
    template: Spanned<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDelete {
    #[serde(default = "yes")]
    cascade: bool,
    #[serde(default)]
    propagation_policy: Option<Spanned<String>>,
    #[serde(default = "yes")]
    only_owned: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawGuard {
    #[serde(default)]
    when: Option<Cel>,
    #[serde(default)]
    operation_in_progress: InProgress,
    #[serde(default)]
    max_wait: Option<Spanned<String>>,
    #[serde(default)]
    cooldown: Option<Spanned<String>>,
    #[serde(default)]
    coalesce: Option<Spanned<String>>,
}

// ---- loading ----

struct Ctx<'a> {
    path: &'a str,
}

impl Ctx<'_> {
    fn err<T>(
        &self,
        at: &serde_saphyr::Location,
        message: impl Into<String>,
    ) -> Result<T, PolicyError> {
        Err(PolicyError {
            path: self.path.to_string(),
            line: at.line(),
            column: at.column(),
            message: message.into(),
        })
    }

    fn at(&self, at: &serde_saphyr::Location) -> String {
        format!("{}:{}:{}", self.path, at.line(), at.column())
    }

    fn cel(&self, field: &str, c: &Cel) -> Result<Expr, PolicyError> {
        Expr::compile(&c.value, self.at(&c.referenced))
            .or_else(|m| self.err(&c.referenced, format!("{field}: CEL does not compile: {m}")))
    }

    fn duration(&self, field: &str, d: &Spanned<String>) -> Result<Duration, PolicyError> {
        humantime::parse_duration(&d.value).or_else(|e| {
            self.err(
                &d.referenced,
                format!(
                    "{field}: invalid duration {:?} ({e}); write e.g. 30s, 15m, 72h",
                    d.value
                ),
            )
        })
    }
}

/// Valid policy names: lowercase letters, digits and `-`, 1 to 63 characters.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !n.starts_with('-')
        && !n.ends_with('-')
}

/// Parse one file's text (`path` is only used in messages).
pub fn parse_file(path: &str, text: &str) -> Result<Vec<Policy>, PolicyError> {
    let raws: Vec<Spanned<RawPolicy>> = serde_saphyr::from_multiple(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        PolicyError {
            path: path.to_string(),
            line,
            column,
            message: e.to_string().lines().next().unwrap_or_default().to_string(),
        }
    })?;
    let ctx = Ctx { path };
    raws.into_iter().map(|raw| compile(&ctx, raw)).collect()
}

fn compile(ctx: &Ctx<'_>, doc: Spanned<RawPolicy>) -> Result<Policy, PolicyError> {
    let raw = doc.value;
    let name = raw.name.value.clone();
    if !valid_name(&name) {
        return ctx.err(
            &raw.name.referenced,
            format!("name: {name:?} must be 1-63 lowercase letters, digits or '-'"),
        );
    }
    if raw.on.types.value.is_empty() || raw.on.types.value.iter().any(|t| t.trim().is_empty()) {
        return ctx.err(
            &raw.on.types.referenced,
            "on.types: list at least one event type",
        );
    }
    let when = raw
        .on
        .when
        .as_ref()
        .map(|c| ctx.cel("on.when", c))
        .transpose()?;

    let action = compile_action(ctx, raw.action)?;
    let target = match (raw.target, &action) {
        (None, Action::CreateApplication { .. }) => Target {
            selects: TargetKind::Created,
            project: None,
            namespaces: Vec::new(),
        },
        (Some(t), Action::CreateApplication { .. })
            if t.application.is_none() && t.selector.is_none() =>
        {
            Target {
                selects: TargetKind::Created,
                project: t.project,
                namespaces: t.namespaces,
            }
        }
        (Some(_), Action::CreateApplication { .. }) => {
            return ctx.err(&doc.referenced, "target: createApplication names its Application itself (action.createApplication.name); remove target.application/selector");
        }
        (None, _) => {
            return ctx.err(
                &doc.referenced,
                "target: missing; give target.application or target.selector",
            );
        }
        (Some(t), _) => {
            let selects = match (&t.application, &t.selector) {
                (Some(a), None) => TargetKind::Application(ctx.cel("target.application", a)?),
                (None, Some(s)) => {
                    if let Err(m) = crate::react::matcher::parse_selector(&s.value) {
                        return ctx.err(&s.referenced, format!("target.selector: {m}"));
                    }
                    TargetKind::Selector(s.value.clone())
                }
                _ => {
                    return ctx.err(
                        &doc.referenced,
                        "target: give exactly one of application and selector",
                    );
                }
            };
            Target {
                selects,
                project: t.project,
                namespaces: t.namespaces,
            }
        }
    };

    let guard = match raw.guard {
        None => Guard {
            when: None,
            operation_in_progress: InProgress::Wait,
            max_wait: Duration::from_secs(600),
            cooldown: None,
            coalesce: None,
        },
        Some(g) => Guard {
            when: g
                .when
                .as_ref()
                .map(|c| ctx.cel("guard.when", c))
                .transpose()?,
            operation_in_progress: g.operation_in_progress,
            max_wait: g
                .max_wait
                .as_ref()
                .map(|d| ctx.duration("guard.maxWait", d))
                .transpose()?
                .unwrap_or(Duration::from_secs(600)),
            cooldown: g
                .cooldown
                .as_ref()
                .map(|d| ctx.duration("guard.cooldown", d))
                .transpose()?,
            coalesce: g
                .coalesce
                .as_ref()
                .map(|d| ctx.duration("guard.coalesce", d))
                .transpose()?,
        },
    };
    let rate_limit = match &raw.rate_limit {
        None => None,
        Some(r) => {
            // `3/h per application` reads well in YAML; the key is always policy + application.
            let text = r.value.trim_end_matches("per application").trim();
            Some(
                text.parse::<Rate>()
                    .or_else(|m| ctx.err(&r.referenced, format!("rateLimit: {m}")))?,
            )
        }
    };
    Ok(Policy {
        name,
        at: format!("{}:{}", ctx.path, doc.referenced.line()),
        types: raw.on.types.value,
        sources: raw.on.sources,
        when,
        target,
        action,
        guard,
        rate_limit,
        dry_run: raw.dry_run,
    })
}

fn compile_action(ctx: &Ctx<'_>, raw: RawAction) -> Result<Action, PolicyError> {
    Ok(match raw {
        RawAction::Sync(s) => Action::Sync {
            revision: s.revision.as_ref().map(|c| ctx.cel("action.sync.revision", c)).transpose()?,
            prune: s.prune,
            sync_options: s.sync_options,
            resources: s
                .resources
                .iter()
                .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
                .collect(),
        },
        RawAction::Rollback(r) => Action::Rollback {
            to: match &r.to {
                None => RollbackTo::Previous,
                Some(c) if c.value.trim() == "previous" || c.value.trim() == "previous-healthy" => RollbackTo::Previous,
                Some(c) => RollbackTo::Id(ctx.cel("action.rollback.to", c)?),
            },
            disable_auto_sync: r.disable_auto_sync,
        },
        RawAction::Refresh(r) => Action::Refresh {
            hard: match &r.kind {
                None => false,
                Some(k) => match k.value.as_str() {
                    "normal" => false,
                    "hard" => true,
                    other => return ctx.err(&k.referenced, format!("action.refresh.type: {other:?} is neither normal nor hard")),
                },
            },
        },
        RawAction::UpdateImage(u) => {
            let set = match (u.kustomize, u.helm) {
                (Some(k), None) => ImageSetter::Kustomize { name: k.name },
                (None, Some(h)) => ImageSetter::Helm {
                    parameter: h.parameter,
                    value: h.value,
                },
                _ => {
                    return Err(PolicyError {
                        path: ctx.path.to_string(),
                        line: 0,
                        column: 0,
                        message: "action.updateImage: give exactly one of kustomize and helm".into(),
                    });
                }
            };
            Action::UpdateImage {
                image: u.image.as_ref().map(|c| ctx.cel("action.updateImage.image", c)).transpose()?,
                set,
                source: u.source,
                prune: u.prune,
                sync_options: u.sync_options,
            }
        }
        RawAction::CreateApplication(c) => {
            let mut placeholders = HashMap::new();
            collect_placeholders(ctx, &c.template, &c.template.value, &mut placeholders)?;
            if !c.template.value.is_object() {
                return ctx.err(&c.template.referenced, "action.createApplication.template: must be an Application object (metadata, spec)");
            }
            if c.template.value.get("spec").is_none_or(|s| !s.is_object()) {
                return ctx.err(&c.template.referenced, "action.createApplication.template: has no spec");
            }
            Action::CreateApplication {
                name: ctx.cel("action.createApplication.name", &c.name)?,
                namespace: c.namespace,
                ttl: c.ttl.as_ref().map(|d| ctx.duration("action.createApplication.ttl", d)).transpose()?,
                template: Template {
                    value: c.template.value,
                    placeholders,
                },
            }
        }
        RawAction::DeleteApplication(d) => Action::DeleteApplication {
            cascade: d.cascade,
            propagation_policy: match &d.propagation_policy {
                None => "foreground".into(),
                Some(p) if p.value == "foreground" || p.value == "background" => p.value.clone(),
                Some(p) => return ctx.err(&p.referenced, format!("action.deleteApplication.propagationPolicy: {:?} is neither foreground nor background", p.value)),
            },
            only_owned: d.only_owned,
        },
    })
}

/// Every `{{ expr }}` in the template's strings, compiled.
fn collect_placeholders(
    ctx: &Ctx<'_>,
    spanned: &Spanned<Value>,
    v: &Value,
    out: &mut HashMap<String, Expr>,
) -> Result<(), PolicyError> {
    match v {
        Value::String(s) => {
            for expr in placeholders_in(s) {
                if !out.contains_key(expr) {
                    let compiled = Expr::compile(expr, ctx.at(&spanned.referenced)).or_else(|m| {
                        ctx.err(
                            &spanned.referenced,
                            format!("action.createApplication.template: {{{{ {expr} }}}} does not compile: {m}"),
                        )
                    })?;
                    out.insert(expr.to_string(), compiled);
                }
            }
        }
        Value::Array(items) => {
            for i in items {
                collect_placeholders(ctx, spanned, i, out)?;
            }
        }
        Value::Object(map) => {
            for i in map.values() {
                collect_placeholders(ctx, spanned, i, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The expressions inside `{{ ... }}` in `s`, trimmed.
pub fn placeholders_in(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        out.push(after[..end].trim());
        rest = &after[end + 2..];
    }
    out
}

impl PolicySet {
    /// `default` (the gateway's own namespace) and every namespace a policy's target
    /// allows, each once, in that order.
    pub fn namespaces(&self, default: &str) -> Vec<String> {
        let mut out = vec![default.to_string()];
        for ns in self.policies.iter().flat_map(|p| &p.target.namespaces) {
            if !out.contains(ns) {
                out.push(ns.clone());
            }
        }
        out
    }

    pub fn new(policies: Vec<Policy>) -> PolicySet {
        let mut by_type: HashMap<String, Vec<usize>> = HashMap::new();
        let mut globbed = Vec::new();
        for (i, p) in policies.iter().enumerate() {
            let mut glob = false;
            for t in &p.types {
                if t.contains('*') {
                    glob = true;
                } else {
                    let key = crate::pattern::unversioned(t).to_string();
                    let list = by_type.entry(key).or_default();
                    if list.last() != Some(&i) {
                        list.push(i);
                    }
                }
            }
            if glob {
                globbed.push(i);
            }
        }
        let by_name = policies
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone(), i))
            .collect();
        PolicySet {
            policies,
            by_type,
            globbed,
            by_name,
        }
    }

    /// The policy with this name.
    pub fn by_name(&self, name: &str) -> Option<&Policy> {
        self.by_name.get(name).map(|&i| &self.policies[i])
    }

    pub fn len(&self) -> usize {
        self.policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Indexes of the policies whose `on.types` match `ty`: those indexed under the type
    /// (versioned or not) and those with a glob, each checked against its patterns. Unsorted,
    /// and a policy may come twice.
    fn type_matches<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = usize> + 'a {
        [ty, crate::pattern::unversioned(ty)]
            .into_iter()
            .filter_map(|key| self.by_type.get(key))
            .flatten()
            .chain(&self.globbed)
            .copied()
            .filter(move |&i| {
                self.policies[i]
                    .types
                    .iter()
                    .any(|p| crate::pattern::type_pattern_matches(p, ty))
            })
    }

    /// The policies whose `on.types` match `ty`, in load order.
    pub fn for_type(&self, ty: &str) -> Vec<&Policy> {
        let mut idx: Vec<usize> = self.type_matches(ty).collect();
        idx.sort_unstable();
        idx.dedup();
        idx.into_iter().map(|i| &self.policies[i]).collect()
    }

    /// Does any policy ask for events of this type? (The intake asks for every event: it
    /// stops at the first match and allocates nothing.)
    pub fn wants_type(&self, ty: &str) -> bool {
        self.type_matches(ty).next().is_some()
    }
}

/// Load every `*.yaml` / `*.yml` file in `dir` (sorted by name). Names must be unique.
pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyError> {
    let files = policy_files(dir).map_err(|e| PolicyError {
        path: dir.display().to_string(),
        line: 0,
        column: 0,
        message: format!("cannot read the policy directory: {e}"),
    })?;
    let mut all: Vec<Policy> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for file in files {
        let shown = file.display().to_string();
        let text = std::fs::read_to_string(&file).map_err(|e| PolicyError {
            path: shown.clone(),
            line: 0,
            column: 0,
            message: format!("cannot read: {e}"),
        })?;
        for p in parse_file(&shown, &text)? {
            if let Some(&first) = seen.get(&p.name) {
                let first: &Policy = &all[first];
                let (line, column) =
                    p.at.rsplit_once(':')
                        .and_then(|(_, l)| l.parse().ok())
                        .map_or((0, 0), |l| (l, 1));
                return Err(PolicyError {
                    path: shown,
                    line,
                    column,
                    message: format!(
                        "name: {:?} is already used by the policy at {}",
                        p.name, first.at
                    ),
                });
            }
            seen.insert(p.name.clone(), all.len());
            all.push(p);
        }
    }
    Ok(PolicySet::new(all))
}

/// The policy files of `dir`, sorted.
pub fn policy_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

/// A fingerprint of the directory's policy files (names, sizes, modification times), to
/// notice changes cheaply. ConfigMap mounts swap a symlink; metadata follows it.
pub fn fingerprint(dir: &Path) -> String {
    let mut out = String::new();
    for f in policy_files(dir).unwrap_or_default() {
        let meta = std::fs::metadata(&f).ok();
        let len = meta.as_ref().map_or(0, |m| m.len());
        let modified = meta
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        out.push_str(&format!("{}:{len}:{modified};", f.display()));
    }
    out
}
