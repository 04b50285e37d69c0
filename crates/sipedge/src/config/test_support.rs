//! Test-only fixtures for the configuration tests: a throw-away PKI in a temporary directory (a CA and
//! leaf certificates made with rcgen, with chosen SANs and validity) and a small valid configuration
//! that points at it with relative paths.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tempfile::TempDir;
use time::{Duration, OffsetDateTime};

use super::{Config, Invalid, Issue};

/// A CA and the directory its files are written to.
pub struct Pki {
    dir: TempDir,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    /// A new CA, written as `ca.pem`.
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "sipedge test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).unwrap();
        Pki {
            dir,
            issuer: Issuer::new(params, key),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `<name>.crt` (leaf then CA) and `<name>.key`: a certificate for `sans` valid from a year
    /// before `not_after_days` (days from now, negative for the past) until then.
    pub fn leaf(&self, name: &str, sans: &[&str], not_after_days: i64) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, sans.first().copied().unwrap_or(name));
        let not_after = OffsetDateTime::now_utc() + Duration::days(not_after_days);
        params.not_after = not_after;
        params.not_before = not_after - Duration::days(365);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let ca = std::fs::read_to_string(self.dir().join("ca.pem")).unwrap();
        let (crt, keyf) = (
            self.dir().join(format!("{name}.crt")),
            self.dir().join(format!("{name}.key")),
        );
        std::fs::write(&crt, format!("{}{ca}", cert.pem())).unwrap();
        std::fs::write(&keyf, key.serialize_pem()).unwrap();
        (crt, keyf)
    }

    /// The standard pair for [`valid_toml`]: `edge.crt`/`edge.key` for `edge.corp.example`, a year valid.
    pub fn with_edge_cert() -> Pki {
        let pki = Pki::new();
        pki.leaf("edge", &["edge.corp.example", "sip.corp.example"], 365);
        pki
    }

    /// Loads `text` as a file in the PKI's directory, with `env` overrides.
    pub fn load(&self, text: &str, env: &[(&str, &str)]) -> Result<Config, Vec<Issue>> {
        let path = self.dir().join("sipedge.toml");
        std::fs::write(&path, text).unwrap();
        Config::load_with_env(&path, env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
    }

    /// Like [`Pki::load`], keeping the warnings of an invalid file (what `check-config` reports).
    pub fn check(&self, text: &str) -> Result<Config, Invalid> {
        let path = self.dir().join("sipedge.toml");
        std::fs::write(&path, text).unwrap();
        Config::check_with_env(&path, Vec::new())
    }
}

/// A valid configuration using `edge.crt`, `edge.key` and `ca.pem` beside it, with push routing in
/// place and the IM filter set to warn, so that it loads with no warning at all.
pub const VALID_TOML: &str = r#"
[edge]
fqdn = "edge.corp.example"
sip_domains = ["corp.example"]

[internal]
listen = "10.0.0.10:5061"
next_hop = "pool.corp.example"
cert_file = "edge.crt"
key_file = "edge.key"
ca_file = "ca.pem"
known_servers = [
  { fqdn = "fe1.corp.example", version = "8.0" },
  { fqdn = "fe2.corp.example", version = "8.0" },
  { fqdn = "edge.corp.example", version = 0 },
]

[external]
listen = "192.0.2.10:5061"
cert_file = "edge.crt"
key_file = "edge.key"

[federation]
allowed = [
  { domain = "push.lync.com" },
  { domain = "partner.example", proxy_fqdn = "sip.partner.example:5062", comment = "pinned" },
]
blocked = [{ domain = "evil.example" }]
hosted_providers = [
  { name = "LyncOnline", proxy_fqdn = "sipfed.online.lync.com", enabled = true, verification_level = "AlwaysVerifiable" },
]

[im_filter]
action = "warn"
"#;

/// [`VALID_TOML`] with `extra_before` prepended and each (from, to) replaced once.
pub fn with(extra_before: &str, replace: &[(&str, &str)]) -> String {
    let mut text = VALID_TOML.to_owned();
    for (from, to) in replace {
        assert!(text.contains(from), "{from:?} not in the base config");
        text = text.replacen(from, to, 1);
    }
    format!("{extra_before}{text}")
}

/// The keys of `issues`, for assertions.
pub fn keys(issues: &[Issue]) -> Vec<&str> {
    issues.iter().map(|i| i.key.as_str()).collect()
}

/// The one issue at `key` (fails if none or several).
pub fn at<'a>(issues: &'a [Issue], key: &str) -> &'a Issue {
    let found: Vec<&Issue> = issues.iter().filter(|i| i.key == key).collect();
    assert_eq!(found.len(), 1, "one issue at {key} expected in {issues:#?}");
    found.into_iter().next().unwrap()
}
