//! HTTPS for the listener: builds the rustls server configuration from PEM files (server
//! certificate and key, optionally a CA for client certificates), re-reads the files when
//! they change, and hands each request the client certificate its connection presented
//! (verified against the CA by rustls) as a [`PeerCertificate`] extension. It never decides
//! who a client is — `react::auth` does, from that extension — and never logs key material.

use crate::config::TlsConfig;
use axum::Extension;
use axum_server::accept::{Accept, DefaultAcceptor};
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use futures::future::BoxFuture;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tower::Layer;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls: cannot read {path}: {message}")]
    File { path: String, message: String },
    #[error("tls: {path}: {message}")]
    Pem { path: String, message: String },
    #[error("tls: {0}")]
    Config(String),
}

/// The client certificate of the request's connection, if it presented one. rustls has
/// verified it against `tls.clientCaFile` before the request exists.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificate(pub Option<CertificateDer<'static>>);

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn pem_error(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

fn certificates(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, format!("not a PEM certificate list: {e}")))?;
    if certs.is_empty() {
        return Err(pem_error(path, "holds no CERTIFICATE block"));
    }
    Ok(certs)
}

/// The files' contents, read once, so that what is fingerprinted is what is loaded.
struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl Files {
    fn read(cfg: &TlsConfig) -> Result<Files, TlsError> {
        Ok(Files {
            cert: read(&cfg.cert_file)?,
            key: read(&cfg.key_file)?,
            client_ca: cfg.client_ca_file.as_deref().map(read).transpose()?,
        })
    }

    fn fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [&self.cert, &self.key] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        if let Some(ca) = &self.client_ca {
            h.update(ca);
        }
        h.finalize().into()
    }

    fn server_config(&self, cfg: &TlsConfig) -> Result<ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = certificates(&cfg.cert_file, &self.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&self.key)
            .map_err(|e| pem_error(&cfg.key_file, format!("no usable private key: {e}")))?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match (&cfg.client_ca_file, &self.client_ca) {
            (Some(path), Some(bytes)) => {
                let mut roots = rustls::RootCertStore::empty();
                for ca in certificates(path, bytes)? {
                    roots
                        .add(ca)
                        .map_err(|e| pem_error(path, format!("unusable CA certificate: {e}")))?;
                }
                // A certificate is optional at the handshake (probes have none); when one
                // is presented it must chain to the CA, or the handshake fails.
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .allow_unauthenticated()
                        .build()
                        .map_err(|e| pem_error(path, e))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| pem_error(&cfg.key_file, format!("does not fit the certificate: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// Load the server configuration (start-up: any problem is an error naming the file).
pub fn load(cfg: &TlsConfig) -> Result<(RustlsConfig, [u8; 32]), TlsError> {
    let files = Files::read(cfg)?;
    let config = files.server_config(cfg)?;
    Ok((
        RustlsConfig::from_config(Arc::new(config)),
        files.fingerprint(),
    ))
}

/// Re-read the files every `tls.reloadInterval`; a changed, valid set replaces the served
/// one for new connections. A broken set is logged and the last good one stays.
pub async fn watch(
    live: RustlsConfig,
    cfg: TlsConfig,
    mut fingerprint: [u8; 32],
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(cfg.reload_interval.0) => {}
        }
        let files = match Files::read(&cfg) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "tls files unreadable; serving the last good certificate");
                continue;
            }
        };
        let print = files.fingerprint();
        if print == fingerprint {
            continue;
        }
        match files.server_config(&cfg) {
            Ok(config) => {
                live.reload_from_config(Arc::new(config));
                fingerprint = print;
                tracing::info!(cert = %cfg.cert_file.display(), "tls certificate reloaded");
            }
            Err(e) => {
                // Keep the old fingerprint: the set is tried again until it is whole (a
                // rotation may write the certificate and the key one after the other).
                tracing::warn!(error = %e, "tls files changed but are not usable; serving the last good certificate");
            }
        }
    }
}

/// Accepts TLS connections and gives every request on one the client certificate it showed.
#[derive(Clone)]
pub struct CertAcceptor {
    inner: RustlsAcceptor<DefaultAcceptor>,
}

impl CertAcceptor {
    pub fn new(config: RustlsConfig) -> CertAcceptor {
        CertAcceptor {
            inner: RustlsAcceptor::new(config),
        }
    }
}

impl<I, S> Accept<I, S> for CertAcceptor
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Send + 'static,
{
    type Stream = tokio_rustls::server::TlsStream<I>;
    type Service = axum::middleware::AddExtension<S, PeerCertificate>;
    type Future = BoxFuture<'static, std::io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let handshake = self.inner.accept(stream, service);
        Box::pin(async move {
            let (stream, service) = handshake.await?;
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|c| c.clone().into_owned());
            Ok((stream, Extension(PeerCertificate(peer)).layer(service)))
        })
    }
}
