//! The errors of the embedded default's local PKI (`local_pki.rs`): [`LocalPkiError`] when the
//! files cannot be generated or written (`run` stops, or warns for `internal.addr`), and
//! [`NotReused`] for why the files on disk were generated anew (`Origin::Regenerated`'s reason, a
//! `local_pki` warning), with [`PemProblem`] for what is wrong inside one file or pair of files.

use std::path::PathBuf;

use rustls::client::VerifierBuilderError;
use rustls_pki_types::pem;
use rustls_pki_types::InvalidDnsNameError;
use x509_parser::error::X509Error;
use x509_parser::time::ASN1Time;

use super::local_pki::{CA_CERT, CLIENT_CERT, EDGE_CERT};

/// Why the local PKI could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum LocalPkiError {
    #[error("cannot generate the local PKI: {0}")]
    Generate(#[source] rcgen::Error),
    /// The state directory (with its parents).
    #[error("cannot create {}: {source}", .dir.display())]
    CreateDir { dir: PathBuf, source: std::io::Error },
    /// A file of the PKI or `internal.addr` (through its `.tmp`).
    #[error("cannot write {}: {source}", .path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// Why the files in the state directory are not reused (the first problem found).
#[derive(Debug, thiserror::Error)]
pub enum NotReused {
    #[error("{file} is missing")]
    Missing { file: &'static str },
    #[error("{file} cannot be read: {source}")]
    Unreadable {
        file: &'static str,
        source: std::io::Error,
    },
    /// A certificate and its key.
    #[error("{cert} / {key}: {source}")]
    Pair {
        cert: &'static str,
        key: &'static str,
        source: PemProblem,
    },
    /// One certificate.
    #[error("{file}: {source}")]
    File { file: &'static str, source: PemProblem },
    /// rustls refused the CA as a root.
    #[error("{CA_CERT} is not a usable CA: {0}")]
    CaRefused(#[source] rustls::Error),
    /// webpki could not build a verifier on the CA.
    #[error("{CA_CERT} is not a usable CA: {0}")]
    CaVerifier(#[source] VerifierBuilderError),
    /// A name of the configuration that no certificate can carry.
    #[error("{name:?} is not a certificate name: {source}")]
    NotAName {
        name: String,
        source: InvalidDnsNameError,
    },
    /// The edge's certificate is not valid for `name` (or not signed by the CA, or expired).
    #[error("{EDGE_CERT} does not verify against {CA_CERT} for {name}: {source}")]
    EdgeNotVerified { name: String, source: rustls::Error },
    #[error("{CLIENT_CERT} does not verify against {CA_CERT}: {0}")]
    ClientNotVerified(#[source] rustls::Error),
    /// The client certificate does not name the configuration's known server `name`.
    #[error("{CLIENT_CERT} does not name the known server {name}: {source}")]
    ClientNotNamed { name: String, source: rustls::Error },
}

/// What is wrong inside a certificate file, or between a certificate and its key.
#[derive(Debug, thiserror::Error)]
pub enum PemProblem {
    #[error("no PEM certificate: {0}")]
    NoCertificate(#[source] pem::Error),
    #[error("no PEM private key: {0}")]
    NoPrivateKey(#[source] pem::Error),
    /// The provider cannot load the key.
    #[error("unusable private key: {0}")]
    UnusableKey(#[source] rustls::Error),
    #[error("the key is not the certificate's: {0}")]
    KeyMismatch(#[source] rustls::Error),
    #[error("not valid X.509: {0}")]
    NotX509(#[source] x509_parser::nom::Err<X509Error>),
    #[error("not a CA certificate")]
    NotCa,
    #[error("not valid now (valid {not_before} to {not_after})")]
    NotValidNow {
        not_before: ASN1Time,
        not_after: ASN1Time,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_name_the_files_and_the_cause() {
        let gone = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let write = LocalPkiError::Write {
            path: PathBuf::from("/s/ca.key"),
            source: gone(),
        };
        assert_eq!(write.to_string(), format!("cannot write /s/ca.key: {}", gone()));
        let mkdir = LocalPkiError::CreateDir {
            dir: PathBuf::from("/s"),
            source: gone(),
        };
        assert_eq!(mkdir.to_string(), format!("cannot create /s: {}", gone()));
        assert_eq!(
            NotReused::Missing { file: "client.key" }.to_string(),
            "client.key is missing"
        );
        let pair = NotReused::Pair {
            cert: "edge.pem",
            key: "edge.key",
            source: PemProblem::NotCa,
        };
        assert_eq!(pair.to_string(), "edge.pem / edge.key: not a CA certificate");
        let name = NotReused::NotAName {
            name: "not a name".into(),
            source: InvalidDnsNameError,
        };
        assert_eq!(
            name.to_string(),
            format!("\"not a name\" is not a certificate name: {InvalidDnsNameError}")
        );
        let refused = NotReused::ClientNotVerified(rustls::Error::General("x".into()));
        assert_eq!(
            refused.to_string(),
            format!(
                "client.pem does not verify against ca.pem: {}",
                rustls::Error::General("x".into())
            )
        );
        let ca = NotReused::CaVerifier(VerifierBuilderError::NoRootAnchors);
        assert_eq!(
            ca.to_string(),
            format!(
                "ca.pem is not a usable CA: {}",
                VerifierBuilderError::NoRootAnchors
            )
        );
    }
}
