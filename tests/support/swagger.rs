//! Argo CD's REST contract, read from ../shared/argocd/swagger.json (Argo CD 3.6): which
//! paths and methods exist and which query parameters each accepts. Test doubles of Argo CD
//! check every request against it.

use serde_json::Value;
use std::sync::OnceLock;

fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = super::schemas::shared().join("argocd/swagger.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    })
}

/// Match a concrete path against swagger's templated paths (`/api/v1/applications/{name}`).
fn find(path: &str) -> Option<&'static serde_json::Map<String, Value>> {
    let paths = spec()["paths"].as_object()?;
    let want: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    paths.iter().find_map(|(template, ops)| {
        let t: Vec<&str> = template.split('/').collect();
        let same = t.len() == want.len()
            && t.iter()
                .zip(&want)
                .all(|(a, b)| (a.starts_with('{') && a.ends_with('}')) || a == b);
        if same { ops.as_object() } else { None }
    })
}

/// Check `method path?query` against swagger.json; Err names the violation.
pub fn check(method: &str, path: &str, query: &[(String, String)]) -> Result<(), String> {
    let ops = find(path).ok_or_else(|| format!("{path} is not an Argo CD API path"))?;
    let op = ops
        .get(&method.to_ascii_lowercase())
        .ok_or_else(|| format!("{method} is not allowed on {path}"))?;
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
