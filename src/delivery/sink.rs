//! An HTTP CloudEvents sink: one POST per event, binary or structured mode, with an optional
//! auth header whose value is read from a file or env var at start and never logged.

use super::retry::Attempt;
use crate::config::{SinkConfig, SinkMode};
use crate::store::OutboxRow;
use cloudevents::binding::reqwest::RequestBuilderExt;
use cloudevents::{EventBuilder, EventBuilderV10};
use reqwest::header::{HeaderName, HeaderValue};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink {sink}: auth header name {header:?} is invalid")]
    HeaderName { sink: String, header: String },
    #[error("sink {sink}: auth value: {source}")]
    AuthValue {
        sink: String,
        source: crate::config::secret::ReadSecretError,
    },
    #[error("sink {sink}: auth value from {from} is not a valid header value")]
    HeaderValue { sink: String, from: String },
}

pub struct HttpSink {
    name: String,
    url: reqwest::Url,
    mode: SinkMode,
    auth: Option<(HeaderName, HeaderValue)>,
    client: reqwest::Client,
}

impl HttpSink {
    /// Build a sink from its config, reading the auth value through `env` or from its file.
    pub fn new(
        cfg: &SinkConfig,
        client: reqwest::Client,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, SinkError> {
        let auth = match &cfg.auth {
            None => None,
            Some(a) => {
                let name = HeaderName::from_bytes(a.header.as_bytes()).map_err(|_| {
                    SinkError::HeaderName {
                        sink: cfg.name.clone(),
                        header: a.header.clone(),
                    }
                })?;
                let value = crate::config::secret::read(
                    env,
                    a.value_env.as_deref(),
                    a.value_file.as_deref(),
                )
                .map_err(|source| SinkError::AuthValue {
                    sink: cfg.name.clone(),
                    source,
                })?;
                let mut value =
                    HeaderValue::from_str(&value).map_err(|_| SinkError::HeaderValue {
                        sink: cfg.name.clone(),
                        from: crate::config::secret::origin(
                            a.value_env.as_deref(),
                            a.value_file.as_deref(),
                        ),
                    })?;
                value.set_sensitive(true);
                Some((name, value))
            }
        };
        Ok(HttpSink {
            name: cfg.name.clone(),
            url: cfg.url.0.clone(),
            mode: cfg.mode,
            auth,
            client,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// POST one outbox row and report what happened.
    pub async fn send(&self, row: &OutboxRow) -> Attempt {
        let data: serde_json::Value = match serde_json::from_str(&row.payload) {
            Ok(v) => v,
            Err(e) => {
                // Cannot happen for rows the pipeline wrote; never retried forever either.
                return Attempt::Unsendable(format!("stored payload is not JSON: {e}"));
            }
        };
        let mut builder = EventBuilderV10::new()
            .id(row.event_id.clone())
            .source(row.event_source.clone())
            .ty(row.event_type.clone())
            .data("application/json", data);
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&row.event_time) {
            builder = builder.time(t.with_timezone(&chrono::Utc));
        }
        let event = match builder.build() {
            Ok(e) => e,
            Err(e) => {
                return Attempt::Unsendable(format!("not a valid CloudEvent: {e}"));
            }
        };
        let mut req = self.client.post(self.url.clone());
        if let Some((name, value)) = &self.auth {
            req = req.header(name, value);
        }
        let req = match self.mode {
            SinkMode::Binary => match req.event(event) {
                Ok(r) => r,
                Err(e) => {
                    return Attempt::Unsendable(format!("encoding the CloudEvent: {e}"));
                }
            },
            SinkMode::Structured => match serde_json::to_vec(&event) {
                Ok(body) => req
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/cloudevents+json; charset=utf-8",
                    )
                    .body(body),
                Err(e) => {
                    return Attempt::Unsendable(format!("encoding the CloudEvent: {e}"));
                }
            },
        };
        match req.send().await {
            Ok(resp) => Attempt::Status {
                code: resp.status().as_u16(),
                retry_after: resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from),
            },
            Err(e) => Attempt::Transport {
                timeout: e.is_timeout(),
                message: e.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(auth: &str) -> SinkConfig {
        serde_saphyr::from_str(&format!(
            "{{name: audit, url: \"http://127.0.0.1:9/\", auth: {auth}}}"
        ))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn error(auth: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
        match HttpSink::new(&sink(auth), reqwest::Client::new(), env) {
            Ok(_) => panic!("{auth}: the sink was built"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn an_auth_value_that_cannot_be_used_stops_the_sink_with_the_reason() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let missing = dir.path().join("missing");
        let env = |name: &str| (name == "TWO_LINES").then(|| "Bearer a\nb".to_string());
        let cases = [
            (
                "{valueEnv: AUDIT_TOKEN}".to_string(),
                "sink audit: auth value: environment variable AUDIT_TOKEN is not set".to_string(),
            ),
            (
                format!("{{valueFile: \"{}\"}}", missing.display()),
                format!(
                    "sink audit: auth value: cannot read secret file {}: No such file or directory (os error 2)",
                    missing.display()
                ),
            ),
            (
                "{valueEnv: TWO_LINES}".to_string(),
                "sink audit: auth value from environment variable TWO_LINES is not a valid header value".to_string(),
            ),
        ];
        for (auth, want) in cases {
            assert_eq!(error(&auth, &env), want);
        }
    }

    #[test]
    fn an_auth_value_from_a_file_is_trimmed_and_marked_sensitive() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("token");
        std::fs::write(&path, "Bearer abc\n").unwrap_or_else(|e| panic!("{e}"));
        let built = HttpSink::new(
            &sink(&format!("{{valueFile: \"{}\"}}", path.display())),
            reqwest::Client::new(),
            &|_| None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let Some((name, value)) = built.auth else {
            panic!("no auth header")
        };
        assert_eq!(name.as_str(), "authorization");
        assert_eq!(value.to_str().ok(), Some("Bearer abc"));
        assert!(value.is_sensitive());
    }
}
