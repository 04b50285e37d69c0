//! TLS material named by the configuration: a listener's certificate chain and private key
//! (`cert_file`, `key_file`) and CA bundles (`ca_file`), read as PEM (`rustls-pki-types`) and each
//! certificate parsed as X.509 (`x509-parser`) for its subject, DNS SANs and validity. An expired
//! certificate in a chain is an error, one that expires within 30 days a warning; an expired CA in a
//! bundle is only a warning (bundles often carry old roots). A private key that does not belong to its
//! certificate is an error (checked as the shell loads it, so `check-config` passing means `run`
//! starts). Only the embedded default may omit the
//! files and run on a self-signed certificate generated at start.

use std::path::Path;

use rustls::sign::CertifiedKey;
use rustls::InconsistentKeys;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;

use super::settings::{resolve_path, CaBundle, CertSummary, TlsFiles, TlsIdentity};
use super::Issues;

/// A certificate that expires within this many days is warned about.
pub const EXPIRY_WARNING_DAYS: i64 = 30;
const DAY: i64 = 86_400;

#[derive(Debug)]
pub(super) struct Context<'a> {
    /// Relative paths are taken from here (the config file's directory).
    pub base: Option<&'a Path>,
    /// Seconds since the Unix epoch.
    pub now: i64,
    /// The embedded default: certificate files may be omitted.
    pub embedded: bool,
}

/// The identity of listener `section` (`internal` / `external`).
pub(super) fn identity(
    section: &str,
    cert_file: &Option<String>,
    key_file: &Option<String>,
    ctx: &Context<'_>,
    issues: &mut Issues,
    warnings: &mut Issues,
) -> Option<TlsIdentity> {
    let cert_key = format!("{section}.cert_file");
    let key_key = format!("{section}.key_file");
    let (cert, key) = match (cert_file, key_file) {
        (None, None) if ctx.embedded => return Some(TlsIdentity::SelfSigned),
        (Some(c), Some(k)) => (c, k),
        (c, k) => {
            let only_default = "only the embedded default may run without certificate files";
            if c.is_none() {
                issues.push(
                    &cert_key,
                    format!("missing: the PEM certificate chain this listener presents ({only_default})"),
                );
            }
            if k.is_none() {
                issues.push(
                    &key_key,
                    format!("missing: the PEM private key of {cert_key} ({only_default})"),
                );
            }
            return None;
        }
    };
    let cert_path = resolve_path(ctx.base, cert);
    let key_path = resolve_path(ctx.base, key);
    let chain = read(&cert_path, &cert_key, issues).and_then(|bytes| {
        certificates(&bytes, &cert_path, &cert_key, issues).and_then(|certs| {
            let mut summaries = Vec::new();
            for (n, der) in certs.iter().enumerate() {
                let s = summary(der, &cert_path, n, &cert_key, issues)?;
                if s.not_after < ctx.now {
                    issues.push(
                        &cert_key,
                        format!(
                            "certificate {:?} in {} expired on {}",
                            s.subject,
                            cert_path.display(),
                            date(s.not_after)
                        ),
                    );
                } else {
                    expiry_warning("certificate", &s, &cert_path, &cert_key, ctx, warnings);
                }
                summaries.push(s);
            }
            let leaf = summaries.into_iter().next()?;
            Some((certs, leaf))
        })
    });
    let key =
        read(&key_path, &key_key, issues).and_then(|bytes| match PrivateKeyDer::from_pem_slice(&bytes) {
            Ok(k) => Some(k),
            Err(pem::Error::NoItemsFound) => {
                issues.push(
                    &key_key,
                    format!(
                        "{} holds no PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
                        key_path.display()
                    ),
                );
                None
            }
            Err(e) => {
                issues.push(&key_key, format!("{} is not valid PEM: {e}", key_path.display()));
                None
            }
        });
    let ((chain, leaf), key) = (chain?, key?);
    key_matches(
        &chain,
        &key,
        (&cert_path, &cert_key),
        (&key_path, &key_key),
        issues,
    )?;
    Some(TlsIdentity::Files(TlsFiles {
        cert_file: cert_path,
        key_file: key_path,
        chain,
        key,
        leaf,
    }))
}

/// Whether the private key belongs to the leaf certificate, checked the way the shell loads them
/// (rustls `CertifiedKey` on the edge's provider), so that a valid configuration is one `run` starts with.
fn key_matches(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    (cert_path, cert_key): (&Path, &str),
    (key_path, key_key): (&Path, &str),
    issues: &mut Issues,
) -> Option<()> {
    let provider = edge_core::shell::crypto_provider();
    match CertifiedKey::from_der(chain.to_vec(), key.clone_key(), &provider) {
        Ok(_) => Some(()),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            issues.push(
                key_key,
                format!(
                    "the private key in {} does not belong to the certificate in {} ({cert_key}): \
                     its public key is not the certificate's; give the key the certificate was issued for",
                    key_path.display(),
                    cert_path.display()
                ),
            );
            None
        }
        Err(e) => {
            issues.push(
                key_key,
                format!(
                    "the private key in {} cannot be used with the certificate in {} ({cert_key}): {e}",
                    key_path.display(),
                    cert_path.display()
                ),
            );
            None
        }
    }
}

