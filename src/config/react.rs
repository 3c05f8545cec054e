//! The `react` section: the intake's clients and their credentials, the policies, how Argo CD is
//! acted on, and how long history is kept; with its checks.

use super::{ByteSize, HttpUrl, HumanDuration, Rate, d_5m, d_10s, default_token_env};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The react flow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReactConfig {
    /// Directory of policy files (`*.yaml`, `*.yml`), relative to the working directory.
    pub policies: PathBuf,
    /// How often the policy directory is checked for changes (a change is loaded once it
    /// has stayed the same for one more interval).
    #[serde(default = "d_2s")]
    pub reload_interval: HumanDuration,
    /// Largest accepted request body.
    #[serde(default = "default_body_limit")]
    pub body_limit: ByteSize,
    /// Accept requests without credentials (local trials; loopback listen address only).
    #[serde(default)]
    pub allow_unauthenticated: bool,
    /// Who may send events, and what each may send.
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    #[serde(default)]
    pub argocd: ArgoActConfig,
    /// How often expired preview Applications are looked for.
    #[serde(default = "d_1m")]
    pub preview_sweep_interval: HumanDuration,
    /// How long a received event stays in the inbox once decided; while it is there, the
    /// same event (`source` + `id`) sent again is acknowledged as a duplicate.
    #[serde(default = "d_7d")]
    pub retain_events: HumanDuration,
    /// How long decisions are kept (`decisions list`, cooldowns, and the guard against
    /// acting twice on one event). Never shorter than `retainEvents`; a decision a policy's
    /// cooldown still needs is kept however old.
    #[serde(default = "d_30d")]
    pub retain_decisions: HumanDuration,
}

fn d_7d() -> HumanDuration {
    HumanDuration(Duration::from_secs(7 * 86_400))
}
fn d_30d() -> HumanDuration {
    HumanDuration(Duration::from_secs(30 * 86_400))
}

fn d_2s() -> HumanDuration {
    HumanDuration(Duration::from_secs(2))
}
fn d_1m() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_body_limit() -> ByteSize {
    ByteSize(1024 * 1024)
}

/// One client allowed to send events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientConfig {
    pub name: String,
    #[serde(default)]
    pub bearer: Option<SecretRef>,
    #[serde(default)]
    pub hmac: Option<HmacConfig>,
    /// Authenticates by a client certificate (verified against `tls.clientCaFile`).
    #[serde(default)]
    pub certificate: Option<CertificateIdentity>,
    /// CloudEvent `source` globs this client may use.
    pub sources: Vec<String>,
    /// Event type patterns this client may send (a type without version matches all versions).
    pub types: Vec<String>,
    /// Most requests per period (`100/s`); over it: 429 with Retry-After.
    #[serde(default)]
    pub rate: Option<Rate>,
}

/// Where a secret is read from: an env var or a file (never the config itself).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretRef {
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// Which client certificate is this client: one its subjectAltName is valid for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CertificateIdentity {
    /// A DNS name the certificate must be valid for (checked as TLS checks a server name).
    pub dns_name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HmacConfig {
    #[serde(default)]
    pub secret_env: Option<String>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// How far a signature's timestamp may be from now.
    #[serde(default = "d_5m")]
    pub window: HumanDuration,
}

/// How the gateway acts on Argo CD.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ArgoActConfig {
    #[serde(default)]
    pub backend: ArgoBackend,
    /// Argo CD server URL (rest backend); defaults to `ARGOCD_SERVER`.
    #[serde(default)]
    pub server: Option<HttpUrl>,
    #[serde(default = "default_token_env")]
    pub token_env: String,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure: bool,
    /// Argo CD's control-plane namespace: the default namespace of target Applications.
    #[serde(default = "default_argocd_namespace")]
    pub namespace: String,
    #[serde(default = "d_10s")]
    pub timeout: HumanDuration,
    /// Retries on 5xx, timeouts and connection errors (never on 4xx).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Global ceiling on calls to Argo CD.
    #[serde(default = "default_argocd_rate")]
    pub rate: Rate,
}

fn default_argocd_namespace() -> String {
    "argocd".into()
}
fn default_retries() -> u32 {
    3
}
fn default_argocd_rate() -> Rate {
    Rate {
        count: 20,
        per: Duration::from_secs(1),
    }
}

impl Default for ArgoActConfig {
    fn default() -> Self {
        ArgoActConfig {
            backend: ArgoBackend::default(),
            server: None,
            token_env: default_token_env(),
            token_file: None,
            insecure: false,
            namespace: default_argocd_namespace(),
            timeout: d_10s(),
            retries: default_retries(),
            rate: default_argocd_rate(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArgoBackend {
    /// The Argo CD REST API (`ARGOCD_SERVER`, `ARGOCD_AUTH_TOKEN`).
    #[default]
    Rest,
    /// Merge-patch the Application through the Kubernetes API.
    Kubernetes,
}

impl ReactConfig {
    pub(super) fn validate(&self, listen: SocketAddr) -> Result<(), String> {
        if self.allow_unauthenticated && !listen.ip().is_loopback() {
            return Err(format!(
                "react.allowUnauthenticated: only allowed when listen is a loopback address, not {listen}"
            ));
        }
        if self.retain_decisions.0 < self.retain_events.0 {
            return Err(format!(
                "react.retainDecisions: {} is shorter than react.retainEvents ({}); a decision is what stops an event received again, once its inbox row is gone, from being acted on twice",
                humantime::format_duration(self.retain_decisions.0),
                humantime::format_duration(self.retain_events.0)
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, c) in self.clients.iter().enumerate() {
            let at = format!("react.clients[{i}]");
            if c.name.trim().is_empty() {
                return Err(format!("{at}.name: must not be empty"));
            }
            if !names.insert(c.name.as_str()) {
                return Err(format!(
                    "{at}.name: {:?} is used by an earlier client",
                    c.name
                ));
            }
            match (&c.bearer, &c.hmac, &c.certificate) {
                (None, None, Some(id)) => {
                    if webpki_name(&id.dns_name).is_none() {
                        return Err(format!(
                            "{at}.certificate.dnsName: {:?} is not a DNS name",
                            id.dns_name
                        ));
                    }
                }
                (Some(b), None, None) => {
                    if b.token_env.is_some() == b.token_file.is_some() {
                        return Err(format!(
                            "{at}.bearer: set exactly one of tokenEnv and tokenFile"
                        ));
                    }
                }
                (None, Some(h), None) => {
                    if h.secret_env.is_some() == h.secret_file.is_some() {
                        return Err(format!(
                            "{at}.hmac: set exactly one of secretEnv and secretFile"
                        ));
                    }
                }
                _ => {
                    return Err(format!(
                        "{at}: set exactly one of bearer, hmac and certificate"
                    ));
                }
            }
            if c.sources.is_empty() {
                return Err(format!(
                    "{at}.sources: list the CloudEvent sources this client may use (\"*\" for any)"
                ));
            }
            if c.types.is_empty() {
                return Err(format!(
                    "{at}.types: list the event types this client may send (\"*\" for any)"
                ));
            }
        }
        if self.argocd.namespace.trim().is_empty() {
            return Err("react.argocd.namespace: must not be empty".into());
        }
        Ok(())
    }
}

/// `name` as a DNS name a certificate can be checked against.
pub fn webpki_name(name: &str) -> Option<rustls_pki_types::ServerName<'static>> {
    match rustls_pki_types::DnsName::try_from(name) {
        Ok(dns) => Some(rustls_pki_types::ServerName::DnsName(dns.to_owned())),
        Err(_) => None,
    }
}
