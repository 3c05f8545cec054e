//! Argo CD's REST contract, read from ../shared/argocd/swagger.json (Argo CD 3.6): which
//! paths and methods exist, which query parameters each accepts ([`check`]) and what a request
//! body may hold ([`check_body`]). Test doubles of Argo CD check every request against it.
//!
//! Bodies are validated with the `jsonschema` crate (draft 4), offline: swagger's
//! `definitions` are embedded in the schema document built for each body, so every
//! `#/definitions/X` reference resolves inside it. Argo CD decodes REST bodies with Go's
//! `encoding/json` (server.go registers util/grpc's `JSONMarshaler` with grpc-gateway, not
//! jsonpb), so the swagger schema is read the way that decoder reads a body:
//! - `format: int64` (whether swagger says `integer` or `string`) is a JSON number:
//!   encoding/json refuses `"3"` for an `int64` (400 `cannot unmarshal string`), and answers
//!   int64 fields as numbers too.
//! - Kubernetes wrapper types that swagger describes by their Go/proto shape get their JSON
//!   shape: `v1Time` and `v1MicroTime` are strings, `intstrIntOrString` an integer or a
//!   string, `runtimeRawExtension`, `v1JSON`, `v1FieldsV1` and `protobufAny` any value.
//! - Go structs embedded `inline` are flattened, as encoding/json (and the CRD's schema) have
//!   them, where swagger nests them: `v1alpha1SyncStrategyHook` is `{force}` (swagger: a
//!   `syncStrategyApply` member) and a kustomize patch `target` is `{group, version, kind,
//!   name, namespace, annotationSelector, labelSelector}` (swagger: `resId.gvk`). These are
//!   the only two places where swagger's `v1alpha1Application` and the CRD's schema differ.
//! - An object with `metadata` also takes `apiVersion` and `kind` (Go's embedded TypeMeta,
//!   which swagger leaves out).
//! - A member whose value is `null` is ignored (encoding/json leaves the field at its zero
//!   value).
//!
//! STRICTER than the real server on purpose: every object schema is closed
//! (`additionalProperties: false`) unless swagger declares `additionalProperties`, and names
//! match exactly. encoding/json silently drops an unknown member and matches names case-
//! insensitively, so a misspelt field (`syncOption`, `strategy` under `operation.sync`) would
//! be lost without a word against Argo CD; against the double it is a 400 naming the field.
//! Error messages name the field as a path from the body's root (`syncOptions`,
//! `resources[0].kind`, `spec.source.repoURL`).

use jsonschema::Validator;
use jsonschema::error::ValidationErrorKind;
use jsonschema::paths::LocationSegment;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = super::schemas::shared().join("argocd/swagger.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    })
}

/// The operation serving `method path`. Several templates can match one path
/// (`/api/v1/applications/{application.metadata.name}` only has PUT, `{name}` has GET,
/// PATCH, DELETE); the one with the method wins, and a literal segment beats a parameter
/// (`/api/v1/applications/manifestsWithFiles`).
fn operation(method: &str, path: &str) -> Result<(&'static str, &'static Value), String> {
    let paths = spec()["paths"]
        .as_object()
        .ok_or("swagger.json without paths")?;
    let want: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let mut candidates: Vec<(usize, &'static str, &'static Value)> = paths
        .iter()
        .filter_map(|(template, ops)| {
            let t: Vec<&str> = template.split('/').collect();
            let mut literals = 0;
            let same = t.len() == want.len()
                && t.iter().zip(&want).all(|(a, b)| {
                    if a.starts_with('{') && a.ends_with('}') {
                        !b.is_empty()
                    } else {
                        literals += 1;
                        a == b
                    }
                });
            same.then_some((literals, template.as_str(), ops))
        })
        .collect();
    if candidates.is_empty() {
        return Err(format!("{path} is not an Argo CD API path"));
    }
    candidates.sort_by_key(|(literals, ..)| std::cmp::Reverse(*literals));
    let m = method.to_ascii_lowercase();
    candidates
        .iter()
        .find_map(|(_, template, ops)| ops.get(&m).map(|op| (*template, op)))
        .ok_or_else(|| format!("{method} is not allowed on {path}"))
}

