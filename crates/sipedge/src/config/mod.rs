//! The edge's configuration: a TOML file through the `config` crate, overridden by environment
//! variables `SIPEDGE__SECTION__KEY`, checked whole into an immutable [`Config`]. Loading never
//! stops at the first problem: every unknown key, wrong type, bad value, unreadable certificate
//! and federation-policy contradiction comes back as one [`Issue`] naming its key path, and what
//! is valid but likely to bite comes back as warnings on the [`Config`].
//!
//! - `file.rs`: the serde structs of the file and the defaults of optional keys.
//! - `schema.rs`: the key schema; unknown keys and types, all at once; environment conversion.
//! - `load.rs`: file + environment → tree → file structs → [`Config`]; the embedded default.
//! - `validate.rs`: the validation driver and the shared value checks; `sections.rs`: the sections.
//! - `federation.rs`: the `federation_policy::PolicyBuilder` and its errors as key paths.
//! - `tls.rs`: certificate chains, keys and CA bundles (PEM, X.509 SANs and expiry).
//! - `local_pki.rs`: the embedded default's CA and certificates in the local state directory;
//!   `pki_error.rs`: its errors.
//! - `warnings.rs`: push routing, the IM filter and partner discovery checks.
//! - `pool.rs`: `[pool]` (Redis URL, password file, replica name, the Redis-down mode).
//! - `settings.rs`: the validated types.

mod federation;
mod file;
mod load;
pub mod local_pki;
mod pki_error;
mod pool;
mod schema;
mod sections;
mod settings;
pub(crate) mod tls;
mod validate;
mod warnings;

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_warnings;

use std::fmt;

pub use load::EMBEDDED_DEFAULT_WARNING;
pub use settings::{
    CaBundle, CertSummary, Config, LimitSettings, PoolSettings, RedisDown, StaticHost, TlsIdentity,
};
pub(crate) use tls::date;

/// One configuration error or warning: the key path it is about and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// `edge.fqdn`, `federation.allowed[2].domain`; the file's path for a file-level problem.
    pub key: String,
    pub problem: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

/// A configuration that did not validate: every error, and the warnings found on the way (the
/// sections that validated still warn; `check-config` prints both).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invalid {
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
}

impl Invalid {
    pub(crate) fn errors(errors: Vec<Issue>) -> Invalid {
        Invalid {
            errors,
            warnings: Vec::new(),
        }
    }
}

/// Collects issues while loading.
#[derive(Debug, Default)]
pub(crate) struct Issues(Vec<Issue>);

impl Issues {
    pub fn push(&mut self, key: impl Into<String>, problem: impl Into<String>) {
        self.0.push(Issue {
            key: key.into(),
            problem: problem.into(),
        });
    }

    /// Whether something was already reported at `key` or below it (so "missing" is not added twice).
    pub fn covers(&self, key: &str) -> bool {
        self.0.iter().any(|i| {
            i.key == key
                || i.key
                    .strip_prefix(key)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<Issue> {
        self.0
    }
}
