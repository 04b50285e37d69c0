//! The embedded default's local PKI: a CA, the edge's certificate (both listeners) and the client
//! certificate of the default's known server, kept as PEM files in a local state directory so the
//! edge's own client commands (`sipedge send`, later `test-push`) and any other client can connect
//! to a `sipedge run` without `--config`. Owns where that directory is ([`state_dir`]), what is in it
//! ([`LocalPki::client_paths`], `internal.addr`), and when files are reused or regenerated
//! ([`LocalPki::load_or_create`]). Production configurations never use it.
//!
//! Directory, first that applies: `$SIPEDGE_STATE_DIR`, `$XDG_STATE_HOME/sipedge`,
//! `$HOME/.local/state/sipedge`, `./.sipedge`. Created 0700; keys are written 0600, certificates 0644,
//! each through a temporary file and a rename. On start all six files are reused when each parses,
//! each key matches its certificate, the CA is valid and both leaves verify against it (names,
//! extended key usage, expiry); otherwise all six are generated anew and the reason is returned.

use std::ffi::OsString;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use time::{Duration, OffsetDateTime};

pub use super::pki_error::{LocalPkiError, NotReused, PemProblem};
use super::{Config, EMBEDDED_DEFAULT_WARNING};

/// Overrides every other choice of state directory.
pub const STATE_DIR_ENV: &str = "SIPEDGE_STATE_DIR";

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const EDGE_CERT: &str = "edge.pem";
pub const EDGE_KEY: &str = "edge.key";
pub const CLIENT_CERT: &str = "client.pem";
pub const CLIENT_KEY: &str = "client.key";
/// Every file of the PKI.
const FILES: [&str; 6] = [CA_CERT, CA_KEY, EDGE_CERT, EDGE_KEY, CLIENT_CERT, CLIENT_KEY];
/// The internal listener's bound address, written by `run` at every start (the port may be 0).
pub const INTERNAL_ADDR: &str = "internal.addr";

const CA_VALIDITY_DAYS: i64 = 3650;
const LEAF_VALIDITY_DAYS: i64 = 365;

/// The state directory and which rule chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    pub path: PathBuf,
    /// `$SIPEDGE_STATE_DIR`, `$XDG_STATE_HOME`, `$HOME` or `the current directory`.
    pub from: &'static str,
}

/// The state directory from the process environment.
pub fn state_dir() -> StateDir {
    state_dir_from(|name| std::env::var_os(name))
}

/// The state directory from `var` (the environment lookup; empty values count as unset).
pub fn state_dir_from(var: impl Fn(&str) -> Option<OsString>) -> StateDir {
    let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = set(STATE_DIR_ENV) {
        return StateDir {
            path: p,
            from: "$SIPEDGE_STATE_DIR",
        };
    }
    if let Some(p) = set("XDG_STATE_HOME") {
        return StateDir {
            path: p.join("sipedge"),
            from: "$XDG_STATE_HOME",
        };
    }
    if let Some(p) = set("HOME") {
        return StateDir {
            path: p.join(".local/state/sipedge"),
            from: "$HOME",
        };
    }
    StateDir {
        path: PathBuf::from(".sipedge"),
        from: "the current directory",
    }
}

/// The files a known server presents to the internal listener, and the CA that signed the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// The names the certificates must carry (taken from the embedded default configuration).
#[derive(Debug, Clone)]
pub struct Names {
    /// DNS names or IP literals of the edge's certificate (every one is checked on reuse).
    pub edge: Vec<String>,
    /// The known server the client certificate names.
    pub client: String,
}

/// Whether the files on disk were reused, or generated and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Reused,
    /// None of the files were there (the first start with this directory).
    Created,
    /// Some were, but not all of them usable: `reason` is the first problem found.
    Regenerated {
        reason: String,
    },
}

/// The local PKI ready for the listeners: the edge's identity and the CA (PEM).
#[derive(Debug)]
pub struct LocalPki {
    pub dir: PathBuf,
    pub origin: Origin,
    /// The known server `client.pem` names.
    pub client_name: String,
    pub ca_pem: Vec<u8>,
    pub edge_cert_pem: Vec<u8>,
    pub edge_key_pem: Vec<u8>,
    /// What was done to a state directory others could read (it holds the CA's private key):
    /// `run` logs it as a `local_pki` warning.
    pub dir_note: Option<String>,
}

