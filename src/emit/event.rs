//! Event building: turns a detector [`Emission`] into a CDEvent JSON document of a given
//! spec version (v0.5.1 default, v0.4.1 selectable). Pure; it must never decide *whether*
//! an event happened — that is the detector's job.
//!
//! cdevents-sdk 0.4 is not used here: it has no way to set `chainId` or `links`, and fixes
//! `specversion` to `0.5.0` (see docs/decisions.md). The output is checked against the spec's
//! own JSON schemas in tests/replay.rs.

use crate::emit::detect::{Emission, EventKind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::fmt;
use std::str::FromStr;

/// A CDEvents specification version the gateway can emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SpecVersion {
    #[serde(rename = "0.4.1")]
    V0_4_1,
    #[default]
    #[serde(rename = "0.5.1")]
    V0_5_1,
}

impl SpecVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            SpecVersion::V0_4_1 => "0.4.1",
            SpecVersion::V0_5_1 => "0.5.1",
        }
    }

    /// The event-type version of `kind` in this spec version.
    fn type_version(self) -> &'static str {
        match self {
            SpecVersion::V0_4_1 => "0.2.0",
            SpecVersion::V0_5_1 => "0.3.0",
        }
    }

    /// The full `context.type`, e.g. `dev.cdevents.service.upgraded.0.3.0`.
    pub fn event_type(self, kind: EventKind) -> String {
        format!("dev.cdevents.{}.{}", kind.name(), self.type_version())
    }
}

impl fmt::Display for SpecVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unsupported CDEvents spec version {0:?} (supported: 0.5.1, 0.4.1)")]
pub struct UnsupportedVersion(String);

impl FromStr for SpecVersion {
    type Err = UnsupportedVersion;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "0.5.1" => Ok(SpecVersion::V0_5_1),
            "0.4.1" => Ok(SpecVersion::V0_4_1),
            other => Err(UnsupportedVersion(other.to_string())),
        }
    }
}

/// A built CDEvent, with what delivery needs to know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct CdEvent {
    pub id: String,
    pub ty: String,
    pub source: String,
    pub timestamp: String,
    pub body: Value,
}

/// Build the CDEvent for `em` in spec `version`, with `context.source` = `source`.
pub fn build(em: &Emission, version: SpecVersion, source: &str) -> CdEvent {
    let ty = version.event_type(em.kind);
    let mut context = Map::new();
    let version_key = match version {
        SpecVersion::V0_4_1 => "version",
        SpecVersion::V0_5_1 => "specversion",
    };
    context.insert(version_key.into(), json!(version.as_str()));
    context.insert("id".into(), json!(em.id.to_string()));
    context.insert("source".into(), json!(source));
    context.insert("type".into(), json!(ty));
    context.insert("timestamp".into(), json!(em.timestamp));
    if let Some(chain) = &em.chain {
        if let Some(c) = chain.chain_id.as_deref().filter(|c| !c.is_empty()) {
            context.insert("chainId".into(), json!(c));
        }
        if let Some(t) = chain.trigger_id.as_deref().filter(|t| !t.is_empty()) {
            context.insert(
                "links".into(),
                json!([{
                    "linkType": "RELATION",
                    "linkKind": "TRIGGER",
                    "target": {"contextId": t},
                }]),
            );
        }
    }

    let env = json!({"id": em.environment.id, "source": source});
    let content = match em.kind {
        EventKind::ServiceDeployed | EventKind::ServiceUpgraded | EventKind::ServiceRolledback => {
            json!({"environment": env, "artifactId": em.artifact_id})
        }
        EventKind::ServiceRemoved | EventKind::ServicePublished => json!({"environment": env}),
        EventKind::EnvironmentCreated | EventKind::EnvironmentDeleted => {
            json!({"name": em.environment.name})
        }
        EventKind::IncidentDetected | EventKind::IncidentResolved => {
            let mut c = Map::new();
            if let Some(d) = &em.description {
                c.insert("description".into(), json!(d));
            }
            c.insert("environment".into(), env);
            if let Some(s) = &em.service_id {
                c.insert("service".into(), json!({"id": s, "source": source}));
            }
            if let Some(a) = &em.artifact_id {
                c.insert("artifactId".into(), json!(a));
            }
            Value::Object(c)
        }
    };
    let mut subject = Map::new();
    subject.insert("id".into(), json!(em.subject_id));
    subject.insert("source".into(), json!(source));
    if version == SpecVersion::V0_4_1 {
        let subject_type = em.kind.name().split('.').next().unwrap_or_default();
        subject.insert("type".into(), json!(subject_type));
    }
    subject.insert("content".into(), content);

    let body = json!({
        "context": context,
        "subject": subject,
        "customData": em.custom_data,
        "customDataContentType": "application/json",
    });
    CdEvent {
        id: em.id.to_string(),
        ty,
        source: source.to_string(),
        timestamp: em.timestamp.clone(),
        body,
    }
}
