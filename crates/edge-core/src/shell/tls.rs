//! TLS for both sides (rustls 0.23 on aws-lc-rs with the `aws-lc-rs` feature, the binary's default,
//! else ring; TLS 1.2 and 1.3 only): the server config of each listener
//! (mutual TLS: the internal side trusts only the internal CA, the external side exactly the roots it is
//! given — sipedge passes the operating system's trust store plus `external.ca_file`), the client config for links the edge opens, our certificate behind
//! rustls's `SingleCertAndKey` (one resolver for serving and for client authentication, fixed for
//! the configs that hold it: a reload builds new configs, so no lock is taken on a handshake), and what we read out of a peer's certificate: its identities and the
//! exact-name check for the host we dialled. `conn.rs` drives the rustls connections built from here.

use std::sync::Arc;

use federation_policy::DomainName;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::{ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
    SupportedProtocolVersion,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::settings::{ShellSettings, TlsIdentity};
use crate::proxy::io::Side;

/// Why the TLS configuration could not be built. Each is fatal at start (and rejects a reload).
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{side} {what}: no certificate given")]
    NoCertificate { side: &'static str, what: &'static str },
    #[error("{side} certificate and key: {error}")]
    Key {
        side: &'static str,
        error: rustls::Error,
    },
    #[error("{side} trust roots: {error}")]
    Roots {
        side: &'static str,
        error: rustls::Error,
    },
    #[error("{side} client certificate verifier: {error}")]
    Verifier {
        side: &'static str,
        error: rustls::server::VerifierBuilderError,
    },
    #[error("{side} server certificate verifier: {error}")]
    ServerVerifier {
        side: &'static str,
        error: rustls::client::VerifierBuilderError,
    },
    #[error("{side} TLS config: {error}")]
    Config {
        side: &'static str,
        error: rustls::Error,
    },
}

/// The protocol versions we speak.
static VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The crypto provider, chosen explicitly so a second provider compiled in elsewhere never makes
/// rustls guess: `aws-lc-rs` with the crate feature of that name (the binary's default), `ring`
/// without it. The choice is a measurement (README, Performance: handshakes and bulk records side
/// by side, `benches/connections.sh`): equal on ECDSA and on bulk records, a third less CPU per
/// full handshake on an RSA-2048 key. On aws-lc-rs the key exchange groups are ring's (X25519,
/// P-256, P-384): no post-quantum hybrid share offered to partners, so the switch changes no
/// ClientHello the edge sends.
pub fn provider() -> Arc<CryptoProvider> {
    #[cfg(feature = "aws-lc-rs")]
    let p = {
        use rustls::crypto::aws_lc_rs::kx_group::{SECP256R1, SECP384R1, X25519};
        CryptoProvider {
            kx_groups: vec![X25519, SECP256R1, SECP384R1],
            ..rustls::crypto::aws_lc_rs::default_provider()
        }
    };
    #[cfg(not(feature = "aws-lc-rs"))]
    let p = rustls::crypto::ring::default_provider();
    Arc::new(p)
}

/// The name of [`provider`] as built (`ring` or `aws-lc-rs`), for the start-up log.
pub const PROVIDER_NAME: &str = if cfg!(feature = "aws-lc-rs") {
    "aws-lc-rs"
} else {
    "ring"
};

/// The TLS configuration of one side.
#[derive(Debug, Clone)]
pub(crate) struct SideTls {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
}

/// Both sides, built at start and by every reload (`Runtime`), shared read-only by the workers.
#[derive(Debug, Clone)]
pub(crate) struct TlsConfigs {
    pub internal: SideTls,
    pub external: SideTls,
}

impl TlsConfigs {
    pub fn build(settings: &ShellSettings) -> Result<TlsConfigs, TlsSetupError> {
        let internal_roots = roots(Side::Internal, &settings.internal_client_ca, "client CA")?;
        // Exactly the roots the caller passes (sipedge: the OS trust store plus external.ca_file, read
        // once by config validation); none compiled in.
        let external_roots = roots(Side::External, &settings.external_roots, "trust roots")?;
        Ok(TlsConfigs {
            internal: side_tls(Side::Internal, &settings.internal_identity, internal_roots)?,
            external: side_tls(Side::External, &settings.external_identity, external_roots)?,
        })
    }

