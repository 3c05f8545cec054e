//! The write side of the Kubernetes API double (see the parent module's doc): GET of one
//! Application, merge PATCH, DELETE, and create on a namespace's collection, checked against
//! the CRD's schema.

use super::{
    API_VERSION, FakeKube, KIND, PREFIX, Rejection, merge_patch, status, status_body,
    valid_dns_subdomain,
};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::path::PathBuf;

const GROUP: &str = "argoproj.io";
const RESOURCE: &str = "applications";
const OBJECT_PARAMS: &[&str] = &["resourceVersion"];
const WRITE_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];
const PATCH_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "force"];
const DELETE_PARAMS: &[&str] = &[
    "dryRun",
    "gracePeriodSeconds",
    "orphanDependents",
    "propagationPolicy",
];
const MERGE_PATCH: &str = "application/merge-patch+json";

/// A request on the write side, as the handlers see it.
pub(super) struct Write<'a> {
    pub(super) method: &'a Method,
    pub(super) query: &'a [(String, String)],
    /// The media type of `Content-Type`, lower-cased, without parameters.
    pub(super) media_type: String,
    pub(super) body: &'a [u8],
}

impl Write<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Query parameters outside `allowed` are 400 (STRICTER, as on the list side).
    fn only(&self, allowed: &[&str]) -> Result<(), Rejection> {
        match self
            .query
            .iter()
            .find(|(k, _)| !allowed.contains(&k.as_str()))
        {
            Some((k, _)) => Err(Box::new(status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!(
                    "unknown query parameter \"{k}\" (allowed: {})",
                    allowed.join(", ")
                ),
            ))),
            None => Ok(()),
        }
    }

    /// `dryRun=All`: validate, answer, store nothing.
    fn dry_run(&self) -> Result<bool, Rejection> {
        match self.param("dryRun") {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(v) => Err(Box::new(status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("invalid dry run option: {v:?}: supported values: \"All\""),
            ))),
        }
    }

    /// The body as a JSON object (400 otherwise, as the API server's decoder answers).
    fn object(&self) -> Result<Value, Rejection> {
        let v: Value = serde_json::from_slice(self.body).map_err(|e| {
            Box::new(status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("the body of the request was not valid JSON: {e}"),
            ))
        })?;
        if v.is_object() {
            Ok(v)
        } else {
            Err(Box::new(status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!(
                    "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                    json_type(&v)
                ),
            )))
        }
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

pub(super) fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn status_details(code: StatusCode, reason: &str, message: &str, details: Value) -> Response {
    let mut body = status_body(code.as_u16(), reason, message);
    body["details"] = details;
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn not_found(name: &str) -> Rejection {
    Box::new(status_details(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{RESOURCE}.{GROUP} \"{name}\" not found"),
        json!({"name": name, "group": GROUP, "kind": RESOURCE}),
    ))
}

fn conflict(name: &str, message: &str) -> Rejection {
    Box::new(status_details(
        StatusCode::CONFLICT,
        "Conflict",
        &format!("Operation cannot be fulfilled on {RESOURCE}.{GROUP} \"{name}\": {message}"),
        json!({"name": name, "group": GROUP, "kind": RESOURCE}),
    ))
}

fn bad_request(message: impl Into<String>) -> Rejection {
    Box::new(status(StatusCode::BAD_REQUEST, "BadRequest", message))
}

/// 422 `Invalid` for `Application.argoproj.io "<name>"`, one cause per `field: message`.
fn invalid_object(name: &str, errors: &[String]) -> Rejection {
    let causes: Vec<Value> = errors
        .iter()
        .map(|e| {
            let (field, message) = e.split_once(": ").unwrap_or(("", e));
            json!({"reason": "FieldValueInvalid", "message": message, "field": field})
        })
        .collect();
    let listed = if errors.len() == 1 {
        errors[0].clone()
    } else {
        format!("[{}]", errors.join(", "))
    };
    Box::new(status_details(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        &format!("{KIND}.{GROUP} \"{name}\" is invalid: {listed}"),
        json!({"name": name, "group": GROUP, "kind": KIND, "causes": causes}),
    ))
}