/// Check `method path?query` against swagger.json; Err names the violation.
pub fn check(method: &str, path: &str, query: &[(String, String)]) -> Result<(), String> {
    let (_, op) = operation(method, path)?;
    let allowed: Vec<&str> = op["parameters"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    for (k, _) in query {
        if !allowed.contains(&k.as_str()) {
            return Err(format!(
                "query parameter {k:?} is not accepted by {method} {path} (swagger allows {allowed:?})"
            ));
        }
    }
    Ok(())
}

/// Check the JSON body of `method path` against the operation's `in: body` schema (see the
/// module doc for how it is read, and where it is stricter than Argo CD). `Value::Null`
/// stands for "no body", read as `{}` (grpc-gateway tolerates an empty body). An operation
/// without a body parameter (GET, DELETE) takes any body: grpc-gateway never reads it. Err
/// lists every violation, each naming the field.
pub fn check_body(method: &str, path: &str, body: &Value) -> Result<(), String> {
    let (template, op) = operation(method, path)?;
    let param = op["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["in"] == "body"));
    let Some(param) = param else {
        return Ok(());
    };
    let schema = &param["schema"];
    let (key, label) = match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.trim_start_matches("#/definitions/");
            (name.to_string(), name.to_string())
        }
        None => (format!("{method} {template}"), "the body".to_string()),
    };
    let body = if body.is_null() {
        json!({})
    } else {
        body.clone()
    };
    validate(&key, schema, &body).map_err(|errors| {
        format!(
            "{method} {path}: body is not a valid {label}: {}",
            errors.join("; ")
        )
    })
}

/// Whether `method path` has an `in: body` parameter (grpc-gateway reads a body only then).
pub fn takes_body(method: &str, path: &str) -> bool {
    operation(method, path).is_ok_and(|(_, op)| {
        op["parameters"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["in"] == "body"))
    })
}

/// Validate `value` against the swagger definition `name` (`v1alpha1Application`), read as
/// [`check_body`] reads bodies. Err lists every violation, each naming the field.
pub fn check_definition(name: &str, value: &Value) -> Result<(), String> {
    if spec()["definitions"].get(name).is_none() {
        return Err(format!("swagger.json has no definition {name}"));
    }
    let schema = json!({ "$ref": format!("#/definitions/{name}") });
    validate(name, &schema, value)
        .map_err(|errors| format!("not a valid {name}: {}", errors.join("; ")))
}

fn validate(key: &str, schema: &Value, value: &Value) -> Result<(), Vec<String>> {
    let validator = validator(key, schema);
    let instance = without_nulls(value);
    let errors = errors(&validator, &instance);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// One compiled validator per body schema, built on first use.
fn validator(key: &str, schema: &Value) -> Arc<Validator> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Validator>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(key) {
        return v.clone();
    }
    let document = json!({
        "definitions": definitions(),
        "allOf": [convert(schema)],
    });
    let v = Arc::new(
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .build(&document)
            .unwrap_or_else(|e| panic!("compiling the swagger schema for {key}: {e}")),
    );
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key.to_string(), v.clone());
    v
}

