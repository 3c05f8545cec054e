//! Who may send events: per-client bearer tokens or HMAC-SHA256 signatures (timestamp +
//! body, with a replay window), each client scoped to CloudEvent sources and event types,
//! and optionally rate-limited. Secrets are read from env or files when the gateway starts;
//! secret files are re-read every `react.reloadInterval` ([`Clients::reload_secrets`]), so a
//! rotated Kubernetes Secret takes effect without a restart (the old value stops working).
//! A file that cannot be read or holds an invalid value (under 16 characters once trimmed)
//! keeps the last good secret and is logged once per change. Env secrets never change.
//! Secrets are never logged or printed; comparisons are constant-time.

use crate::config::{ClientConfig, ReactConfig};
use crate::pattern::{glob_match, type_pattern_matches};
use axum::http::HeaderMap;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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

/// Secret material that can be swapped while the gateway runs: one read from a file is
/// re-read by [`Clients::reload_secrets`]; one read from an environment variable never changes.
struct Secret {
    value: RwLock<Vec<u8>>,
    file: Option<PathBuf>,
    /// What the file held at the last look, so each change is acted on (and logged) once.
    last: Mutex<Option<Look>>,
}

#[derive(PartialEq, Eq)]
enum Look {
    /// SHA-256 of the file's bytes.
    Content([u8; 32]),
    /// Why it could not be read.
    Unreadable(String),
}

impl Secret {
    fn new(value: Vec<u8>, file: Option<&PathBuf>) -> Secret {
        Secret {
            value: RwLock::new(value),
            file: file.cloned(),
            last: Mutex::new(None),
        }
    }

    fn get(&self) -> std::sync::RwLockReadGuard<'_, Vec<u8>> {
        self.value.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-read the file (if the secret came from one); `derive` turns the checked text into
    /// the stored material. Returns true if the secret was replaced.
    fn reload(&self, client: &str, derive: fn(&str) -> Vec<u8>) -> bool {
        let Some(file) = &self.file else {
            return false;
        };
        let read = std::fs::read(file);
        let look = match &read {
            Ok(bytes) => Look::Content(sha(bytes)),
            Err(e) => Look::Unreadable(e.to_string()),
        };
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            if last.as_ref() == Some(&look) {
                return false;
            }
            *last = Some(look);
        }
        let checked = read
            .map_err(|e| format!("cannot read the file: {e}"))
            .and_then(|b| String::from_utf8(b).map_err(|_| "the file is not UTF-8".to_string()))
            .and_then(|text| checked(&text));
        match checked {
            Ok(text) => {
                let new = derive(&text);
                let mut value = self.value.write().unwrap_or_else(|p| p.into_inner());
                if ct_eq(&value, &new) {
                    return false;
                }
                *value = new;
                tracing::info!(client, file = %file.display(), "client secret reloaded from its file; the previous secret no longer works");
                true
            }
            Err(problem) => {
                tracing::warn!(client, file = %file.display(), problem = %problem, "client secret file is unusable; the last good secret stays in use");
                false
            }
        }
    }
}

fn bearer_digest(token: &str) -> Vec<u8> {
    sha(token.as_bytes()).to_vec()
}

fn hmac_key(secret: &str) -> Vec<u8> {
    secret.as_bytes().to_vec()
}

