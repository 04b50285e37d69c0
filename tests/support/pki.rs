//! [`TestPki`]: two CAs and the leaf certificates of the proxy scenarios, generated with rcgen (ring)
//! and written as PEM files into a temporary directory (the edge reads files; the peers use DER).
//!
//! - internal CA: the edge's two listener certificates (`edge-int.corp.test`, `edge.corp.test`), the
//!   front end `fe1.corp.test` (its client and server certificate) and the unknown `laptop.corp.test`;
//! - partner CA: `edge.partner.test` and the rogue `rogue.partner.test`.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tempfile::TempDir;

/// A leaf certificate (chain: leaf then its CA) with its key, in DER and as PEM files.
#[derive(Debug)]
pub struct Identity {
    pub name: String,
    pub chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Identity {
    /// An identity from PEM files written by someone else (e.g. the edge's local PKI).
    pub fn from_pem_files(name: &str, cert_file: &Path, key_file: &Path) -> Identity {
        use rustls_pki_types::pem::PemObject;
        let chain = CertificateDer::pem_file_iter(cert_file)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(key_file).unwrap();
        Identity {
            name: name.to_owned(),
            chain,
            key_der: key.secret_der().to_vec(),
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
        }
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// A CA certificate (DER) and its PEM file.
#[derive(Debug)]
pub struct Ca {
    pub cert: CertificateDer<'static>,
    pub file: PathBuf,
}

#[derive(Debug)]
struct CaBuilder {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    ca: Ca,
}

#[derive(Debug)]
pub struct TestPki {
    pub dir: TempDir,
    pub internal_ca: Ca,
    pub partner_ca: Ca,
    /// The edge's internal listener (`edge-int.corp.test`, internal CA).
    pub edge_internal: Identity,
    /// The edge's external listener (`edge.corp.test`, internal CA).
    pub edge_external: Identity,
    /// The front end (`fe1.corp.test`, internal CA): client and server certificate.
    pub fe: Identity,
    /// The partner's edge (`edge.partner.test`, partner CA).
    pub partner: Identity,
    /// A valid partner-CA certificate for the wrong name (`rogue.partner.test`).
    pub rogue: Identity,
    /// An internal-CA certificate that is not a known server (`laptop.corp.test`).
    pub laptop: Identity,
    /// The partner CA's signer, for more partner leaves ([`TestPki::partner_leaf`]).
    partner_signer: CaBuilder,
    /// The internal CA's signer, for replacement leaves ([`TestPki::internal_leaf`]).
    internal_signer: CaBuilder,
}

fn make_ca(dir: &Path, file: &str, cn: &str) -> CaBuilder {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let pem = cert.pem();
    let path = dir.join(file);
    std::fs::write(&path, &pem).unwrap();
    CaBuilder {
        issuer: Issuer::new(params, key),
        pem,
        ca: Ca {
            cert: cert.der().clone(),
            file: path,
        },
    }
}

fn make_leaf(dir: &Path, ca: &CaBuilder, name: &str) -> Identity {
    let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    let cert_file = dir.join(format!("{name}.crt"));
    let key_file = dir.join(format!("{name}.key"));
    std::fs::write(&cert_file, format!("{}{}", cert.pem(), ca.pem)).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    Identity {
        name: name.to_owned(),
        chain: vec![cert.der().clone(), ca.ca.cert.clone()],
        key_der: key.serialize_der(),
        cert_file,
        key_file,
    }
}

impl TestPki {
    pub fn new() -> TestPki {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_owned();
        let int = make_ca(&d, "internal-ca.pem", "sipedge test internal CA");
        let ext = make_ca(&d, "partner-ca.pem", "sipedge test partner CA");
        let edge_internal = make_leaf(&d, &int, "edge-int.corp.test");
        let edge_external = make_leaf(&d, &int, "edge.corp.test");
        let fe = make_leaf(&d, &int, "fe1.corp.test");
        let laptop = make_leaf(&d, &int, "laptop.corp.test");
        let partner = make_leaf(&d, &ext, "edge.partner.test");
        let rogue = make_leaf(&d, &ext, "rogue.partner.test");
        TestPki {
            dir,
            internal_ca: Ca {
                cert: int.ca.cert.clone(),
                file: int.ca.file.clone(),
            },
            partner_ca: Ca {
                cert: ext.ca.cert.clone(),
                file: ext.ca.file.clone(),
            },
            edge_internal,
            edge_external,
            fe,
            partner,
            rogue,
            laptop,
            partner_signer: ext,
            internal_signer: int,
        }
    }

    /// A new internal-CA leaf for `name` (new key, new serial), written over `<name>.crt` and
    /// `<name>.key`: for `edge.corp.test`, the edge's external certificate replaced on disk.
    pub fn internal_leaf(&self, name: &str) -> Identity {
        make_leaf(self.dir.path(), &self.internal_signer, name)
    }

    /// One more partner-CA leaf for `name` (e.g. an SRV target or a hosted provider's FQDN).
    pub fn partner_leaf(&self, name: &str) -> Identity {
        make_leaf(self.dir.path(), &self.partner_signer, name)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}
