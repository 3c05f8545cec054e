//! Configuration: one YAML file, then environment overrides, then flags.
//!
//! Every section is a typed struct with `deny_unknown_fields`; values that can be wrong
//! (durations, URLs, addresses, versions, store URLs) are parsed while deserializing, so a bad
//! value is reported with the file, line and key. Secrets are never stored here — only where
//! to read them from (an env var name or a file path). This module must never start anything.

use crate::emit::event::SpecVersion;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod react;
pub mod secret;
mod values;
pub use react::*;
pub use values::*;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Address the HTTP server listens on (`/healthz`, `/readyz`, `/metrics`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where state, outbox and incidents are kept: `sqlite://PATH` or `postgres://...`.
    #[serde(default)]
    pub store: StoreUrl,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub emit: EmitConfig,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// Where emitted CDEvents go. `K_SINK` in the environment adds one more.
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
    /// The react flow (CloudEvents in, policies, Argo CD actions); absent: off.
    #[serde(default)]
    pub react: Option<ReactConfig>,
    /// HTTPS on `listen` (absent: plain HTTP, e.g. behind a TLS-terminating ingress).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub http: HttpConfig,
    /// Several gateways on one PostgreSQL store: one leader (a Kubernetes Lease) watches,
    /// emits, delivers and sweeps previews; every gateway takes and decides events.
    #[serde(default)]
    pub leader_election: Option<LeaderElectionConfig>,
}

/// The Lease the gateways of one installation compete for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LeaderElectionConfig {
    /// Name of the Lease (coordination.k8s.io/v1); created if missing.
    #[serde(default = "default_lease")]
    pub lease: String,
    /// Its namespace (the gateway's own, usually).
    pub namespace: String,
    /// How long a leader that stops renewing keeps the Lease: the fail-over time.
    #[serde(default = "d_15s")]
    pub duration: HumanDuration,
    /// How long before expiry the leader renews (also the clock skew tolerated).
    #[serde(default = "d_5s")]
    pub grace: HumanDuration,
}

fn default_lease() -> String {
    "argocd-cdevents-leader".into()
}
fn d_15s() -> HumanDuration {
    HumanDuration(Duration::from_secs(15))
}
fn d_5s() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}

/// HTTPS for the listener. The files are PEM and are re-read when they change (certificate
/// rotation by cert-manager or a Secret update needs no restart).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsConfig {
    /// The server certificate chain (leaf first).
    pub cert_file: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA bundle that client certificates are verified against. With it, a client may
    /// present a certificate; `react.clients[].certificate` names the ones that authenticate.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Refuse events (401) from connections without a verified client certificate, whatever
    /// other credential they carry. `/healthz`, `/readyz` and `/metrics` stay open to probes.
    #[serde(default)]
    pub require_client_certificate: bool,
    /// How often the files are checked for changes.
    #[serde(default = "d_30s")]
    pub reload_interval: HumanDuration,
}

/// Limits on how slowly a client may talk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpConfig {
    /// A connection that has not sent a whole request head in this time is closed.
    #[serde(default = "d_10s")]
    pub header_read_timeout: HumanDuration,
    /// An event request whose body has not arrived in this time gets 408.
    #[serde(default = "d_30s")]
    pub body_read_timeout: HumanDuration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_read_timeout: d_10s(),
            body_read_timeout: d_30s(),
        }
    }
}

fn d_30s() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: default_listen(),
            store: StoreUrl::default(),
            log: LogConfig::default(),
            emit: EmitConfig::default(),
            delivery: DeliveryConfig::default(),
            sinks: Vec::new(),
            react: None,
            tls: None,
            http: HttpConfig::default(),
            leader_election: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LogConfig {
    /// A level (`info`) or a tracing filter (`info,argocd_cdevents=debug`).
    #[serde(default = "default_log_level")]
    pub level: String,
    #[serde(default)]
    pub format: LogFormat,
}