enum Credential {
    /// SHA-256 of the token (compared in constant time, length-independent).
    Bearer(Secret),
    Hmac {
        secret: Secret,
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
    let value =
        crate::config::secret::read(env, var.map(String::as_str), file.map(|f| f.as_path()))
            .map_err(|e| e.to_string())?;
    checked(&value)
}

/// The rules every secret meets, at start and on reload: trimmed, at least 16 characters.
fn checked(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.len() < 16 {
        return Err("the secret is shorter than 16 characters".into());
    }
    Ok(value.to_string())
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
                (Some(b), _) => {
                    let token = read_secret(env, b.token_env.as_ref(), b.token_file.as_ref())
                        .map_err(fail)?;
                    // A file named next to an env var is not read (the env var wins).
                    let file = b.token_file.as_ref().filter(|_| b.token_env.is_none());
                    Credential::Bearer(Secret::new(bearer_digest(&token), file))
                }
                (None, Some(h)) => {
                    let secret = read_secret(env, h.secret_env.as_ref(), h.secret_file.as_ref())
                        .map_err(fail)?;
                    let file = h.secret_file.as_ref().filter(|_| h.secret_env.is_none());
                    Credential::Hmac {
                        secret: Secret::new(hmac_key(&secret), file),
                        window: h.window.0,
                    }
                }
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

    /// Does any client read its secret from a file (something for `reload_secrets` to do)?
    pub fn has_secret_files(&self) -> bool {
        self.clients.iter().any(|c| match &c.credential {
            Credential::Bearer(s) | Credential::Hmac { secret: s, .. } => s.file.is_some(),
            Credential::Certificate(_) => false,
        })
    }

    /// Re-read every secret that comes from a file. A changed, valid value replaces the
    /// client's secret (the old one stops working); an unreadable or invalid file keeps the
    /// last good secret and is logged (client and file, never the secret) once per change.
    /// The replay cache and rate limiters are untouched. Returns how many secrets changed.
    pub fn reload_secrets(&self) -> usize {
        let mut changed = 0;
        for c in &self.clients {
            let replaced = match &c.credential {
                Credential::Bearer(s) => s.reload(&c.name, bearer_digest),
                Credential::Hmac { secret, .. } => secret.reload(&c.name, hmac_key),
                Credential::Certificate(_) => false,
            };
            changed += usize::from(replaced);
        }
        changed
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
                    && ct_eq(&d.get(), &digest)
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
            let mut mac = Hmac::<Sha256>::new_from_slice(&secret.get())
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

/// Re-read the clients' secret files every `every` until `stop` is cancelled.
pub async fn watch_secrets(clients: Arc<Clients>, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let clients = clients.clone();
        // File reads are blocking; keep them off the async workers.
        if tokio::task::spawn_blocking(move || clients.reload_secrets())
            .await
            .is_err()
        {
            tracing::warn!("secret reload task failed");
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const OLD: &str = "old-token-0123456789";
    const NEW: &str = "new-token-0123456789";
    const ENV_TOKEN: &str = "env-token-0123456789";

    fn clients(dir: &std::path::Path) -> Clients {
        let yaml = format!(
            r#"policies: policies
clients:
  - name: filed
    bearer: {{tokenFile: "{d}/token"}}
    sources: ["*"]
    types: ["*"]
  - name: signer
    hmac: {{secretFile: "{d}/hmac", window: 5m}}
    sources: ["*"]
    types: ["*"]
  - name: from-env
    bearer: {{tokenEnv: ENV_TOKEN}}
    sources: ["*"]
    types: ["*"]
"#,
            d = dir.display()
        );
        let cfg: ReactConfig = serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{e}"));
        Clients::from_config(&cfg, &|k| (k == "ENV_TOKEN").then(|| ENV_TOKEN.to_string()))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn write(path: &std::path::Path, text: &str) {
        std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The client name a bearer token authenticates as, or the error.
    fn bearer(c: &Clients, token: &str) -> Result<String, AuthError> {
        let mut h = HeaderMap::new();
        let v = HeaderValue::from_str(&format!("Bearer {token}")).unwrap_or_else(|e| panic!("{e}"));
        h.insert("authorization", v);
        c.authenticate(&h, b"{}", 1_000, None)
            .map(|c| c.map(|c| c.name.clone()).unwrap_or_default())
    }

    /// Sign `body` as client `signer` with `secret` at time `ts`.
    fn hmac(c: &Clients, secret: &str, ts: i64, body: &[u8]) -> Result<String, AuthError> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        mac.update(format!("{ts}.").as_bytes());
        mac.update(body);
        let sig = hex::encode(mac.finalize().into_bytes());
        let mut h = HeaderMap::new();
        let val = |s: &str| HeaderValue::from_str(s).unwrap_or_else(|e| panic!("{e}"));
        h.insert(CLIENT_HEADER, val("signer"));
        h.insert(TIMESTAMP_HEADER, val(&ts.to_string()));
        h.insert(SIGNATURE_HEADER, val(&format!("sha256={sig}")));
        c.authenticate(&h, body, ts, None)
            .map(|c| c.map(|c| c.name.clone()).unwrap_or_default())
    }

    fn unauthenticated(r: Result<String, AuthError>) -> bool {
        matches!(r, Err(AuthError::Unauthenticated(_)))
    }

    #[test]
    fn a_rotated_bearer_token_file_replaces_the_old_token() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        write(&dir.path().join("token"), &format!("{OLD}\n"));
        write(&dir.path().join("hmac"), "hmac-secret-0123456789");
        let c = clients(dir.path());
        assert!(c.has_secret_files());
        assert_eq!(bearer(&c, OLD).ok().as_deref(), Some("filed"));
        // Nothing changed: nothing is replaced.
        assert_eq!(c.reload_secrets(), 0);
        assert_eq!(bearer(&c, OLD).ok().as_deref(), Some("filed"));

        write(&dir.path().join("token"), NEW);
        assert_eq!(c.reload_secrets(), 1);
        assert!(
            unauthenticated(bearer(&c, OLD)),
            "the old token still works"
        );
        assert_eq!(bearer(&c, NEW).ok().as_deref(), Some("filed"));
        assert_eq!(c.reload_secrets(), 0);
        // The env client is untouched.
        assert_eq!(bearer(&c, ENV_TOKEN).ok().as_deref(), Some("from-env"));
    }

    #[cfg(unix)]
    #[test]
    fn a_kubelet_style_symlink_swap_is_picked_up() {
        // The kubelet mounts `token -> ..data/token`, `..data -> ..<timestamp>` and rotates by
        // renaming a new `..data` link over the old one.
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = dir.path();
        for (v, token) in [("..v1", OLD), ("..v2", NEW)] {
            std::fs::create_dir(d.join(v)).unwrap_or_else(|e| panic!("{e}"));
            write(&d.join(v).join("token"), token);
        }
        symlink("..v1", d.join("..data")).unwrap_or_else(|e| panic!("{e}"));
        symlink("..data/token", d.join("token")).unwrap_or_else(|e| panic!("{e}"));
        write(&d.join("hmac"), "hmac-secret-0123456789");
        let c = clients(d);
        assert_eq!(bearer(&c, OLD).ok().as_deref(), Some("filed"));

        symlink("..v2", d.join("..data_tmp")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.reload_secrets(), 1);
        assert!(unauthenticated(bearer(&c, OLD)));
        assert_eq!(bearer(&c, NEW).ok().as_deref(), Some("filed"));
    }

    #[test]
    fn a_rotated_hmac_secret_file_replaces_the_old_secret_and_keeps_the_replay_cache() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let old = "old-hmac-secret-0123456789";
        let new = "new-hmac-secret-0123456789";
        write(&dir.path().join("token"), OLD);
        write(&dir.path().join("hmac"), old);
        let c = clients(dir.path());
        assert_eq!(hmac(&c, old, 1_000, b"a").ok().as_deref(), Some("signer"));

        write(&dir.path().join("hmac"), &format!("  {new}  \n"));
        assert_eq!(c.reload_secrets(), 1);
        assert!(
            unauthenticated(hmac(&c, old, 1_001, b"b")),
            "the old secret still works"
        );
        assert_eq!(hmac(&c, new, 1_002, b"c").ok().as_deref(), Some("signer"));
        // The replay cache survived the reload: the same signature again is refused.
        let replay = hmac(&c, new, 1_002, b"c");
        assert!(
            matches!(&replay, Err(AuthError::Unauthenticated(m)) if m.contains("replay")),
            "{replay:?}"
        );
        // The bearer client did not change.
        assert_eq!(bearer(&c, OLD).ok().as_deref(), Some("filed"));
    }

    #[test]
    fn a_short_or_missing_file_keeps_the_last_good_secret() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let secret = "hmac-secret-0123456789";
        write(&dir.path().join("token"), OLD);
        write(&dir.path().join("hmac"), secret);
        let c = clients(dir.path());

        // Too short (after trimming).
        write(&dir.path().join("token"), "  short-token  \n");
        write(&dir.path().join("hmac"), "short");
        assert_eq!(c.reload_secrets(), 0);
        assert_eq!(bearer(&c, OLD).ok().as_deref(), Some("filed"));
        assert!(unauthenticated(bearer(&c, "short-token")));
        assert_eq!(
            hmac(&c, secret, 1_000, b"a").ok().as_deref(),
            Some("signer")
        );

        // Empty (a writer that truncated first).
        write(&dir.path().join("token"), "");
        assert_eq!(c.reload_secrets(), 0);
        assert_eq!(bearer(&c, OLD).ok().as_deref(), Some("filed"));

        // Deleted.
        std::fs::remove_file(dir.path().join("token")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::remove_file(dir.path().join("hmac")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.reload_secrets(), 0);
        assert_eq!(c.reload_secrets(), 0);
        assert_eq!(bearer(&c, OLD).ok().as_deref(), Some("filed"));
        assert_eq!(
            hmac(&c, secret, 1_001, b"b").ok().as_deref(),
            Some("signer")
        );

        // A good value again is taken.
        write(&dir.path().join("token"), NEW);
        assert_eq!(c.reload_secrets(), 1);
        assert!(unauthenticated(bearer(&c, OLD)));
        assert_eq!(bearer(&c, NEW).ok().as_deref(), Some("filed"));
        // The env client never changed.
        assert_eq!(bearer(&c, ENV_TOKEN).ok().as_deref(), Some("from-env"));
    }

    #[test]
    fn env_secrets_are_not_reloaded() {
        let cfg: ReactConfig = serde_saphyr::from_str(
            "policies: p\nclients:\n  - {name: e, bearer: {tokenEnv: T}, sources: ['*'], types: ['*']}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let c = Clients::from_config(&cfg, &|_| Some(ENV_TOKEN.to_string()))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!c.has_secret_files());
        assert_eq!(c.reload_secrets(), 0);
        assert_eq!(bearer(&c, ENV_TOKEN).ok().as_deref(), Some("e"));
    }
}
