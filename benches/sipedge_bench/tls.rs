//! rustls configurations for both ends of the bench, from PEM files, with the `ring` provider (as the
//! edge's default; the reference `tls-server` may run on `aws-lc-rs`): the generator's client (its certificate and key for mutual TLS, the CA of the server it
//! dials, the name it checks) and the sink's server (client certificates required from one CA).
//! Used by `gen.rs` and `sink.rs` through `stream.rs`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Certificate chain, key and the peer's CA, as given by `--cert --key --ca`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub ca: std::path::PathBuf,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Provider::Ring.get()
}

/// A rustls crypto provider by name (`tls-server --provider`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Provider {
    Ring,
    AwsLcRs,
}

impl Provider {
    pub fn get(self) -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(match self {
            Provider::Ring => rustls::crypto::ring::default_provider(),
            Provider::AwsLcRs => rustls::crypto::aws_lc_rs::default_provider(),
        })
    }
}

fn chain(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("bad PEM in {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", path.display());
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).with_context(|| format!("no private key in {}", path.display()))
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for c in chain(path)? {
        roots
            .add(c)
            .with_context(|| format!("unusable CA certificate in {}", path.display()))?;
    }
    Ok(Arc::new(roots))
}

/// The generator's client configuration (mutual TLS).
pub fn client(files: &TlsFiles) -> Result<Arc<ClientConfig>> {
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(&files.ca)?)
        .with_client_auth_cert(chain(&files.cert)?, key(&files.key)?)?;
    Ok(Arc::new(cfg))
}

/// The generator's client configuration without session resumption: every handshake full.
pub fn client_without_resumption(files: &TlsFiles) -> Result<Arc<ClientConfig>> {
    let mut cfg = (*client(files)?).clone();
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// The sink's server configuration: client certificates from `files.ca` required.
pub fn server(files: &TlsFiles) -> Result<Arc<ServerConfig>> {
    server_with(files, Provider::Ring)
}

/// [`server`] on `provider`.
pub fn server_with(files: &TlsFiles, provider: Provider) -> Result<Arc<ServerConfig>> {
    let provider = || provider.get();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(&files.ca)?, provider()).build()?;
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain(&files.cert)?, key(&files.key)?)?;
    Ok(Arc::new(cfg))
}