/// `/apis/argoproj.io/v1alpha1/namespaces/{ns}/applications/{name}` -> (ns, name).
pub(super) fn object_path(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix(PREFIX)?.strip_prefix("/namespaces/")?;
    let (ns, rest) = rest.split_once('/')?;
    let name = rest.strip_prefix("applications/")?;
    (!ns.is_empty() && !name.is_empty() && !name.contains('/'))
        .then(|| (ns.to_string(), name.to_string()))
}

/// The CRD's `openAPIV3Schema` (../shared/argocd/application-crd.yaml), compiled once. Every
/// object schema with `properties` is closed unless it says `additionalProperties` or
/// `x-kubernetes-preserve-unknown-fields` (the API server's Strict field validation).
fn crd_validator() -> &'static jsonschema::Validator {
    static V: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/argocd/application-crd.yaml");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let crd: Value =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let version = crd["spec"]["versions"]
            .as_array()
            .and_then(|vs| vs.iter().find(|v| v["name"] == "v1alpha1"))
            .unwrap_or_else(|| panic!("{}: no v1alpha1 version", path.display()));
        let schema = closed(&version["schema"]["openAPIV3Schema"]);
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .build(&schema)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    })
}

fn closed(schema: &Value) -> Value {
    let Some(obj) = schema.as_object() else {
        return schema.clone();
    };
    let mut out = serde_json::Map::new();
    for (k, v) in obj {
        match k.as_str() {
            "description" => {}
            "properties" => {
                let props = v
                    .as_object()
                    .map(|m| m.iter().map(|(n, s)| (n.clone(), closed(s))).collect())
                    .unwrap_or_default();
                out.insert(k.clone(), Value::Object(props));
            }
            "items" | "additionalProperties" if v.is_object() => {
                out.insert(k.clone(), closed(v));
            }
            "anyOf" | "allOf" | "oneOf" => {
                let all = v
                    .as_array()
                    .map(|a| a.iter().map(closed).collect())
                    .unwrap_or_default();
                out.insert(k.clone(), Value::Array(all));
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    let open = schema.get("additionalProperties").is_some()
        || schema["x-kubernetes-preserve-unknown-fields"] == true;
    if schema.get("properties").is_some() && !open {
        out.insert("additionalProperties".into(), json!(false));
    }
    Value::Object(out)
}

/// `v` without object members whose value is `null`: the API server prunes them (no field
/// of the CRD is `nullable`).
fn pruned(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), pruned(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(pruned).collect()),
        other => other.clone(),
    }
}

/// Check `obj` against the CRD's schema: an unknown field is 400 (as Strict field validation
/// answers), anything else 422 `Invalid`. On an update (`old` given) a violation in a part
/// the update left as it was is ignored, as CRD validation ratcheting does.
fn check_schema(name: &str, obj: &Value, old: Option<&Value>) -> Result<(), Rejection> {
    let changed = |at: &str| old.is_none_or(|o| o.pointer(at) != obj.pointer(at));
    let errors = super::super::swagger::errors_where(crd_validator(), obj, changed);
    let unknown: Vec<&String> = errors
        .iter()
        .filter(|e| e.ends_with(": unknown field"))
        .collect();
    if let Some(first) = unknown.first() {
        let field = first.trim_end_matches(": unknown field");
        return Err(bad_request(format!(
            "{KIND} in version \"v1alpha1\" cannot be handled as a {KIND}: strict decoding error: unknown field \"{field}\"{}",
            if unknown.len() > 1 {
                format!(" (and {} more)", unknown.len() - 1)
            } else {
                String::new()
            }
        )));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(invalid_object(name, &errors))
    }
}

fn valid_subdomain_name(name: &str) -> Result<(), String> {
    if valid_dns_subdomain(name) {
        Ok(())
    } else {
        Err(format!(
            "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        ))
    }
}

/// GET, PATCH or DELETE on one Application.
pub(super) fn object(
    fake: &FakeKube,
    w: &Write<'_>,
    ns: &str,
    name: &str,
) -> (Response, &'static str) {
    let result = match *w.method {
        Method::GET => get_object(fake, w, ns, name).map(|r| (r, "get")),
        Method::PATCH => patch_object(fake, w, ns, name).map(|r| (r, "patch")),
        Method::DELETE => delete_object(fake, w, ns, name).map(|r| (r, "delete")),
        _ => {
            let mut r = status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!(
                    "the server does not allow this method on the requested resource ({} on one Application; this double serves GET, merge PATCH and DELETE)",
                    w.method
                ),
            );
            r.headers_mut().insert(
                header::ALLOW,
                header::HeaderValue::from_static("GET, PATCH, DELETE"),
            );
            Err(Box::new(r))
        }
    };
    result.unwrap_or_else(|r| (*r, "rejected"))
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn get_object(fake: &FakeKube, w: &Write<'_>, ns: &str, name: &str) -> Result<Response, Rejection> {
    w.only(OBJECT_PARAMS)?;
    let obj = fake.world().get(ns, name).ok_or_else(|| not_found(name))?;
    Ok(json_response(StatusCode::OK, &obj))
}

fn patch_object(
    fake: &FakeKube,
    w: &Write<'_>,
    ns: &str,
    name: &str,
) -> Result<Response, Rejection> {
    match w.media_type.as_str() {
        MERGE_PATCH => {}
        t @ ("application/json-patch+json" | "application/apply-patch+yaml") => {
            return Err(Box::new(status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                format!("{t} patches are not served by this test double; use {MERGE_PATCH}"),
            )));
        }
        t => {
            return Err(Box::new(status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, {MERGE_PATCH}, application/apply-patch+yaml (got {t:?})"
                ),
            )));
        }
    }
    w.only(PATCH_PARAMS)?;
    let dry_run = w.dry_run()?;
    let patch = w.object()?;
    let mut world = fake.world();
    let current = world.get(ns, name).ok_or_else(|| not_found(name))?;
    let wanted_rv = &patch["metadata"]["resourceVersion"];
    if !wanted_rv.is_null() && *wanted_rv != current["metadata"]["resourceVersion"] {
        return Err(conflict(
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        ));
    }
    let mut patched = current.clone();
    merge_patch(&mut patched, &patch);
    let patched = pruned(&patched);
    if patched["metadata"]["name"] != name {
        return Err(bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            patched["metadata"]["name"].as_str().unwrap_or_default()
        )));
    }
    if patched["metadata"]["namespace"] != ns {
        return Err(bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    if patched["apiVersion"] != API_VERSION || patched["kind"] != KIND {
        return Err(bad_request(format!(
            "the patch may not change apiVersion or kind ({API_VERSION}, {KIND})"
        )));
    }
    check_schema(name, &patched, Some(&current))?;
    if patched == current || dry_run {
        // A no-op update stores nothing and wakes no watch.
        return Ok(json_response(StatusCode::OK, &patched));
    }
    let stored = world.apply(patched);
    Ok(json_response(StatusCode::OK, &stored))
}

fn delete_object(
    fake: &FakeKube,
    w: &Write<'_>,
    ns: &str,
    name: &str,
) -> Result<Response, Rejection> {
    w.only(DELETE_PARAMS)?;
    let dry_run = w.dry_run()?;
    let options = if w.body.is_empty() {
        json!({})
    } else {
        w.object()?
    };
    let policy = w
        .param("propagationPolicy")
        .map(String::from)
        .or_else(|| options["propagationPolicy"].as_str().map(String::from));
    if let Some(p) = policy.as_deref()
        && !matches!(p, "Orphan" | "Background" | "Foreground")
    {
        return Err(Box::new(status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!(
                "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
            ),
        )));
    }
    let mut world = fake.world();
    let current = world.get(ns, name).ok_or_else(|| not_found(name))?;
    for (field, actual) in [
        ("uid", &current["metadata"]["uid"]),
        ("resourceVersion", &current["metadata"]["resourceVersion"]),
    ] {
        let wanted = &options["preconditions"][field];
        if !wanted.is_null() && wanted != actual {
            let label = if field == "uid" {
                "UID"
            } else {
                "ResourceVersion"
            };
            return Err(conflict(
                name,
                &format!(
                    "Precondition failed: {label} in precondition: {}, {label} in object meta: {}",
                    wanted.as_str().unwrap_or_default(),
                    actual.as_str().unwrap_or_default()
                ),
            ));
        }
    }
    if dry_run {
        return Ok(json_response(StatusCode::OK, &current));
    }
    let last = world.delete(ns, name).unwrap_or(current);
    // 202 while finalizers hold the object, 200 once it is gone (the deleted object, as a
    // custom resource's store returns it).
    let code = if world.get(ns, name).is_some() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok(json_response(code, &last))
}

