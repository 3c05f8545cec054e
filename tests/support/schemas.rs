//! The CDEvents spec's own JSON schemas (../shared/cdevents/<version>/schemas), compiled with
//! the `jsonschema` crate, offline: link schemas are registered under their `$id`.

use jsonschema::{Registry, Validator};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;

pub fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

pub struct SchemaSet {
    by_type: HashMap<String, Validator>,
}

impl SchemaSet {
    /// Every event schema of `version` (`v0.5.1`, `v0.4.1`, `0.6.0-draft`).
    pub fn load(version: &str) -> SchemaSet {
        let dir = shared().join("cdevents").join(version);
        let read = |p: PathBuf| -> Value {
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        let mut resources = Vec::new();
        for sub in ["schemas/links", "schemas/_defs", "schemas/registry"] {
            let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
                continue;
            };
            for entry in entries.flatten() {
                let v = read(entry.path());
                if let Some(id) = v.get("$id").and_then(Value::as_str) {
                    resources.push((id.to_string(), v));
                }
            }
        }
        let registry = Registry::new()
            .extend(resources.iter().map(|(id, v)| (id.as_str(), v.clone())))
            .and_then(|b| b.prepare())
            .unwrap_or_else(|e| panic!("schema registry for {version}: {e}"));
        let types = std::fs::read_to_string(dir.join("event-types.txt")).unwrap_or_default();
        let mut by_type = HashMap::new();
        for line in types.lines() {
            let Some((ty, file)) = line.split_once('\t') else {
                continue;
            };
            let schema = read(dir.join(file));
            let validator = jsonschema::options()
                .should_validate_formats(true)
                .with_registry(&registry)
                .build(&schema)
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            by_type.insert(ty.to_string(), validator);
        }
        assert!(
            by_type.len() >= 40,
            "{version}: only {} schemas loaded",
            by_type.len()
        );
        SchemaSet { by_type }
    }

    /// Validate a CDEvent against the schema of its `context.type`.
    pub fn validate(&self, event: &Value) -> Result<(), String> {
        let ty = event["context"]["type"].as_str().ok_or("no context.type")?;
        let v = self
            .by_type
            .get(ty)
            .ok_or(format!("no schema for type {ty}"))?;
        let errors: Vec<String> = v
            .iter_errors(event)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}
