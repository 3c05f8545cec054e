//! The pure matcher: which policies an inbound event triggers and on which Applications.
//! Type index first, then sources, then the `on.when` CEL filter, then the target: a name
//! from the event (checked: a valid Kubernetes name in an allowed namespace, so an event
//! cannot steer an action into another namespace), a label selector over the known
//! Applications, or the Application a createApplication would make. No I/O, no clock.

use super::cel::Vars;
use super::inbound::Inbound;
use super::policy::{Action, Policy, PolicySet, TargetKind};
use crate::pattern::glob_match;
use serde::Serialize;
use serde_json::Value;

/// An Application, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct AppRef {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for AppRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl AppRef {
    pub fn of(app: &Value) -> AppRef {
        AppRef {
            namespace: app["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            name: app["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        }
    }
}

/// What a matched policy is aimed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aim {
    /// One named Application.
    App(AppRef),
    /// Every Application the selector (and project) picks, in the allowed namespaces.
    Selector {
        selector: String,
        project: Option<String>,
        namespaces: Vec<String>,
    },
}

/// One policy the event triggers; `Err` is why it cannot act (recorded as a skip).
#[derive(Debug)]
pub struct Match<'p> {
    pub policy: &'p Policy,
    pub aim: Result<Aim, String>,
}

/// DNS-1123 label: what Kubernetes requires of a namespace (and Argo CD of app names).
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// DNS-1123 subdomain: what Kubernetes requires of an object name.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// Turn `name` or `namespace/name` into an [`AppRef`] in an allowed namespace.
pub fn app_ref(value: &str, default_ns: &str, allowed: &[String]) -> Result<AppRef, String> {
    let (ns, name) = match value.split_once('/') {
        Some((ns, name)) => (ns, name),
        None => (default_ns, value),
    };
    if !is_dns_label(ns) {
        return Err(format!(
            "invalid application name {value:?}: {ns:?} is not a valid namespace"
        ));
    }
    if !is_dns_subdomain(name) {
        return Err(format!(
            "invalid application name {value:?}: not a valid Kubernetes name (lowercase letters, digits, '-', '.')"
        ));
    }
    let permitted = if allowed.is_empty() {
        ns == default_ns
    } else {
        allowed.iter().any(|a| a == ns)
    };
    if !permitted {
        return Err(format!(
            "namespace {ns:?} of {value:?} is not allowed for this policy"
        ));
    }
    Ok(AppRef {
        namespace: ns.to_string(),
        name: name.to_string(),
    })
}

/// The policies `event` triggers, with their aim.
pub fn match_event<'p>(set: &'p PolicySet, event: &Inbound, default_ns: &str) -> Vec<Match<'p>> {
    let candidates = set.for_type(&event.ty);
    if candidates.is_empty() {
        return Vec::new();
    }
    let ce = event.ce();
    let cache = super::cel::Converted::default();
    let vars = Vars {
        event: event.data(),
        ce: &ce,
        app: None,
        cache: &cache,
    };
    let mut out = Vec::new();
    for policy in candidates {
        if !policy.sources.is_empty()
            && !policy.sources.iter().any(|s| glob_match(s, &event.source))
        {
            continue;
        }
        if let Some(when) = &policy.when {
            match when.eval_bool(vars) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    out.push(Match {
                        policy,
                        aim: Err(format!("CEL error in on.when: {e}")),
                    });
                    continue;
                }
            }
        }
        let aim = aim_of(policy, vars, default_ns);
        out.push(Match { policy, aim });
    }
    out
}

fn aim_of(policy: &Policy, vars: Vars<'_>, default_ns: &str) -> Result<Aim, String> {
    let allowed = &policy.target.namespaces;
    match &policy.target.selects {
        TargetKind::Application(expr) => {
            let value = expr
                .eval_string(vars)
                .map_err(|e| format!("CEL error in target.application: {e}"))?;
            app_ref(&value, default_ns, allowed).map(Aim::App)
        }
        TargetKind::Selector(selector) => Ok(Aim::Selector {
            selector: selector.clone(),
            project: policy.target.project.clone(),
            namespaces: if allowed.is_empty() {
                vec![default_ns.to_string()]
            } else {
                allowed.clone()
            },
        }),
        TargetKind::Created => {
            let Action::CreateApplication {
                name, namespace, ..
            } = &policy.action
            else {
                return Err("policy has no target".into());
            };
            let value = name
                .eval_string(vars)
                .map_err(|e| format!("CEL error in action.createApplication.name: {e}"))?;
            if value.contains('/') {
                return Err(format!(
                    "invalid application name {value:?}: it must not contain '/'"
                ));
            }
            let ns = namespace.as_deref().unwrap_or(default_ns);
            app_ref(&format!("{ns}/{value}"), default_ns, allowed).map(Aim::App)
        }
    }
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
}

/// Parse `k=v,k!=v,k,!k` (`==` also accepted).
pub fn parse_selector(s: &str) -> Result<Vec<Requirement>, String> {
    let mut out = Vec::new();
    for term in s.split(',').map(str::trim) {
        if term.is_empty() {
            return Err(format!("empty term in selector {s:?}"));
        }
        let req = if let Some((k, v)) = term.split_once("!=") {
            Requirement::NotEquals(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            Requirement::Equals(k.trim().into(), v.trim().into())
        } else if let Some(k) = term.strip_prefix('!') {
            Requirement::NotExists(k.trim().into())
        } else {
            Requirement::Exists(term.into())
        };
        let key = match &req {
            Requirement::Equals(k, _)
            | Requirement::NotEquals(k, _)
            | Requirement::Exists(k)
            | Requirement::NotExists(k) => k,
        };
        let value = match &req {
            Requirement::Equals(_, v) | Requirement::NotEquals(_, v) => v.as_str(),
            _ => "",
        };
        let key_ok = !key.is_empty()
            && key.len() <= 317
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
        let value_ok = value.len() <= 63
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !key_ok || !value_ok {
            return Err(format!(
                "{term:?} is not a label requirement (k=v, k!=v, k, !k)"
            ));
        }
        out.push(req);
    }
    Ok(out)
}

/// Does an Application's label set satisfy the selector?
pub fn selector_matches(reqs: &[Requirement], labels: &Value) -> bool {
    reqs.iter().all(|r| match r {
        Requirement::Equals(k, v) => labels[k].as_str() == Some(v),
        Requirement::NotEquals(k, v) => labels[k].as_str() != Some(v),
        Requirement::Exists(k) => labels.get(k).is_some(),
        Requirement::NotExists(k) => labels.get(k).is_none(),
    })
}

/// The Applications among `apps` a selector aim picks, sorted.
pub fn select(aim: &Aim, apps: &[Value]) -> Vec<AppRef> {
    let Aim::Selector {
        selector,
        project,
        namespaces,
    } = aim
    else {
        return Vec::new();
    };
    let Ok(reqs) = parse_selector(selector) else {
        return Vec::new();
    };
    let mut out: Vec<AppRef> = apps
        .iter()
        .filter(|a| selector_matches(&reqs, &a["metadata"]["labels"]))
        .filter(|a| {
            project
                .as_deref()
                .is_none_or(|p| a["spec"]["project"].as_str() == Some(p))
        })
        .map(AppRef::of)
        .filter(|r| namespaces.contains(&r.namespace))
        .collect();
    out.sort();
    out.dedup();
    out
}