/// A CA bundle (`key` is `internal.ca_file` / `external.ca_file`).
pub(super) fn ca_bundle(
    key: &str,
    file: &str,
    ctx: &Context<'_>,
    issues: &mut Issues,
    warnings: &mut Issues,
) -> Option<CaBundle> {
    let path = resolve_path(ctx.base, file);
    let bytes = read(&path, key, issues)?;
    let certs = certificates(&bytes, &path, key, issues)?;
    for (n, der) in certs.iter().enumerate() {
        let s = summary(der, &path, n, key, issues)?;
        if s.not_after < ctx.now {
            warnings.push(
                key,
                format!(
                    "CA certificate {:?} in {} expired on {}: it verifies nothing",
                    s.subject,
                    path.display(),
                    date(s.not_after)
                ),
            );
        } else {
            expiry_warning("CA certificate", &s, &path, key, ctx, warnings);
        }
    }
    Some(CaBundle { file: path, certs })
}

/// The operating system's trust roots, for partner certificates on top of `external.ca_file`
/// (`extra`). With neither the edge could verify no partner (and the external listener could not
/// start): an error. With no system roots only `external.ca_file` is trusted: a warning.
pub(super) fn system_roots(
    extra: Option<&CaBundle>,
    ctx: &Context<'_>,
    issues: &mut Issues,
    warnings: &mut Issues,
) -> Vec<CertificateDer<'static>> {
    let loaded = rustls_native_certs::load_native_certs();
    if !loaded.certs.is_empty() || ctx.embedded {
        return loaded.certs;
    }
    let why = loaded
        .errors
        .first()
        .map(|e| format!(" ({e})"))
        .unwrap_or_default();
    let store = format!(
        "the operating system's trust store (/etc/ssl/certs/ca-certificates.crt from the ca-certificates \
         package, or SSL_CERT_FILE / SSL_CERT_DIR) holds no roots{why}"
    );
    match extra {
        Some(ca) => {
            let (roots, verb) = match ca.certs.len() {
                1 => ("1 root".to_owned(), "is"),
                n => (format!("{n} roots"), "are"),
            };
            warnings.push(
                "external.ca_file",
                format!(
                    "{store}, so only the {roots} in {} {verb} trusted: partners whose certificates chain to \
                     a public CA will be refused",
                    ca.file.display()
                ),
            );
        }
        None => issues.push(
            "external.ca_file",
            format!(
                "{store} and external.ca_file is not set: the edge could verify no partner's certificate \
                 (it could dial no partner, and the external listener cannot start); install \
                 ca-certificates or set external.ca_file"
            ),
        ),
    }
    loaded.certs
}

/// Whether `fqdn` is one of the certificate's DNS SANs (exact: no wildcard for federation names).
pub(super) fn san_covers(leaf: &CertSummary, fqdn: &str) -> bool {
    leaf.dns_names
        .iter()
        .any(|n| n.trim_end_matches('.').eq_ignore_ascii_case(fqdn))
}

fn read(path: &Path, key: &str, issues: &mut Issues) -> Option<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| issues.push(key, format!("cannot read {}: {e}", path.display())))
        .ok()
}

fn certificates(
    bytes: &[u8],
    path: &Path,
    key: &str,
    issues: &mut Issues,
) -> Option<Vec<CertificateDer<'static>>> {
    match CertificateDer::pem_slice_iter(bytes).collect::<Result<Vec<_>, _>>() {
        Ok(certs) if certs.is_empty() => {
            issues.push(key, format!("{} holds no PEM CERTIFICATE block", path.display()));
            None
        }
        Ok(certs) => Some(certs),
        Err(e) => {
            issues.push(key, format!("{} is not valid PEM: {e}", path.display()));
            None
        }
    }
}

/// The summary of the first certificate in PEM `bytes` (the local PKI's edge certificate, for its
/// expiry metric); `None` when it does not parse.
pub fn pem_summary(bytes: &[u8]) -> Option<CertSummary> {
    let der = CertificateDer::pem_slice_iter(bytes).next()?.ok()?;
    summary(&der, Path::new("<pem>"), 0, "pem", &mut Issues::default())
}

fn summary(
    der: &CertificateDer<'_>,
    path: &Path,
    n: usize,
    key: &str,
    issues: &mut Issues,
) -> Option<CertSummary> {
    let cert = match x509_parser::parse_x509_certificate(der.as_ref()) {
        Ok((_, c)) => c,
        Err(e) => {
            issues.push(
                key,
                format!(
                    "certificate {} in {} is not valid X.509: {e}",
                    n + 1,
                    path.display()
                ),
            );
            return None;
        }
    };
    let dns_names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|g| match g {
                GeneralName::DNSName(d) => Some((*d).to_owned()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let validity = cert.validity();
    Some(CertSummary {
        subject: cert.subject().to_string(),
        dns_names,
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    })
}

fn expiry_warning(
    what: &str,
    s: &CertSummary,
    path: &Path,
    key: &str,
    ctx: &Context<'_>,
    warnings: &mut Issues,
) {
    let days = (s.not_after - ctx.now) / DAY;
    if days < EXPIRY_WARNING_DAYS {
        warnings.push(
            key,
            format!(
                "{what} {:?} in {} expires on {} (in {days} days)",
                s.subject,
                path.display(),
                date(s.not_after)
            ),
        );
    }
    if s.not_before > ctx.now {
        warnings.push(
            key,
            format!(
                "{what} {:?} in {} is not valid before {}",
                s.subject,
                path.display(),
                date(s.not_before)
            ),
        );
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` for seconds since the Unix epoch (proleptic Gregorian calendar).
pub(crate) fn date(ts: i64) -> String {
    let (days, secs) = (ts.div_euclid(DAY), ts.rem_euclid(DAY));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(date(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(date(1_735_689_599), "2024-12-31 23:59:59 UTC");
        assert_eq!(date(-1), "1969-12-31 23:59:59 UTC");
    }
}
