//! `replay`: a file of Kubernetes watch events (JSON Lines) through the detector, printing
//! the CDEvents it emits. No store, no network — the same code path as `serve` minus I/O.

use crate::argocd::Application;
use crate::emit::Inventory;
use crate::emit::detect::{Change, DetectConfig};
use crate::emit::event::{self, CdEvent, SpecVersion};
use serde::Deserialize;
use std::io::BufRead;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    #[error("reading input: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Deserialize)]
struct WatchLine {
    #[serde(rename = "type")]
    ty: String,
    object: serde_json::Value,
}

/// Replay watch events from `input`, calling `out` with every CDEvent, in order.
/// `observed_at` dates changes Argo CD leaves undated.
pub fn replay(
    input: impl BufRead,
    version: SpecVersion,
    source: &str,
    cfg: &DetectConfig,
    observed_at: &str,
    mut out: impl FnMut(CdEvent) -> std::io::Result<()>,
) -> Result<usize, ReplayError> {
    let mut inventory = Inventory::default();
    let mut emitted = 0;
    for (i, line) in input.lines().enumerate() {
        let line_no = i + 1;
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| ReplayError::Line {
            line: line_no,
            message,
        };
        let watch: WatchLine = serde_json::from_str(&line)
            .map_err(|e| bad(format!("not a watch event {{\"type\",\"object\"}}: {e}")))?;
        let app: Application = serde_json::from_value(watch.object)
            .map_err(|e| bad(format!("object is not an Application: {e}")))?;
        if app.name().is_empty() {
            return Err(bad("object has no metadata.name".into()));
        }
        let key = app.key();
        let change = match watch.ty.as_str() {
            "ADDED" | "MODIFIED" => Change::Applied(&app),
            "DELETED" => Change::Deleted(Some(&app)),
            other => {
                return Err(bad(format!(
                    "type {other:?} is not one of ADDED, MODIFIED, DELETED"
                )));
            }
        };
        let detection = inventory.apply(cfg, &key, change, observed_at);
        for em in &detection.events {
            out(event::build(em, version, source))?;
            emitted += 1;
        }
    }
    Ok(emitted)
}