impl Names {
    /// The names of the configuration `run` uses without `--config`: the edge and internal FQDNs,
    /// `localhost` and `127.0.0.1` for the edge; the first known server for the client.
    pub fn of(config: &Config) -> Names {
        let mut edge = vec![
            config.edge().fqdn.to_string(),
            config.internal().fqdn.to_string(),
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ];
        let mut seen = std::collections::HashSet::new();
        edge.retain(|n| seen.insert(n.clone()));
        let client = config
            .internal()
            .known_servers
            .first()
            .map_or_else(|| "localhost".to_owned(), |k| k.fqdn.host().to_string());
        Names { edge, client }
    }
}

impl LocalPki {
    /// The local PKI of the embedded default `config`, in the [`state_dir`].
    pub fn for_embedded(config: &Config) -> Result<LocalPki, LocalPkiError> {
        LocalPki::load_or_create(&state_dir().path, &Names::of(config))
    }

    /// The loud warning `run` prints on the embedded default: what it is, where the PKI is, how to
    /// send a first request.
    pub fn embedded_warning(&self) -> String {
        format!(
            "{EMBEDDED_DEFAULT_WARNING} Local PKI in {dir}: clients connect to the internal listener as the \
             known server {client} with {dir}/{CLIENT_CERT} and {dir}/{CLIENT_KEY}, trusting {dir}/{CA_CERT}; \
             send a first request with `sipedge send` (no flags needed).",
            dir = self.dir.display(),
            client = self.client_name,
        )
    }

    /// The log level and text that say whether the files were reused or generated, and why.
    pub fn origin_text(&self) -> (&'static str, String) {
        match &self.origin {
            Origin::Reused => (
                "info",
                format!("reusing the local PKI in {}", self.dir.display()),
            ),
            Origin::Created => (
                "info",
                format!("created the local PKI in {}", self.dir.display()),
            ),
            Origin::Regenerated { reason } => (
                "warn",
                format!(
                    "generated a new local PKI in {} ({reason}): clients must use the new {CA_CERT} and {CLIENT_CERT}",
                    self.dir.display()
                ),
            ),
        }
    }

    /// Reuses the PKI in `dir` when all of it is present and valid for `names`, otherwise generates
    /// and writes a new one (creating `dir`). Errors name the file and what failed.
    pub fn load_or_create(dir: &Path, names: &Names) -> Result<LocalPki, LocalPkiError> {
        let dir_note = tighten(dir);
        let origin = match check(dir, names) {
            Ok(pki) => return Ok(LocalPki { dir_note, ..pki }),
            Err(_) if FILES.iter().all(|f| !dir.join(f).exists()) => Origin::Created,
            Err(reason) => Origin::Regenerated {
                reason: reason.to_string(),
            },
        };
        let pki = Self::create(dir, names, OffsetDateTime::now_utc(), origin)?;
        Ok(LocalPki { dir_note, ..pki })
    }

    /// Generates a PKI valid from `now` and writes it into `dir` (created 0700).
    fn create(
        dir: &Path,
        names: &Names,
        now: OffsetDateTime,
        origin: Origin,
    ) -> Result<LocalPki, LocalPkiError> {
        let files = generate(names, now).map_err(LocalPkiError::Generate)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| LocalPkiError::CreateDir {
                dir: dir.to_path_buf(),
                source,
            })?;
        for (name, text, mode) in [
            (CA_KEY, &files.ca_key, 0o600),
            (CA_CERT, &files.ca_cert, 0o644),
            (EDGE_KEY, &files.edge_key, 0o600),
            (EDGE_CERT, &files.edge_cert, 0o644),
            (CLIENT_KEY, &files.client_key, 0o600),
            (CLIENT_CERT, &files.client_cert, 0o644),
        ] {
            write_file(&dir.join(name), text.as_bytes(), mode)?;
        }
        Ok(LocalPki {
            dir: dir.to_path_buf(),
            origin,
            client_name: names.client.clone(),
            ca_pem: files.ca_cert.into_bytes(),
            edge_cert_pem: files.edge_cert.into_bytes(),
            edge_key_pem: files.edge_key.into_bytes(),
            dir_note: None,
        })
    }

    /// Where a known server's certificate, key and the CA are in `dir`.
    pub fn client_paths(dir: &Path) -> ClientPaths {
        ClientPaths {
            cert: dir.join(CLIENT_CERT),
            key: dir.join(CLIENT_KEY),
            ca: dir.join(CA_CERT),
        }
    }

    /// Records the internal listener's bound address for the client commands.
    pub fn write_internal_addr(&self, addr: SocketAddr) -> Result<(), LocalPkiError> {
        write_file(
            &self.dir.join(INTERNAL_ADDR),
            format!("{addr}\n").as_bytes(),
            0o644,
        )
    }
}

