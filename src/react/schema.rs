//! CDEvents schema validation of inbound events, against the spec's own JSON schemas for
//! v0.4.1, v0.5.1 and 0.6.0-draft, bundled in the binary (see cdevents-schemas/SOURCE.md).
//! Offline: link and definition schemas are registered under their `$id`. The schema of an
//! event is chosen by its `context.type` and its spec version (`context.specversion`, or
//! `context.version` in 0.4.x). This module only judges documents; it never does I/O.

use jsonschema::{Registry, Validator};
use serde_json::Value;
use serde_json_borrow::Value as Doc;
use std::collections::HashMap;
use std::sync::OnceLock;

pub mod borrowed;
use borrowed::Borrowed;

mod bundled {
    include!(concat!(env!("OUT_DIR"), "/cdevents_schemas.rs"));
}

/// The spec versions whose schemas are bundled, as folder names.
pub const VERSIONS: [&str; 3] = ["v0.4.1", "v0.5.1", "0.6.0-draft"];

/// Why a document is not a valid CDEvent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "context.specversion {0:?} is not a supported CDEvents version (0.4.1, 0.5.x, 0.6.0-draft)"
    )]
    UnknownVersion(String),
    #[error("context.type {ty:?} is not a CDEvents {version} event type")]
    UnknownType { ty: String, version: String },
    #[error("CDEvent is invalid: {0}")]
    Invalid(String),
}

pub struct Schemas {
    /// version folder -> type -> validator (looked up without allocating), for documents
    /// read in place ([`borrowed`]).
    by_type: HashMap<&'static str, HashMap<String, Validator<Borrowed>>>,
}

fn bundled_file(path: &str) -> Option<&'static str> {
    bundled::FILES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, text)| *text)
}

/// The bundled files, as (path relative to the bundle root, contents).
pub fn bundled_files() -> &'static [(&'static str, &'static str)] {
    bundled::FILES
}

impl Schemas {
    /// The process-wide set, compiled once (about 150 schemas).
    pub fn get() -> &'static Schemas {
        static SET: OnceLock<Schemas> = OnceLock::new();
        SET.get_or_init(Schemas::compile)
    }

    fn compile() -> Schemas {
        let mut by_type: HashMap<&'static str, HashMap<String, Validator<Borrowed>>> =
            HashMap::new();
        for version in VERSIONS {
            let parse = |text: &str| serde_json::from_str::<Value>(text).ok();
            let mut resources = Vec::new();
            for (path, text) in bundled::FILES {
                let Some(rest) = path.strip_prefix(version).and_then(|p| p.strip_prefix('/'))
                else {
                    continue;
                };
                let shared = ["schemas/links/", "schemas/_defs/", "schemas/registry/"];
                if !shared.iter().any(|s| rest.starts_with(s)) {
                    continue;
                }
                if let Some(v) = parse(text)
                    && let Some(id) = v.get("$id").and_then(Value::as_str)
                {
                    resources.push((id.to_string(), v));
                }
            }
            let Ok(registry) = Registry::new()
                .extend(resources.iter().map(|(id, v)| (id.as_str(), v.clone())))
                .and_then(|b| b.prepare())
            else {
                tracing::error!(version, "bundled CDEvents link schemas do not compile");
                continue;
            };
            let types = bundled_file(&format!("{version}/event-types.txt")).unwrap_or_default();
            for line in types.lines() {
                let Some((ty, file)) = line.split_once('\t') else {
                    continue;
                };
                let Some(schema) = bundled_file(&format!("{version}/{file}")).and_then(parse)
                else {
                    continue;
                };
                match jsonschema::options_for::<Borrowed>()
                    .should_validate_formats(true)
                    .with_registry(&registry)
                    .build(&schema)
                {
                    Ok(v) => {
                        by_type
                            .entry(version)
                            .or_default()
                            .insert(ty.to_string(), v);
                    }
                    Err(e) => {
                        tracing::error!(version, file, error = %e, "bundled schema does not compile")
                    }
                }
            }
        }
        Schemas { by_type }
    }

    /// How many event schemas compiled (for a start-up check and tests).
    pub fn len(&self) -> usize {
        self.by_type.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bundled version folder for a CDEvent's declared spec version.
    fn version_of(cdevent: &Doc<'_>) -> Result<&'static str, SchemaError> {
        let ctx = cdevent.get("context");
        let declared = ctx
            .get("specversion")
            .as_str()
            .or_else(|| ctx.get("version").as_str())
            .unwrap_or_default();
        match declared {
            "0.4.0" | "0.4.1" => Ok("v0.4.1"),
            "0.5.0" | "0.5.1" => Ok("v0.5.1"),
            "0.6.0-draft" | "0.6.0" => Ok("0.6.0-draft"),
            other => Err(SchemaError::UnknownVersion(other.to_string())),
        }
    }

    /// Validate a CDEvent (`dev.cdevents.*`) against the schema of its type and version.
    pub fn validate(&self, cdevent: &Value) -> Result<(), SchemaError> {
        self.validate_doc(&borrowed::view(cdevent))
    }

    /// [`Schemas::validate`] for a document read in place (a request body).
    pub fn validate_doc(&self, cdevent: &Doc<'_>) -> Result<(), SchemaError> {
        let version = Self::version_of(cdevent)?;
        let ty = cdevent
            .get("context")
            .get("type")
            .as_str()
            .unwrap_or_default();
        let validator = self
            .by_type
            .get(version)
            .and_then(|types| types.get(ty))
            .ok_or_else(|| SchemaError::UnknownType {
                ty: ty.to_string(),
                version: version.trim_start_matches('v').to_string(),
            })?;
        // The common case, a valid event, without collecting errors.
        if validator.is_valid(cdevent) {
            return Ok(());
        }
        let errors: Vec<String> = validator
            .iter_errors(cdevent)
            .take(3)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{at}: {e}")
                }
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SchemaError::Invalid(errors.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/cdevents")
    }

    #[test]
    fn bundled_schemas_are_the_spec_files() {
        assert!(bundled_files().len() > 150);
        for (path, text) in bundled_files() {
            let original = std::fs::read_to_string(shared().join(path))
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(*text, original, "{path} differs from ../shared/cdevents");
        }
    }

    #[test]
    fn every_conformance_example_validates_and_a_broken_one_does_not() {
        let schemas = Schemas::get();
        assert!(schemas.len() > 130, "{} schemas", schemas.len());
        let mut checked = 0;
        for version in VERSIONS {
            let dir = shared().join(version).join("examples");
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let p = entry.path();
                if p.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let v: Value = serde_json::from_str(&text).unwrap_or_default();
                if let Err(e) = schemas.validate(&v) {
                    panic!("{}: {e}", p.display());
                }
                checked += 1;
                let mut broken = v.clone();
                broken["context"]["id"] = Value::from(7);
                assert!(schemas.validate(&broken).is_err(), "{}", p.display());
            }
        }
        assert!(checked > 130, "only {checked} examples");
    }
}