/// POST on `/namespaces/{ns}/applications`: create.
pub(super) fn create(fake: &FakeKube, w: &Write<'_>, ns: &str) -> (Response, &'static str) {
    create_object(fake, w, ns)
        .map(|r| (r, "create"))
        .unwrap_or_else(|r| (*r, "rejected"))
}

fn create_object(fake: &FakeKube, w: &Write<'_>, ns: &str) -> Result<Response, Rejection> {
    if w.media_type != "application/json" {
        return Err(Box::new(status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json (got {:?}; the real server also takes YAML and protobuf)",
                w.media_type
            ),
        )));
    }
    w.only(WRITE_PARAMS)?;
    let dry_run = w.dry_run()?;
    let mut obj = pruned(&w.object()?);
    let (api_version, kind) = (&obj["apiVersion"], &obj["kind"]);
    if kind.as_str().is_none_or(str::is_empty) {
        return Err(bad_request(format!("Object 'Kind' is missing in '{obj}'")));
    }
    if *kind != KIND || *api_version != API_VERSION {
        return Err(bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({API_VERSION}), or the kind ({}) is not {KIND}",
            api_version.as_str().unwrap_or_default(),
            kind.as_str().unwrap_or_default()
        )));
    }
    match obj["metadata"]["namespace"].as_str() {
        None | Some("") => obj["metadata"]["namespace"] = json!(ns),
        Some(n) if n != ns => {
            return Err(bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        Some(_) => {}
    }
    if obj["metadata"]["resourceVersion"]
        .as_str()
        .is_some_and(|rv| !rv.is_empty())
    {
        return Err(bad_request(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    let mut name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        match obj["metadata"]["generateName"].as_str() {
            Some(prefix) if !prefix.is_empty() => {
                name = format!("{prefix}{}", random_suffix());
                obj["metadata"]["name"] = json!(name);
            }
            _ => {
                return Err(invalid_object(
                    "",
                    &["metadata.name: Required value: name or generateName is required".into()],
                ));
            }
        }
    }
    valid_subdomain_name(&name).map_err(|e| invalid_object(&name, &[e]))?;
    check_schema(&name, &obj, None)?;
    let mut world = fake.world();
    if world.get(ns, &name).is_some() {
        return Err(Box::new(status_details(
            StatusCode::CONFLICT,
            "AlreadyExists",
            &format!("{RESOURCE}.{GROUP} \"{name}\" already exists"),
            json!({"name": name, "group": GROUP, "kind": RESOURCE}),
        )));
    }
    if dry_run {
        return Ok(json_response(StatusCode::CREATED, &obj));
    }
    let stored = world.apply(obj);
    Ok(json_response(StatusCode::CREATED, &stored))
}

/// Five characters as the API server appends to a `generateName`.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5]
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}