/// The internal listener address the last `run` on the embedded default recorded in `dir`.
pub fn read_internal_addr(dir: &Path) -> Option<SocketAddr> {
    std::fs::read_to_string(dir.join(INTERNAL_ADDR))
        .ok()
        .and_then(|t| t.trim().parse().ok())
}

/// Writes through `<path>.tmp` created with `mode`, then renames (no reader sees half a key, and a
/// A state directory that exists with group or other permissions (a `mkdir` with the usual umask,
/// 0755) is set to 0700: it holds the CA's private key, and a key file's own 0600 does not stop
/// others from listing or replacing the files. The note says what was done, or that it could not be.
fn tighten(dir: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir).ok()?.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return None;
    }
    let set = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    Some(match set {
        Ok(()) => format!(
            "the state directory {} was {mode:04o}: set to 0700, since it holds the local CA's private key",
            dir.display()
        ),
        Err(e) => format!(
            "the state directory {} is {mode:04o} and could not be set to 0700 ({e}): others on this machine \
             can read the names of the local CA's files; fix its permissions or choose another with \
             SIPEDGE_STATE_DIR",
            dir.display()
        ),
    })
}

/// key never exists with a wider mode).
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), LocalPkiError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let err = |source: std::io::Error| LocalPkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    // A stale temporary file would keep its old mode.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

struct Files {
    ca_cert: String,
    ca_key: String,
    edge_cert: String,
    edge_key: String,
    client_cert: String,
    client_key: String,
}

fn generate(names: &Names, now: OffsetDateTime) -> Result<Files, rcgen::Error> {
    // An hour back: clocks of the clients on this machine may lag a little.
    let not_before = now - Duration::hours(1);
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sipedge local CA (embedded default)");
    ca_params.not_before = not_before;
    ca_params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
    let ca = ca_params.self_signed(&ca_key)?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |sans: Vec<String>, cn: &str| -> Result<(String, String), rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        // Both purposes: the edge also dials out with its certificate, and a front end is also the
        // TLS server the edge forwards to.
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = not_before;
        params.not_after = now + Duration::days(LEAF_VALIDITY_DAYS);
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let edge_cn = names.edge.first().map_or("localhost", String::as_str);
    let (edge_cert, edge_key) = leaf(names.edge.clone(), edge_cn)?;
    let (client_cert, client_key) = leaf(vec![names.client.clone()], &names.client)?;
    Ok(Files {
        ca_cert: ca.pem(),
        ca_key: ca_key_pem,
        edge_cert,
        edge_key,
        client_cert,
        client_key,
    })
}

/// The PKI in `dir` if all of it can be reused; otherwise why not (the first problem found).
fn check(dir: &Path, names: &Names) -> Result<LocalPki, NotReused> {
    let read = |file: &'static str| -> Result<Vec<u8>, NotReused> {
        std::fs::read(dir.join(file)).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => NotReused::Missing { file },
            _ => NotReused::Unreadable { file, source },
        })
    };
    let pair = |cert: &'static str, key: &'static str| -> Result<(Vec<u8>, Vec<u8>), NotReused> {
        let (c, k) = (read(cert)?, read(key)?);
        matching_pair(&c, &k).map_err(|source| NotReused::Pair { cert, key, source })?;
        Ok((c, k))
    };
    let in_file = |file: &'static str| move |source: PemProblem| NotReused::File { file, source };
    let (ca_pem, _) = pair(CA_CERT, CA_KEY)?;
    let (edge_cert_pem, edge_key_pem) = pair(EDGE_CERT, EDGE_KEY)?;
    let (client_pem, _) = pair(CLIENT_CERT, CLIENT_KEY)?;
    let ca = first_cert(&ca_pem).map_err(in_file(CA_CERT))?;
    ca_valid(&ca).map_err(in_file(CA_CERT))?;
    let mut roots = RootCertStore::empty();
    roots.add(ca).map_err(NotReused::CaRefused)?;
    let roots = Arc::new(roots);
    let provider = provider();
    let now = UnixTime::now();
    let servers = WebPkiServerVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
        .build()
        .map_err(NotReused::CaVerifier)?;
    let clients = WebPkiClientVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(NotReused::CaVerifier)?;
    let edge = first_cert(&edge_cert_pem).map_err(in_file(EDGE_CERT))?;
    for name in &names.edge {
        let server_name = cert_name(name)?;
        servers
            .verify_server_cert(&edge, &[], &server_name, &[], now)
            .map_err(|source| NotReused::EdgeNotVerified {
                name: name.clone(),
                source,
            })?;
    }
    let client = first_cert(&client_pem).map_err(in_file(CLIENT_CERT))?;
    clients
        .verify_client_cert(&client, &[], now)
        .map_err(NotReused::ClientNotVerified)?;
    // The edge accepts the client by name: it must be the known server of the configuration.
    let client_name = cert_name(&names.client)?;
    servers
        .verify_server_cert(&client, &[], &client_name, &[], now)
        .map_err(|source| NotReused::ClientNotNamed {
            name: names.client.clone(),
            source,
        })?;
    Ok(LocalPki {
        dir: dir.to_path_buf(),
        origin: Origin::Reused,
        client_name: names.client.clone(),
        ca_pem,
        edge_cert_pem,
        edge_key_pem,
        dir_note: None,
    })
}

