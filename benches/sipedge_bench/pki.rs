//! `sipedge-bench pki --dir D`: the bench's certificates, made with rcgen (ECDSA P-256; RSA-2048
//! variants of two servers) so no openssl step is needed. The same layout as the black-box tests' `TestPki` (tests/support/pki.rs):
//!
//! - `internal-ca.pem`: the edge's two listeners (`edge-int.corp.test`, `edge.corp.test`), the
//!   generator as front end (`fe1.corp.test`) and Kamailio (`kamailio.corp.test`);
//! - `partner-ca.pem`: the sink as the partner's edge (`edge.partner.test`);
//! - `all-ca.pem`: both, for Kamailio, which checks the generator and the sink alike.
//!
//! Each leaf is `<name>.crt` (leaf then CA) and `<name>.key` (PKCS#8); the servers of the
//! handshake scenarios also as `<name>.rsa.crt` / `<name>.rsa.key` (RSA-2048, [`RSA_LEAVES`]).

use std::path::Path;

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// The leaf names under the internal CA.
pub const INTERNAL_LEAVES: [&str; 4] = [
    "edge-int.corp.test",
    "edge.corp.test",
    "fe1.corp.test",
    "kamailio.corp.test",
];
/// The leaves also written with an RSA-2048 key (`<name>.rsa.crt`, `<name>.rsa.key`): the two
/// servers of the handshake scenarios (the edge's internal listener, also served by the reference
/// `tls-server`, and Kamailio). The CA itself stays ECDSA P-256.
pub const RSA_LEAVES: [&str; 2] = ["edge-int.corp.test", "kamailio.corp.test"];
/// The leaf names under the partner CA.
pub const PARTNER_LEAVES: [&str; 1] = ["edge.partner.test"];

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn ca(dir: &Path, file: &str, cn: &str) -> Result<Ca> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let pem = cert.pem();
    write(&dir.join(file), &pem)?;
    Ok(Ca {
        issuer: Issuer::new(params, key),
        pem,
    })
}

fn leaf(dir: &Path, ca: &Ca, name: &str) -> Result<()> {
    leaf_with(dir, ca, name, KeyPair::generate()?, name)
}

/// The RSA-2048 variant of leaf `name` (rcgen generates RSA keys on aws-lc-rs only).
fn rsa_leaf(dir: &Path, ca: &Ca, name: &str) -> Result<()> {
    let key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?;
    leaf_with(dir, ca, name, key, &format!("{name}.rsa"))
}

fn leaf_with(dir: &Path, ca: &Ca, name: &str, key: KeyPair, file: &str) -> Result<()> {
    let mut params = CertificateParams::new(vec![name.to_owned()])?;
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.signed_by(&key, &ca.issuer)?;
    write(
        &dir.join(format!("{file}.crt")),
        &format!("{}{}", cert.pem(), ca.pem),
    )?;
    write(&dir.join(format!("{file}.key")), &key.serialize_pem())
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes the CAs and leaves into `dir` (created if missing).
pub fn generate(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let internal = ca(dir, "internal-ca.pem", "sipedge-bench internal CA")?;
    let partner = ca(dir, "partner-ca.pem", "sipedge-bench partner CA")?;
    write(
        &dir.join("all-ca.pem"),
        &format!("{}{}", internal.pem, partner.pem),
    )?;
    for name in INTERNAL_LEAVES {
        leaf(dir, &internal, name)?;
    }
    for name in RSA_LEAVES {
        rsa_leaf(dir, &internal, name)?;
    }
    for name in PARTNER_LEAVES {
        leaf(dir, &partner, name)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{client, server, TlsFiles};
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn the_generated_files_load_as_client_and_server_configs() {
        let dir = std::env::temp_dir().join(format!("sipedge-bench-pki-{}", std::process::id()));
        generate(&dir).unwrap();
        let files = |name: &str, ca: &str| TlsFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
            ca: dir.join(ca),
        };
        client(&files("fe1.corp.test", "partner-ca.pem")).unwrap();
        server(&files("edge.partner.test", "internal-ca.pem")).unwrap();
        server(&files("kamailio.corp.test", "all-ca.pem")).unwrap();
        for name in RSA_LEAVES {
            let rsa = files(&format!("{name}.rsa"), "internal-ca.pem");
            server(&rsa).unwrap();
            let key = std::fs::read_to_string(&rsa.key).unwrap();
            let der = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            let signer = rustls::crypto::ring::sign::any_supported_type(&der).unwrap();
            assert_eq!(signer.algorithm(), rustls::SignatureAlgorithm::RSA, "{name}");
        }
        let all = std::fs::read_to_string(dir.join("all-ca.pem")).unwrap();
        assert_eq!(all.matches("BEGIN CERTIFICATE").count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
