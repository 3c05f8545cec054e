//! Leases (coordination.k8s.io/v1) in the Kubernetes API double, for leader election. A TEST
//! DOUBLE of the API server's rules that leader election depends on:
//! - GET of a missing Lease is 404; create of an existing one is 409 AlreadyExists; the
//!   object name must be a DNS subdomain.
//! - `spec` holds only the Lease fields (acquireTime, holderIdentity, leaseDurationSeconds,
//!   leaseTransitions, renewTime, preferredHolder, strategy), with their types; times are
//!   MicroTime (RFC 3339 with microseconds). Anything else is 422 Invalid.
//! - Server-side apply (`application/apply-patch+yaml`) needs `fieldManager` (else 400) and
//!   `apiVersion`/`kind`; a field owned by another manager with a different value is a 409
//!   Conflict unless `force=true`. The applier then owns what it applied and drops what it
//!   owned and left out.
//! - A strategic-merge or merge patch sets fields (the manager takes them over from any other
//!   owner) and `null` removes them (and their ownership).
//! - Every write bumps `metadata.resourceVersion`.
//!
//! The managed-fields bookkeeping is kept per top-level `spec` field, which is all a Lease has.

use super::{Rejection, status, valid_dns_subdomain};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

pub(super) const PREFIX: &str = "/apis/coordination.k8s.io/v1/namespaces/";

const FIELDS: &[&str] = &[
    "acquireTime",
    "holderIdentity",
    "leaseDurationSeconds",
    "leaseTransitions",
    "renewTime",
    "preferredHolder",
    "strategy",
];

#[derive(Default)]
pub(super) struct Leases {
    rv: u64,
    /// (namespace, name) -> (object, owner of each spec field)
    objects: BTreeMap<(String, String), (Value, BTreeMap<String, String>)>,
}

/// `(namespace, Some(name))` for an object path, `(namespace, None)` for the collection.
pub(super) fn lease_path(path: &str) -> Option<(String, Option<String>)> {
    let rest = path.strip_prefix(PREFIX)?;
    let (ns, rest) = rest.split_once('/')?;
    if ns.is_empty() {
        return None;
    }
    match rest.strip_prefix("leases") {
        Some("") => Some((ns.to_string(), None)),
        Some(name) => {
            let name = name.strip_prefix('/')?;
            (!name.is_empty() && !name.contains('/'))
                .then(|| (ns.to_string(), Some(name.to_string())))
        }
        None => None,
    }
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn invalid(name: &str, field: &str, detail: &str) -> Rejection {
    Box::new(status(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        format!("Lease.coordination.k8s.io \"{name}\" is invalid: {field}: {detail}"),
    ))
}

fn is_micro_time(s: &str) -> bool {
    // 2006-01-02T15:04:05.000000Z07:00
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
        && s.split_once('.')
            .is_some_and(|(_, frac)| frac.chars().take_while(char::is_ascii_digit).count() == 6)
}

/// Check one spec field's value (`null` is allowed: it removes the field).
fn check_field(name: &str, field: &str, v: &Value) -> Result<(), Rejection> {
    if !FIELDS.contains(&field) {
        return Err(invalid(
            name,
            &format!("spec.{field}"),
            "Forbidden: unknown field",
        ));
    }
    if v.is_null() {
        return Ok(());
    }
    let ok = match field {
        "holderIdentity" | "preferredHolder" | "strategy" => v.is_string(),
        "leaseDurationSeconds" | "leaseTransitions" => v.as_i64().is_some_and(|n| n >= 0),
        _ => v.as_str().is_some_and(is_micro_time),
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(
            name,
            &format!("spec.{field}"),
            &format!("Invalid value: {v}"),
        ))
    }
}

fn spec_of(name: &str, body: &Value) -> Result<Map<String, Value>, Rejection> {
    match body.get("spec") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => {
            for (k, v) in m {
                check_field(name, k, v)?;
            }
            Ok(m.clone())
        }
        Some(_) => Err(invalid(name, "spec", "Invalid value: must be an object")),
    }
}

impl Leases {
    pub(super) fn get(&self, ns: &str, name: &str) -> Option<Value> {
        self.object(ns, name).cloned()
    }