/// `name` as the name a certificate is verified for.
fn cert_name(name: &str) -> Result<ServerName<'_>, NotReused> {
    ServerName::try_from(name).map_err(|source| NotReused::NotAName {
        name: name.to_owned(),
        source,
    })
}

fn provider() -> Arc<CryptoProvider> {
    edge_core::shell::crypto_provider()
}

fn first_cert(pem: &[u8]) -> Result<CertificateDer<'static>, PemProblem> {
    CertificateDer::from_pem_slice(pem).map_err(PemProblem::NoCertificate)
}

/// The certificate parses and `key` is its private key.
fn matching_pair(cert_pem: &[u8], key_pem: &[u8]) -> Result<(), PemProblem> {
    let cert = first_cert(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(PemProblem::NoPrivateKey)?;
    let signer = provider()
        .key_provider
        .load_private_key(key)
        .map_err(PemProblem::UnusableKey)?;
    CertifiedKey::new(vec![cert], signer)
        .keys_match()
        .map_err(PemProblem::KeyMismatch)
}

/// The CA's own validity (webpki does not check a trust anchor's dates; other TLS stacks do).
fn ca_valid(ca: &CertificateDer<'_>) -> Result<(), PemProblem> {
    let (_, cert) = x509_parser::parse_x509_certificate(ca.as_ref()).map_err(PemProblem::NotX509)?;
    if !cert.is_ca() {
        return Err(PemProblem::NotCa);
    }
    let validity = cert.validity();
    if !validity.is_valid() {
        return Err(PemProblem::NotValidNow {
            not_before: validity.not_before,
            not_after: validity.not_after,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn names() -> Names {
        Names {
            edge: vec!["localhost".into(), "127.0.0.1".into()],
            client: "fe.local.test".into(),
        }
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn state_dir_order() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |n: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        const ALL: [(&str, &str); 3] = [
            ("SIPEDGE_STATE_DIR", "/s"),
            ("XDG_STATE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(state_dir_from(env(&ALL)).path, PathBuf::from("/s"));
        assert_eq!(state_dir_from(env(&ALL[1..])).path, PathBuf::from("/x/sipedge"));
        assert_eq!(
            state_dir_from(env(&ALL[2..])).path,
            PathBuf::from("/h/.local/state/sipedge")
        );
        assert_eq!(state_dir_from(env(&[])).path, PathBuf::from(".sipedge"));
        let empty = state_dir_from(env(&[("SIPEDGE_STATE_DIR", ""), ("HOME", "/h")]));
        assert_eq!(empty.from, "$HOME", "an empty variable counts as unset");
    }

    /// A pre-existing directory that others can read is made private, and `run` is told.
    #[test]
    fn an_existing_0755_state_directory_becomes_0700_with_a_note() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sipedge");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let pki = LocalPki::load_or_create(&dir, &names()).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let note = pki.dir_note.unwrap();
        assert!(note.contains("was 0755: set to 0700"), "{note}");
        // Reused next time, already private: nothing to say.
        let again = LocalPki::load_or_create(&dir, &names()).unwrap();
        assert_eq!((again.origin, again.dir_note), (Origin::Reused, None));
        // Loosened again after the files exist: tightened before they are reused.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        let third = LocalPki::load_or_create(&dir, &names()).unwrap();
        assert_eq!(third.origin, Origin::Reused);
        assert!(third.dir_note.unwrap().contains("was 0750"));
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn generated_then_reused_with_private_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state/sipedge");
        let first = LocalPki::load_or_create(&dir, &names()).unwrap();
        assert_eq!(first.origin, Origin::Created);
        assert_eq!(mode(&dir), 0o700);
        for key in [CA_KEY, EDGE_KEY, CLIENT_KEY] {
            assert_eq!(mode(&dir.join(key)), 0o600, "{key}");
        }
        let second = LocalPki::load_or_create(&dir, &names()).unwrap();
        assert_eq!(second.origin, Origin::Reused);
        assert_eq!(second.ca_pem, first.ca_pem);
        assert_eq!(second.edge_key_pem, first.edge_key_pem);
        let paths = LocalPki::client_paths(&dir);
        assert_eq!(paths.cert, dir.join("client.pem"));
        assert_eq!(paths.ca, dir.join("ca.pem"));
    }

    fn regenerated_because(dir: &Path, names: &Names) -> String {
        match LocalPki::load_or_create(dir, names).unwrap().origin {
            Origin::Regenerated { reason } => reason,
            other => panic!("{other:?} instead of regenerated"),
        }
    }

    #[test]
    fn broken_or_foreign_files_regenerate_everything_and_say_which() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let first = LocalPki::load_or_create(dir, &names()).unwrap();

        std::fs::remove_file(dir.join(CLIENT_KEY)).unwrap();
        assert_eq!(regenerated_because(dir, &names()), "client.key is missing");
        let second = LocalPki::load_or_create(dir, &names()).unwrap();
        assert_eq!(second.origin, Origin::Reused);
        assert_ne!(second.ca_pem, first.ca_pem, "all files regenerated, the CA too");

        // A key that is not the certificate's.
        std::fs::copy(dir.join(CLIENT_KEY), dir.join(EDGE_KEY)).unwrap();
        let why = regenerated_because(dir, &names());
        assert!(why.starts_with("edge.pem / edge.key: the key is not"), "{why}");

        // An edge certificate from another CA.
        let other = tempfile::tempdir().unwrap();
        LocalPki::load_or_create(other.path(), &names()).unwrap();
        for f in [EDGE_CERT, EDGE_KEY] {
            std::fs::copy(other.path().join(f), dir.join(f)).unwrap();
        }
        let why = regenerated_because(dir, &names());
        assert!(
            why.starts_with("edge.pem does not verify against ca.pem"),
            "{why}"
        );

        // Garbage.
        std::fs::write(dir.join(CA_CERT), "not pem").unwrap();
        let why = regenerated_because(dir, &names());
        assert!(why.starts_with("ca.pem / ca.key: no PEM certificate"), "{why}");
    }

    #[test]
    fn expired_leaves_regenerate() {
        let tmp = tempfile::tempdir().unwrap();
        let then = OffsetDateTime::now_utc() - Duration::days(LEAF_VALIDITY_DAYS + 1);
        LocalPki::create(tmp.path(), &names(), then, Origin::Created).unwrap();
        let why = regenerated_because(tmp.path(), &names());
        assert!(
            why.starts_with("edge.pem does not verify against ca.pem for localhost")
                && why.contains("xpired"),
            "{why}"
        );
        assert_eq!(
            LocalPki::load_or_create(tmp.path(), &names()).unwrap().origin,
            Origin::Reused
        );
    }

    #[test]
    fn names_that_changed_regenerate() {
        let tmp = tempfile::tempdir().unwrap();
        LocalPki::load_or_create(tmp.path(), &names()).unwrap();
        let mut edge = names();
        edge.edge.push("edge.other.test".into());
        let why = regenerated_because(tmp.path(), &edge);
        assert!(
            why.starts_with("edge.pem does not verify against ca.pem for edge.other.test"),
            "{why}"
        );
        let mut client = names();
        client.client = "fe2.local.test".into();
        let why = regenerated_because(tmp.path(), &client);
        assert!(
            why.starts_with("client.pem does not name the known server fe2.local.test"),
            "{why}"
        );
    }

    #[test]
    fn internal_addr_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = LocalPki::load_or_create(tmp.path(), &names()).unwrap();
        assert_eq!(read_internal_addr(tmp.path()), None);
        let addr: SocketAddr = "127.0.0.1:40123".parse().unwrap();
        pki.write_internal_addr(addr).unwrap();
        assert_eq!(read_internal_addr(tmp.path()), Some(addr));
    }
}