    pub fn side(&self, side: Side) -> &SideTls {
        match side {
            Side::Internal => &self.internal,
            Side::External => &self.external,
        }
    }
}

fn side_tls(side: Side, identity: &TlsIdentity, roots: RootCertStore) -> Result<SideTls, TlsSetupError> {
    let name = side.as_str();
    let cert = Arc::new(SingleCertAndKey::from(certified_key(side, identity)?));
    let roots = Arc::new(roots);
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), provider())
        .build()
        .map_err(|error| TlsSetupError::Verifier { side: name, error })?;
    let server = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|error| TlsSetupError::Config { side: name, error })?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::clone(&cert) as Arc<dyn ResolvesServerCert>);
    let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|error| TlsSetupError::ServerVerifier { side: name, error })?;
    let client = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|error| TlsSetupError::Config { side: name, error })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ExactNameVerifier { webpki }))
        .with_client_cert_resolver(Arc::clone(&cert) as Arc<dyn ResolvesClientCert>);
    Ok(SideTls {
        server: Arc::new(server),
        client: Arc::new(client),
    })
}

fn certified_key(side: Side, identity: &TlsIdentity) -> Result<CertifiedKey, TlsSetupError> {
    let name = side.as_str();
    let chain = identity.chain.clone();
    if chain.is_empty() {
        return Err(TlsSetupError::NoCertificate {
            side: name,
            what: "certificate chain",
        });
    }
    CertifiedKey::from_der(chain, identity.key.clone_key(), &provider())
        .map_err(|error| TlsSetupError::Key { side: name, error })
}

/// The store of `certs`; none at all is an error (`what` names them).
fn roots(
    side: Side,
    certs: &[CertificateDer<'static>],
    what: &'static str,
) -> Result<RootCertStore, TlsSetupError> {
    let name = side.as_str();
    let mut store = RootCertStore::empty();
    for cert in certs {
        store
            .add(cert.clone())
            .map_err(|error| TlsSetupError::Roots { side: name, error })?;
    }
    if store.is_empty() {
        return Err(TlsSetupError::NoCertificate { side: name, what });
    }
    Ok(store)
}

/// The verifier of the servers we dial: the WebPKI chain checks, then the name — exactly, never
/// through a wildcard (federation FQDNs are matched literally: docs/architecture.md, Sides). A
/// mismatch fails the handshake with `NotValidForNameContext` carrying the certificate's own
/// identities, which [`mismatch_names`] turns back into what the core is told.
#[derive(Debug)]
struct ExactNameVerifier {
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ExactNameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mismatch = || {
            rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                expected: server_name.to_owned(),
                presented: peer_identities(end_entity),
            })
        };
        let verified = self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| {
                if mismatch_names(&e).is_some() {
                    mismatch()
                } else {
                    e
                }
            })?;
        if let ServerName::DnsName(dns) = server_name {
            let host = DomainName::parse(dns.as_ref()).map_err(|_| mismatch())?;
            if !names_host_exactly(&san_dns_names(end_entity), &host) {
                return Err(mismatch());
            }
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The identities of a server certificate that did not name the host we dialled, when `error` is
/// that failure.
pub(crate) fn mismatch_names(error: &rustls::Error) -> Option<Vec<String>> {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { presented, .. }) => {
            Some(presented.clone())
        }
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => Some(Vec::new()),
        _ => None,
    }
}

/// The name to send as SNI and verify the server certificate against.
pub(crate) fn server_name(host: &DomainName) -> Option<ServerName<'static>> {
    ServerName::try_from(host.as_str().to_owned()).ok()
}

/// The SAN dNSName entries of a certificate, as presented. Empty when it has none or does not parse.
pub fn san_dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(name) => Some((*name).to_owned()),
            _ => None,
        })
        .collect()
}

