//! Who may send events: per-client bearer tokens or HMAC-SHA256 signatures (timestamp +
//! body, with a replay window), each client scoped to CloudEvent sources and event types,
//! and optionally rate-limited. Secrets are read from env or files when the gateway starts
//! and are never logged or printed; comparisons are constant-time.

use crate::config::{ClientConfig, ReactConfig};
use crate::pattern::{glob_match, type_pattern_matches};
use axum::http::HeaderMap;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

pub const CLIENT_HEADER: &str = "X-CDEvents-Client";
pub const TIMESTAMP_HEADER: &str = "X-CDEvents-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-CDEvents-Signature";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// 401
    #[error("{0}")]
    Unauthenticated(String),
    /// 403
    #[error("{0}")]
    Forbidden(String),
    /// 429, with the seconds to wait.
    #[error("client {client:?} is over its rate; retry after {retry_after}s")]
    RateLimited { client: String, retry_after: u64 },
}

/// A secret could not be read at start-up.
#[derive(Debug, thiserror::Error)]
#[error("react.clients[{index}] ({name}): {message}")]
pub struct SecretError {
    pub index: usize,
    pub name: String,
    pub message: String,
}

enum Credential {
    /// SHA-256 of the token (compared in constant time, length-independent).
    Bearer([u8; 32]),
    Hmac {
        secret: Vec<u8>,
        window: Duration,
    },
    /// A client certificate (already verified against the CA by rustls) valid for this name.
    Certificate(rustls_pki_types::ServerName<'static>),
}

pub struct Client {
    pub name: String,
    credential: Credential,
    sources: Vec<String>,
    types: Vec<String>,
    limiter: Option<(DefaultDirectRateLimiter, crate::config::Rate)>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.name)
            .field("credential", &"<redacted>")
            .finish()
    }
}

/// Signatures seen within the window (by digest), and their arrival order for expiry.
type Seen = (HashMap<[u8; 32], i64>, VecDeque<([u8; 32], i64)>);

/// The configured clients, plus the signatures seen recently (replay protection).
pub struct Clients {
    clients: Vec<Client>,
    allow_unauthenticated: bool,
    seen: Mutex<Seen>,
    /// The longest HMAC window of any client: signatures are remembered at least that long.
    longest_window_s: i64,
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

fn read_secret(
    env: &dyn Fn(&str) -> Option<String>,
    var: Option<&String>,
    file: Option<&std::path::PathBuf>,
) -> Result<String, String> {
    let value = match (var, file) {
        (Some(v), _) => env(v).ok_or_else(|| format!("environment variable {v} is not set"))?,
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| format!("cannot read secret file {}: {e}", f.display()))?,
        (None, None) => return Err("no secret configured".into()),
    };
    let value = value.trim().to_string();
    if value.len() < 16 {
        return Err("the secret is shorter than 16 characters".into());
    }
    Ok(value)
}