/// Swagger's definitions, converted once (see the module doc).
fn definitions() -> &'static Value {
    static DEFS: OnceLock<Value> = OnceLock::new();
    DEFS.get_or_init(|| {
        let defs = spec()["definitions"]
            .as_object()
            .unwrap_or_else(|| panic!("swagger.json without definitions"));
        let converted: Map<String, Value> = defs
            .iter()
            .map(|(name, schema)| {
                let s = match name.as_str() {
                    "v1Time" => json!({"type": "string", "format": "date-time"}),
                    "v1MicroTime" => json!({"type": "string"}),
                    "intstrIntOrString" => json!({"type": ["integer", "string"]}),
                    "runtimeRawExtension" | "v1JSON" | "v1FieldsV1" | "protobufAny" => json!({}),
                    "v1alpha1SyncStrategyHook" => convert(&json!({
                        "type": "object",
                        "properties": {"force": {"type": "boolean"}},
                    })),
                    // Go embeds KustomizeGvk in KustomizeResId, and that in
                    // KustomizeSelector, inline; swagger nests them as `gvk` / `resId`.
                    "v1alpha1KustomizeResId" | "v1alpha1KustomizeSelector" => {
                        let mut props = json!({
                            "group": {"type": "string"},
                            "version": {"type": "string"},
                            "kind": {"type": "string"},
                            "name": {"type": "string"},
                            "namespace": {"type": "string"},
                        });
                        if name == "v1alpha1KustomizeSelector" {
                            props["annotationSelector"] = json!({"type": "string"});
                            props["labelSelector"] = json!({"type": "string"});
                        }
                        convert(&json!({"type": "object", "properties": props}))
                    }
                    _ => {
                        let mut s = convert(schema);
                        if s["properties"].get("metadata").is_some() {
                            s["properties"]["apiVersion"] = json!({"type": "string"});
                            s["properties"]["kind"] = json!({"type": "string"});
                        }
                        s
                    }
                };
                (name.clone(), s)
            })
            .collect();
        Value::Object(converted)
    })
}

/// One swagger schema as a closed JSON schema with encoding/json's number rules.
fn convert(schema: &Value) -> Value {
    let Some(obj) = schema.as_object() else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (k, v) in obj {
        match k.as_str() {
            // Documentation only; dropping it keeps the compiled document small.
            "title" | "description" => {}
            "properties" => {
                let props: Map<String, Value> = v
                    .as_object()
                    .map(|m| m.iter().map(|(n, s)| (n.clone(), convert(s))).collect())
                    .unwrap_or_default();
                out.insert(k.clone(), Value::Object(props));
            }
            "items" | "additionalProperties" if v.is_object() => {
                out.insert(k.clone(), convert(v));
            }
            "allOf" => {
                let all: Vec<Value> = v
                    .as_array()
                    .map(|a| a.iter().map(convert).collect())
                    .unwrap_or_default();
                out.insert(k.clone(), Value::Array(all));
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    if matches!(schema["format"].as_str(), Some("int64" | "uint64")) {
        out.insert("type".into(), json!("integer"));
        out.remove("format");
    }
    let is_object = schema["type"] == "object" || schema.get("properties").is_some();
    if is_object && schema.get("additionalProperties").is_none() && schema.get("allOf").is_none() {
        out.insert("additionalProperties".into(), json!(false));
    }
    Value::Object(out)
}

/// `value` without object members whose value is `null` (at any depth).
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Every violation of `instance` against `validator`, each naming the field by its path
/// from the root (`spec.source.repoURL`, `resources[0].kind`, `(root)`). Shared with the
/// Kubernetes double's CRD validation.
pub fn errors(validator: &Validator, instance: &Value) -> Vec<String> {
    errors_where(validator, instance, |_| true)
}

/// [`errors`], keeping only violations at instance locations (JSON pointers) for which
/// `keep` is true.
pub fn errors_where(
    validator: &Validator,
    instance: &Value,
    keep: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut out: Vec<String> = validator
        .iter_errors(instance)
        .filter(|e| keep(e.instance_path().as_str()))
        .flat_map(|e| {
            let at: Vec<String> = e
                .instance_path()
                .iter()
                .map(|s| match s {
                    LocationSegment::Property(p) => p.to_string(),
                    LocationSegment::Index(i) => format!("[{i}]"),
                })
                .collect();
            let field = |extra: Option<&str>| {
                let mut path = String::new();
                for part in at.iter().map(String::as_str).chain(extra) {
                    if !path.is_empty() && !part.starts_with('[') {
                        path.push('.');
                    }
                    path.push_str(part);
                }
                if path.is_empty() {
                    "(root)".to_string()
                } else {
                    path
                }
            };
            match e.kind() {
                ValidationErrorKind::AdditionalProperties { unexpected } => unexpected
                    .iter()
                    .map(|u| format!("{}: unknown field", field(Some(u))))
                    .collect::<Vec<_>>(),
                _ => vec![format!("{}: {e}", field(None))],
            }
        })
        .collect();
    out.dedup();
    out
}