fn default_log_level() -> String {
    "info".into()
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: default_log_level(),
            format: LogFormat::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

/// The emit flow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EmitConfig {
    /// CDEvents spec version of emitted events: `0.5.1` (default) or `0.4.1`.
    #[serde(default)]
    pub spec_version: SpecVersion,
    /// `context.source` of emitted events: names this Argo CD instance.
    #[serde(default = "default_source")]
    pub source: String,
    /// Application label whose value overrides the environment id.
    #[serde(default = "default_environment_label")]
    pub environment_label: Option<String>,
    /// Application labels copied into `customData.labels`.
    #[serde(default)]
    pub custom_data_labels: Vec<String>,
    #[serde(default)]
    pub watch: WatchConfig,
}

pub fn default_source() -> String {
    "/argocd".into()
}

fn default_environment_label() -> Option<String> {
    Some("cdevents.dev/environment".into())
}

impl Default for EmitConfig {
    fn default() -> Self {
        EmitConfig {
            spec_version: SpecVersion::default(),
            source: default_source(),
            environment_label: default_environment_label(),
            custom_data_labels: Vec::new(),
            watch: WatchConfig::default(),
        }
    }
}

/// Where Application changes come from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WatchConfig {
    #[serde(default)]
    pub kind: WatchKind,
    #[serde(default)]
    pub kubernetes: KubeWatchConfig,
    #[serde(default)]
    pub argocd: ArgoStreamConfig,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchKind {
    /// Watch nothing (react only, or a dry install).
    #[default]
    None,
    /// The Kubernetes API (`applications.argoproj.io`), in-cluster or from KUBECONFIG.
    Kubernetes,
    /// The Argo CD API stream `/api/v1/stream/applications`.
    Argocd,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeWatchConfig {
    /// Namespaces to watch; empty means all namespaces.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// A label selector (`team=payments,tier!=dev`).
    #[serde(default)]
    pub label_selector: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ArgoStreamConfig {
    /// Argo CD server URL; defaults to `ARGOCD_SERVER` (with `https://` added if bare).
    #[serde(default)]
    pub server: Option<HttpUrl>,
    /// Environment variable holding the token (default `ARGOCD_AUTH_TOKEN`).
    #[serde(default = "default_token_env")]
    pub token_env: String,
    /// A file holding the token (wins over `tokenEnv`).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Skip TLS verification (test installs only).
    #[serde(default)]
    pub insecure: bool,
    /// Label selector passed to the stream.
    #[serde(default)]
    pub selector: Option<String>,
    /// Projects to follow; empty means all.
    #[serde(default)]
    pub projects: Vec<String>,
}

fn default_token_env() -> String {
    "ARGOCD_AUTH_TOKEN".into()
}

impl Default for ArgoStreamConfig {
    fn default() -> Self {
        ArgoStreamConfig {
            server: None,
            token_env: default_token_env(),
            token_file: None,
            insecure: false,
            selector: None,
            projects: Vec::new(),
        }
    }
}

/// Delivery from the outbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeliveryConfig {
    /// Timeout of one POST to a sink.
    #[serde(default = "d_10s")]
    pub timeout: HumanDuration,
    /// First retry delay; doubles each attempt, with jitter.
    #[serde(default = "d_500ms")]
    pub initial_backoff: HumanDuration,
    /// Longest retry delay.
    #[serde(default = "d_5m")]
    pub max_backoff: HumanDuration,
    /// Deliveries in flight per sink (each to a different application).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// How long delivered rows stay in the outbox (for `outbox list`).
    #[serde(default = "d_24h")]
    pub retain_delivered: HumanDuration,
    /// How long shutdown waits for in-flight deliveries.
    #[serde(default = "d_10s")]
    pub drain_timeout: HumanDuration,
}

fn d_10s() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn d_500ms() -> HumanDuration {
    HumanDuration(Duration::from_millis(500))
}
fn d_5m() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}
fn d_24h() -> HumanDuration {
    HumanDuration(Duration::from_secs(86_400))
}
fn default_concurrency() -> usize {
    16
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            timeout: d_10s(),
            initial_backoff: d_500ms(),
            max_backoff: d_5m(),
            concurrency: default_concurrency(),
            retain_delivered: d_24h(),
            drain_timeout: d_10s(),
        }
    }
}