impl Clients {
    /// Read every client's secret now.
    pub fn from_config(
        cfg: &ReactConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Clients, SecretError> {
        let mut clients = Vec::new();
        for (index, c) in cfg.clients.iter().enumerate() {
            let fail = |message: String| SecretError {
                index,
                name: c.name.clone(),
                message,
            };
            let credential = match (&c.bearer, &c.hmac) {
                (None, None) if c.certificate.is_some() => {
                    let name = c.certificate.as_ref().map(|id| id.dns_name.as_str());
                    Credential::Certificate(
                        name.and_then(crate::config::webpki_name)
                            .ok_or_else(|| fail("certificate.dnsName is not a DNS name".into()))?,
                    )
                }
                (Some(b), _) => Credential::Bearer(sha(read_secret(
                    env,
                    b.token_env.as_ref(),
                    b.token_file.as_ref(),
                )
                .map_err(fail)?
                .as_bytes())),
                (None, Some(h)) => Credential::Hmac {
                    secret: read_secret(env, h.secret_env.as_ref(), h.secret_file.as_ref())
                        .map_err(fail)?
                        .into_bytes(),
                    window: h.window.0,
                },
                (None, None) => return Err(fail("no credential".into())),
            };
            clients.push(client(c, credential));
        }
        let longest_window_s = clients
            .iter()
            .filter_map(|c| match &c.credential {
                Credential::Hmac { window, .. } => i64::try_from(window.as_secs()).ok(),
                Credential::Bearer(_) | Credential::Certificate(_) => None,
            })
            .max()
            .unwrap_or(0);
        Ok(Clients {
            clients,
            longest_window_s,
            allow_unauthenticated: cfg.allow_unauthenticated,
            seen: Mutex::new((HashMap::new(), VecDeque::new())),
        })
    }

    /// Identify the caller. `now_s` is the current Unix time in seconds; `peer` is the client
    /// certificate of the connection (verified against the CA), if it showed one. A bearer
    /// token or an HMAC signature names the client first; otherwise the certificate does.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_s: i64,
        peer: Option<&rustls_pki_types::CertificateDer<'_>>,
    ) -> Result<Option<&Client>, AuthError> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if let Some(auth) = header("authorization") {
            let token = auth
                .strip_prefix("Bearer")
                .filter(|t| t.is_empty() || t.starts_with(' '))
                .ok_or_else(|| {
                    AuthError::Unauthenticated("Authorization is not a Bearer token".into())
                })?
                .trim();
            if token.is_empty() {
                return Err(AuthError::Unauthenticated("empty bearer token".into()));
            }
            let digest = sha(token.as_bytes());
            // Compare against every bearer client, without stopping early.
            let mut found = None;
            for c in &self.clients {
                if let Credential::Bearer(d) = &c.credential
                    && ct_eq(d, &digest)
                    && found.is_none()
                {
                    found = Some(c);
                }
            }
            return found
                .map(Some)
                .ok_or_else(|| AuthError::Unauthenticated("invalid bearer token".into()));
        }
        if header(SIGNATURE_HEADER).is_some() {
            let name = header(CLIENT_HEADER).unwrap_or_default();
            let client = self
                .clients
                .iter()
                .find(|c| c.name == name && matches!(c.credential, Credential::Hmac { .. }))
                .ok_or_else(|| {
                    AuthError::Unauthenticated(format!(
                        "{CLIENT_HEADER} must name a client with an HMAC secret"
                    ))
                })?;
            let Credential::Hmac { secret, window } = &client.credential else {
                return Err(AuthError::Unauthenticated("not an HMAC client".into()));
            };
            let ts_text = header(TIMESTAMP_HEADER).ok_or_else(|| {
                AuthError::Unauthenticated(format!("{TIMESTAMP_HEADER} is missing"))
            })?;
            let ts: i64 = ts_text.trim().parse().map_err(|_| {
                AuthError::Unauthenticated(format!("{TIMESTAMP_HEADER} is not Unix seconds"))
            })?;
            let window_s = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
            if (now_s - ts).abs() > window_s {
                return Err(AuthError::Unauthenticated(format!(
                    "{TIMESTAMP_HEADER} is outside the {window_s}s replay window"
                )));
            }
            let sig_hex = header(SIGNATURE_HEADER)
                .and_then(|s| s.trim().strip_prefix("sha256="))
                .ok_or_else(|| {
                    AuthError::Unauthenticated(format!("{SIGNATURE_HEADER} must be sha256=<hex>"))
                })?;
            let sig = hex::decode(sig_hex).map_err(|_| {
                AuthError::Unauthenticated(format!("{SIGNATURE_HEADER} is not hex"))
            })?;
            let mut mac = Hmac::<Sha256>::new_from_slice(secret)
                .map_err(|_| AuthError::Unauthenticated("unusable HMAC secret".into()))?;
            mac.update(ts_text.trim().as_bytes());
            mac.update(b".");
            mac.update(body);
            // verify_slice compares in constant time.
            mac.verify_slice(&sig)
                .map_err(|_| AuthError::Unauthenticated("signature does not match".into()))?;
            self.remember(sha(&sig), ts, now_s)?;
            return Ok(Some(client));
        }
        if let Some(der) = peer {
            let cert = webpki::EndEntityCert::try_from(der).map_err(|e| {
                AuthError::Unauthenticated(format!("unreadable client certificate: {e}"))
            })?;
            return self
                .clients
                .iter()
                .find(|c| match &c.credential {
                    Credential::Certificate(name) => {
                        cert.verify_is_valid_for_subject_name(name).is_ok()
                    }
                    _ => false,
                })
                .map(Some)
                .ok_or_else(|| {
                    AuthError::Unauthenticated(
                        "the client certificate is not valid for the dnsName of any client".into(),
                    )
                });
        }
        if self.allow_unauthenticated {
            return Ok(None);
        }
        Err(AuthError::Unauthenticated(
            "credentials required: Authorization: Bearer <token>, an HMAC signature, or a client certificate".into(),
        ))
    }

    /// Refuse a signature seen before within the window; forget old ones.
    fn remember(&self, sig: [u8; 32], ts: i64, now_s: i64) -> Result<(), AuthError> {
        let window_s = self.longest_window_s;
        let mut guard = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *guard;
        while let Some((old, at)) = order.front().copied() {
            if now_s - at > window_s.saturating_mul(2) {
                order.pop_front();
                set.remove(&old);
            } else {
                break;
            }
        }
        if set.contains_key(&sig) {
            return Err(AuthError::Unauthenticated(
                "this signature was already used (replay)".into(),
            ));
        }
        set.insert(sig, ts);
        order.push_back((sig, now_s));
        Ok(())
    }
}

fn client(c: &ClientConfig, credential: Credential) -> Client {
    let limiter = c.rate.and_then(|r| {
        let n = NonZeroU32::new(r.count)?;
        let quota = Quota::with_period(r.per / r.count)?.allow_burst(n);
        Some((RateLimiter::direct(quota), r))
    });
    Client {
        name: c.name.clone(),
        credential,
        sources: c.sources.clone(),
        types: c.types.clone(),
        limiter,
    }
}

impl Client {
    /// May this client send an event with this source and type?
    pub fn permits(&self, source: &str, ty: &str) -> Result<(), AuthError> {
        if !self.sources.iter().any(|p| glob_match(p, source)) {
            return Err(AuthError::Forbidden(format!(
                "client {:?} may not send events with source {source:?}",
                self.name
            )));
        }
        if !self.types.iter().any(|p| type_pattern_matches(p, ty)) {
            return Err(AuthError::Forbidden(format!(
                "client {:?} may not send events of type {ty:?}",
                self.name
            )));
        }
        Ok(())
    }

    /// Take one request from the client's rate, if it has one.
    pub fn check_rate(&self) -> Result<(), AuthError> {
        let Some((limiter, _)) = &self.limiter else {
            return Ok(());
        };
        limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            AuthError::RateLimited {
                client: self.name.clone(),
                retry_after: wait.as_secs().max(1),
            }
        })
    }
}