/// A peer's identities for `PeerInfo`: its SAN dNSNames, or its subject CN(s) when it has none.
pub fn peer_identities(cert: &CertificateDer<'_>) -> Vec<String> {
    let sans = san_dns_names(cert);
    if !sans.is_empty() {
        return sans;
    }
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    parsed
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(str::to_owned)
        .collect()
}

/// Whether one of the presented SAN dNSNames is `host` itself — case and a trailing dot aside, and
/// never through a wildcard: `*.partner.example` does not name `sip.partner.example` for federation.
pub fn names_host_exactly(presented: &[String], host: &DomainName) -> bool {
    presented
        .iter()
        .any(|name| DomainName::parse(name).is_ok_and(|n| &n == host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shell::testpki::Pki;

    fn d(s: &str) -> DomainName {
        DomainName::parse(s).unwrap()
    }

    #[test]
    fn identities_prefer_san_then_cn() {
        let pki = Pki::new();
        let leaf = pki.leaf(&["Edge.Partner.example", "sip.partner.example"]);
        assert_eq!(
            peer_identities(&leaf.der()),
            vec![
                "Edge.Partner.example".to_owned(),
                "sip.partner.example".to_owned()
            ]
        );
        let cn_only = pki.leaf_cn_only("fe1.corp.example");
        assert!(san_dns_names(&cn_only.der()).is_empty());
        assert_eq!(
            peer_identities(&cn_only.der()),
            vec!["fe1.corp.example".to_owned()]
        );
        assert!(peer_identities(&CertificateDer::from(vec![1, 2, 3])).is_empty());
    }

    #[test]
    fn exact_san_match_has_no_wildcards() {
        let pki = Pki::new();
        let wild = pki.leaf(&["*.partner.example"]);
        let sans = san_dns_names(&wild.der());
        assert_eq!(sans, vec!["*.partner.example".to_owned()]);
        assert!(!names_host_exactly(&sans, &d("sip.partner.example")));
        let exact = vec!["SIP.Partner.Example.".to_owned(), "other.example".to_owned()];
        assert!(names_host_exactly(&exact, &d("sip.partner.example")));
        assert!(!names_host_exactly(&exact, &d("partner.example")));
        assert!(!names_host_exactly(&[], &d("partner.example")));
    }

    #[test]
    fn builds_both_sides_and_rejects_bad_input() {
        let pki = Pki::new();
        let settings = pki.settings(&["edge.corp.example"]);
        let configs = TlsConfigs::build(&settings).unwrap();
        assert!(configs.side(Side::External).server.alpn_protocols.is_empty());

        let mut no_ca = settings.clone();
        no_ca.internal_client_ca.clear();
        assert!(matches!(
            TlsConfigs::build(&no_ca),
            Err(TlsSetupError::NoCertificate { side: "internal", .. })
        ));
        let mut no_roots = settings.clone();
        no_roots.external_roots.clear();
        assert!(matches!(
            TlsConfigs::build(&no_roots),
            Err(TlsSetupError::NoCertificate {
                side: "external",
                what: "trust roots"
            })
        ));
        let mut wrong_key = settings.clone();
        wrong_key.external_identity.key = pki.leaf(&["x.example"]).identity().key;
        assert!(matches!(
            TlsConfigs::build(&wrong_key),
            Err(TlsSetupError::Key { side: "external", .. })
        ));
        let mut garbage = settings;
        garbage.internal_identity.chain = vec![CertificateDer::from(b"not a certificate".to_vec())];
        assert!(TlsConfigs::build(&garbage).is_err());
    }

    #[test]
    fn our_certificate_serves_its_identity_and_refuses_a_key_of_another() {
        let pki = Pki::new();
        let a = pki.leaf(&["a.example"]);
        let b = pki.leaf(&["b.example"]);
        let ours = SingleCertAndKey::from(certified_key(Side::External, &a.identity()).unwrap());
        let served = ResolvesClientCert::resolve(&ours, &[], &[]).unwrap();
        assert_eq!(served.cert.first(), Some(&a.der()));
        let mut bad = b.identity();
        bad.key = a.identity().key;
        assert!(certified_key(Side::External, &bad).is_err());
    }
}