/// One destination of emitted CDEvents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SinkConfig {
    /// Unique name; outbox rows and metrics are keyed by it.
    pub name: String,
    pub url: HttpUrl,
    /// CloudEvents HTTP binding mode.
    #[serde(default)]
    pub mode: SinkMode,
    /// Event types to send, as globs (`dev.cdevents.service.*`); empty means all.
    #[serde(default)]
    pub types: Vec<String>,
    #[serde(default)]
    pub auth: Option<SinkAuth>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkMode {
    /// `ce-*` headers, the CDEvent as the body.
    #[default]
    Binary,
    /// `application/cloudevents+json`.
    Structured,
}

/// An auth header whose value is read from a file or an env var (never from the config).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SinkAuth {
    #[serde(default = "default_auth_header")]
    pub header: String,
    #[serde(default)]
    pub value_env: Option<String>,
    #[serde(default)]
    pub value_file: Option<PathBuf>,
}

fn default_auth_header() -> String {
    "Authorization".into()
}

/// A configuration that could not be loaded, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        path: String,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{name}: {message}")]
    Override { name: String, message: String },
}

impl Config {
    /// Parse `text` (the contents of `path`) and validate it.
    pub fn parse(path: &str, text: &str) -> Result<Config, ConfigError> {
        let config: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| {
                let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
                ConfigError::Syntax {
                    path: path.to_string(),
                    line,
                    column,
                    message: first_line(&e.to_string()),
                }
            })?
        };
        config.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_string(),
            message,
        })?;
        Ok(config)
    }

    /// Load from `path`, or the defaults when there is no file.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Ok(Config::default()),
            Some(p) => {
                let shown = p.display().to_string();
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: shown.clone(),
                    source,
                })?;
                Config::parse(&shown, &text)
            }
        }
    }

    /// Checks that span several keys.
    fn validate(&self) -> Result<(), String> {
        let mut names = std::collections::HashSet::new();
        for (i, sink) in self.sinks.iter().enumerate() {
            if sink.name.trim().is_empty() {
                return Err(format!("sinks[{i}].name: must not be empty"));
            }
            if !names.insert(sink.name.as_str()) {
                return Err(format!(
                    "sinks[{i}].name: {:?} is used by an earlier sink",
                    sink.name
                ));
            }
            if let Some(auth) = &sink.auth
                && auth.value_env.is_some() == auth.value_file.is_some()
            {
                return Err(format!(
                    "sinks[{i}].auth: set exactly one of valueEnv and valueFile"
                ));
            }
        }
        let namespaces = &self.emit.watch.kubernetes.namespaces;
        for (i, ns) in namespaces.iter().enumerate() {
            if ns.trim().is_empty() {
                return Err(format!(
                    "emit.watch.kubernetes.namespaces[{i}]: must not be empty"
                ));
            }
            if namespaces[..i].contains(ns) {
                return Err(format!(
                    "emit.watch.kubernetes.namespaces[{i}]: {ns:?} is listed twice"
                ));
            }
        }
        if self.delivery.concurrency == 0 {
            return Err("delivery.concurrency: must be at least 1".into());
        }
        if self.delivery.initial_backoff.0 > self.delivery.max_backoff.0 {
            return Err("delivery.initialBackoff: must not exceed delivery.maxBackoff".into());
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(format!(
                "log.level: {:?} is not a level or tracing filter: {e}",
                self.log.level
            ));
        }
        if self.emit.source.trim().is_empty() {
            return Err("emit.source: must not be empty".into());
        }
        if let Some(react) = &self.react {
            react.validate(self.listen)?;
            let with_cert = react.clients.iter().position(|c| c.certificate.is_some());
            if let Some(i) = with_cert
                && self.tls.as_ref().is_none_or(|t| t.client_ca_file.is_none())
            {
                return Err(format!(
                    "react.clients[{i}].certificate: needs tls.clientCaFile (the CA that client certificates are verified against)"
                ));
            }
        }
        if let Some(tls) = &self.tls
            && tls.require_client_certificate
            && tls.client_ca_file.is_none()
        {
            return Err("tls.requireClientCertificate: needs tls.clientCaFile".into());
        }
        if let Some(tls) = &self.tls
            && tls.reload_interval.0.is_zero()
        {
            return Err("tls.reloadInterval: must be longer than zero".into());
        }
        if let Some(le) = &self.leader_election {
            // That the store is PostgreSQL is checked at start: the URL may come from
            // ARGOCD_CDEVENTS_STORE, after this file is read.
            if le.lease.trim().is_empty() || le.namespace.trim().is_empty() {
                return Err("leaderElection: lease and namespace must not be empty".into());
            }
            let (d, g) = (le.duration.0.as_secs(), le.grace.0.as_secs());
            if g == 0 || d <= g {
                return Err(format!(
                    "leaderElection: grace ({g}s) must be at least 1s and shorter than duration ({d}s); both count whole seconds"
                ));
            }
        }
        if self.http.header_read_timeout.0.is_zero() || self.http.body_read_timeout.0.is_zero() {
            return Err("http: read timeouts must be longer than zero".into());
        }
        Ok(())
    }

    /// Apply a `K_SINK` (Knative SinkBinding) value as one more sink, binary mode, all types.
    pub fn add_k_sink(&mut self, k_sink: &str) -> Result<(), ConfigError> {
        let url = k_sink.parse().map_err(|message| ConfigError::Override {
            name: "K_SINK".into(),
            message,
        })?;
        if self.sinks.iter().any(|s| s.name == "k_sink") {
            return Ok(());
        }
        self.sinks.push(SinkConfig {
            name: "k_sink".into(),
            url,
            mode: SinkMode::Binary,
            types: Vec::new(),
            auth: None,
        });
        Ok(())
    }

    /// Apply an override of `listen` given as `name` (a flag or env var).
    pub fn set_listen(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        self.listen = value.parse().map_err(|e| ConfigError::Override {
            name: name.into(),
            message: format!("{value:?} is not an address like 127.0.0.1:8080: {e}"),
        })?;
        Ok(())
    }

    /// Apply an override of `store` given as `name` (a flag or env var).
    pub fn set_store(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        self.store = value.parse().map_err(|message| ConfigError::Override {
            name: name.into(),
            message,
        })?;
        Ok(())
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match Config::parse("gw.yaml", text) {
            Ok(_) => panic!("expected an error for {text:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn shipped_local_config_loads() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/local.yaml");
        let cfg = Config::load(Some(Path::new(path))).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(
            cfg.store,
            StoreUrl::Sqlite("sqlite://data/argocd-cdevents.db".into())
        );
        assert_eq!(cfg.emit.watch.kind, WatchKind::None);
    }

    #[test]
    fn a_full_config_parses_into_typed_values() {
        let cfg = Config::parse(
            "gw.yaml",
            r#"
listen: 127.0.0.1:9999
store: sqlite:///var/lib/gw/gw.db
emit:
  specVersion: "0.4.1"
  source: /argocd/prod
  watch:
    kind: kubernetes
    kubernetes: {namespaces: [argocd, apps], labelSelector: "team=a"}
delivery: {timeout: 3s, initialBackoff: 100ms, maxBackoff: 1m, concurrency: 4}
sinks:
  - name: a
    url: https://sink.example/events
    mode: structured
    types: ["dev.cdevents.service.*"]
    auth: {valueEnv: SINK_TOKEN}
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.emit.spec_version, SpecVersion::V0_4_1);
        assert_eq!(cfg.delivery.initial_backoff.0, Duration::from_millis(100));
        assert_eq!(cfg.sinks[0].mode, SinkMode::Structured);
        assert_eq!(cfg.emit.watch.kubernetes.namespaces, vec!["argocd", "apps"]);
        assert_eq!(
            cfg.store,
            StoreUrl::Sqlite("sqlite:///var/lib/gw/gw.db".into())
        );
    }

    #[test]
    fn errors_name_the_file_line_and_problem() {
        let cases: &[(&str, &[&str])] = &[
            (
                "listen: 127.0.0.1:80\nlisten2: x\n",
                &["gw.yaml:2", "listen2"],
            ),
            ("emit:\n  specVersion: \"0.3\"\n", &["gw.yaml:2", "0.3"]),
            (
                "delivery:\n  timeout: soon\n",
                &["gw.yaml:2", "invalid duration"],
            ),
            ("store: mysql://x\n", &["gw.yaml:1", "neither sqlite"]),
            (
                "store: \"postgres://gw:s3cret@db:notaport/gw\"\n",
                &["gw.yaml:1", "PostgreSQL store URL is invalid", "port"],
            ),
            (
                "store: postgres://db/gw?sslmode=sometimes\n",
                &["gw.yaml:1", "PostgreSQL store URL is invalid"],
            ),
            ("log: {level: \"info,[\"}\n", &["gw.yaml", "log.level"]),
            (
                "sinks:\n  - name: a\n    url: ftp://x\n",
                &["gw.yaml:3", "scheme \"ftp\""],
            ),
            ("listen: [1\n", &["gw.yaml:"]),
            (
                "sinks:\n  - {name: a, url: http://x}\n  - {name: a, url: http://y}\n",
                &["gw.yaml", "sinks[1].name", "earlier sink"],
            ),
            (
                "sinks:\n  - {name: a, url: http://x, auth: {header: X}}\n",
                &["sinks[0].auth", "exactly one"],
            ),
            ("delivery: {concurrency: 0}\n", &["delivery.concurrency"]),
            (
                "react: {policies: p, retainEvents: 14d, retainDecisions: 7d}\n",
                &["react.retainDecisions", "7days", "14days", "acted on twice"],
            ),
        ];
        for (text, wants) in cases {
            let e = err(text);
            for want in *wants {
                assert!(e.contains(want), "{text:?}: {e:?} lacks {want:?}");
            }
        }
    }

    #[test]
    fn postgres_urls_are_accepted_and_never_print_their_password() {
        let cfg = Config::parse(
            "gw.yaml",
            "store: postgresql://gw:s3cret@db.example:5433/gw?sslmode=require\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cfg.store,
            StoreUrl::Postgres("postgresql://gw:s3cret@db.example:5433/gw?sslmode=require".into())
        );
        assert_eq!(
            format!("{:?}", cfg.store),
            "postgresql://gw:***@db.example:5433/gw?sslmode=require"
        );
        let in_query: StoreUrl = "postgres://db/gw?user=gw&password=s3cret&sslmode=disable"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            in_query.redacted(),
            "postgres://db/gw?user=gw&password=***&sslmode=disable"
        );
        let no_password: StoreUrl = "postgres://gw@db/gw"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(format!("{no_password:?}"), "postgres://gw@db/gw");
        // A refused URL is named by its problem only.
        let e = err("store: \"postgres://gw:s3cret@db:notaport/gw\"\n");
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn k_sink_adds_a_binary_sink_once() {
        let mut cfg = Config::default();
        cfg.add_k_sink("http://broker.default.svc/")
            .unwrap_or_else(|e| panic!("{e}"));
        cfg.add_k_sink("http://broker.default.svc/")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.sinks.len(), 1);
        assert_eq!(cfg.sinks[0].mode, SinkMode::Binary);
        assert!(cfg.add_k_sink("not a url").is_err());
    }
}