    fn object(&self, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&(ns.to_string(), name.to_string()))
            .map(|(o, _)| o)
    }

    fn bump(&mut self, ns: &str, name: &str) -> Value {
        self.rv += 1;
        let rv = self.rv.to_string();
        let Some((obj, _)) = self.objects.get_mut(&(ns.to_string(), name.to_string())) else {
            return Value::Null;
        };
        obj["metadata"]["resourceVersion"] = json!(rv);
        obj.clone()
    }

    /// Handle one request on the Lease paths.
    pub(super) fn handle(
        &mut self,
        method: &Method,
        ns: &str,
        name: Option<&str>,
        query: &[(String, String)],
        media_type: &str,
        body: &[u8],
    ) -> Response {
        match self.answer(method, ns, name, query, media_type, body) {
            Ok(r) => r,
            Err(r) => *r,
        }
    }

    fn answer(
        &mut self,
        method: &Method,
        ns: &str,
        name: Option<&str>,
        query: &[(String, String)],
        media_type: &str,
        body: &[u8],
    ) -> Result<Response, Rejection> {
        let param = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.as_str());
        let parse = || -> Result<Value, Rejection> {
            serde_json::from_slice(body).map_err(|e| {
                Box::new(status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("the double reads JSON bodies (the JSON subset of YAML): {e}"),
                ))
            })
        };
        match (method.clone(), name) {
            (Method::GET, Some(name)) => match self.object(ns, name) {
                Some(o) => Ok(json_response(StatusCode::OK, o)),
                None => Err(Box::new(status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("leases.coordination.k8s.io \"{name}\" not found"),
                ))),
            },
            (Method::POST, None) => {
                if media_type != "application/json" {
                    return Err(Box::new(status(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "UnsupportedMediaType",
                        format!(
                            "the body of a create must be application/json, not {media_type:?}"
                        ),
                    )));
                }
                let obj = parse()?;
                let name = obj["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if !valid_dns_subdomain(&name) {
                    return Err(invalid(
                        &name,
                        "metadata.name",
                        "Invalid value: not a DNS subdomain",
                    ));
                }
                if obj["metadata"]["namespace"]
                    .as_str()
                    .is_some_and(|n| n != ns)
                {
                    return Err(Box::new(status(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        "the namespace of the provided object does not match the namespace sent on the request",
                    )));
                }
                let spec = spec_of(&name, &obj)?;
                if self.object(ns, &name).is_some() {
                    return Err(Box::new(status(
                        StatusCode::CONFLICT,
                        "AlreadyExists",
                        format!("leases.coordination.k8s.io \"{name}\" already exists"),
                    )));
                }
                let owners = spec
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, _)| {
                        (
                            k.clone(),
                            param("fieldManager").unwrap_or("unknown").to_string(),
                        )
                    })
                    .collect();
                let stored = json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": ns, "uid": uuid::Uuid::new_v4().to_string(),
                        "creationTimestamp": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()},
                    "spec": Value::Object(spec.into_iter().filter(|(_, v)| !v.is_null()).collect()),
                });
                self.objects
                    .insert((ns.to_string(), name.clone()), (stored, owners));
                Ok(json_response(StatusCode::CREATED, &self.bump(ns, &name)))
            }
            (Method::PATCH, Some(name)) => {
                let patch = parse()?;
                let Some((_, _)) = self.objects.get(&(ns.to_string(), name.to_string())) else {
                    return Err(Box::new(status(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        format!("leases.coordination.k8s.io \"{name}\" not found"),
                    )));
                };
                let spec = spec_of(name, &patch)?;
                let manager = param("fieldManager");
                let key = (ns.to_string(), name.to_string());
                match media_type {
                    "application/apply-patch+yaml" => {
                        let Some(manager) = manager.filter(|m| !m.is_empty()) else {
                            return Err(Box::new(status(
                                StatusCode::BAD_REQUEST,
                                "BadRequest",
                                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                            )));
                        };
                        if patch["apiVersion"] != "coordination.k8s.io/v1"
                            || patch["kind"] != "Lease"
                        {
                            return Err(Box::new(status(
                                StatusCode::BAD_REQUEST,
                                "BadRequest",
                                "apply patches must name apiVersion coordination.k8s.io/v1 and kind Lease",
                            )));
                        }
                        let force = param("force").is_some_and(|f| f == "true");
                        let Some((obj, owners)) = self.objects.get_mut(&key) else {
                            return Err(Box::new(status(
                                StatusCode::NOT_FOUND,
                                "NotFound",
                                "gone",
                            )));
                        };
                        let conflicts: Vec<String> = spec
                            .iter()
                            .filter(|(k, v)| {
                                owners.get(*k).is_some_and(|o| o != manager)
                                    && obj["spec"].get(k.as_str()) != Some(v)
                            })
                            .map(|(k, _)| {
                                format!("conflict with \"{}\": .spec.{k}", owners[k.as_str()])
                            })
                            .collect();
                        if !conflicts.is_empty() && !force {
                            return Err(Box::new(status(
                                StatusCode::CONFLICT,
                                "Conflict",
                                format!(
                                    "Apply failed with {} conflict{}: {}",
                                    conflicts.len(),
                                    if conflicts.len() == 1 { "" } else { "s" },
                                    conflicts.join(", ")
                                ),
                            )));
                        }
                        // Fields this manager owned and no longer applies are removed.
                        let dropped: Vec<String> = owners
                            .iter()
                            .filter(|(k, o)| *o == manager && !spec.contains_key(k.as_str()))
                            .map(|(k, _)| k.clone())
                            .collect();
                        for k in dropped {
                            owners.remove(&k);
                            if let Some(s) = obj["spec"].as_object_mut() {
                                s.remove(&k);
                            }
                        }
                        set_fields(obj, owners, &spec, manager);
                    }
                    "application/strategic-merge-patch+json" | "application/merge-patch+json" => {
                        let manager = manager.unwrap_or("unknown");
                        let Some((obj, owners)) = self.objects.get_mut(&key) else {
                            return Err(Box::new(status(
                                StatusCode::NOT_FOUND,
                                "NotFound",
                                "gone",
                            )));
                        };
                        set_fields(obj, owners, &spec, manager);
                    }
                    other => {
                        return Err(Box::new(status(
                            StatusCode::UNSUPPORTED_MEDIA_TYPE,
                            "UnsupportedMediaType",
                            format!("the body of a patch must be a patch type, not {other:?}"),
                        )));
                    }
                }
                Ok(json_response(StatusCode::OK, &self.bump(ns, name)))
            }
            (m, _) => Err(Box::new(status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("the double serves GET, POST and PATCH on Leases, not {m}"),
            ))),
        }
    }
}

/// Set (or with `null`, remove) spec fields; `manager` owns what it set.
fn set_fields(
    obj: &mut Value,
    owners: &mut BTreeMap<String, String>,
    spec: &Map<String, Value>,
    manager: &str,
) {
    if !obj["spec"].is_object() {
        obj["spec"] = json!({});
    }
    for (k, v) in spec {
        if let Some(s) = obj["spec"].as_object_mut() {
            if v.is_null() {
                s.remove(k);
                owners.remove(k);
            } else {
                s.insert(k.clone(), v.clone());
                owners.insert(k.clone(), manager.to_string());
            }
        }
    }
}
