//! Test-only PKI (rcgen): one CA, leaf certificates with the SANs a test asks for (server and client
//! auth), and ready-made [`ShellSettings`] on loopback port 0 whose both sides trust that CA.

use std::net::{Ipv4Addr, SocketAddr};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::settings::{ShellLimits, ShellSettings, TlsIdentity};

pub(crate) struct Pki {
    issuer: Issuer<'static, KeyPair>,
    ca: Certificate,
}

pub(crate) struct Leaf {
    cert: Certificate,
    key: KeyPair,
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "sipedge test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        Pki {
            issuer: Issuer::new(params, key),
            ca,
        }
    }

    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// A leaf for server and client authentication naming `sans` (dNSName entries).
    pub fn leaf(&self, sans: &[&str]) -> Leaf {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        self.sign(CertificateParams::new(sans).unwrap())
    }

    /// A leaf without SANs, named only by its subject CN.
    pub fn leaf_cn_only(&self, cn: &str) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        self.sign(params)
    }

    fn sign(&self, mut params: CertificateParams) -> Leaf {
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf { cert, key }
    }

    /// Settings on 127.0.0.1 port 0, one worker, both sides trusting this CA; `internal` names our
    /// internal certificate, the external one is `edge.example.com`.
    pub fn settings(&self, internal: &[&str]) -> ShellSettings {
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        ShellSettings {
            internal_listen: any,
            external_listen: any,
            internal_identity: self.leaf(internal).identity(),
            external_identity: self.leaf(&["edge.example.com"]).identity(),
            internal_client_ca: vec![self.ca_der()],
            external_roots: vec![self.ca_der()],
            hosts: Vec::new(),
            dns_servers: Vec::new(),
            dns_cache_entries: 1000,
            workers: 1,
            limits: ShellLimits::default(),
            idle_hook: None,
        }
    }
}

impl Leaf {
    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    pub fn key_pem(&self) -> Vec<u8> {
        self.key.serialize_pem().into_bytes()
    }

    pub fn identity(&self) -> TlsIdentity {
        TlsIdentity {
            chain: vec![self.cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(self.key.serialize_der().into()),
        }
    }
}
