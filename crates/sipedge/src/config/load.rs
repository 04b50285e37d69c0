//! Loading: the TOML text (a file, or the embedded default compiled into the binary) layered under the
//! environment overrides `SIPEDGE__SECTION__KEY` with the `config` crate, the merged tree checked
//! against the schema, deserialised into the file structs, then validated into a [`Config`]. Every
//! entry point returns either the config (with its warnings) or every issue found.

use std::collections::BTreeMap;
use std::path::Path;

use config::{Environment, File, FileFormat};

use super::file::FileConfig;
use super::schema::{self, EnvOverrides};
use super::settings::{Config, ConfigSource};
use super::{validate, Invalid, Issue, Issues};

/// Environment variables `SIPEDGE__SECTION__KEY` override `[section] key` of the file; a list is
/// written comma-separated (`SIPEDGE__EDGE__SIP_DOMAINS=a.example,b.example`).
pub const ENV_PREFIX: &str = "SIPEDGE";
const ENV_SEPARATOR: &str = "__";

/// The configuration `sipedge run` uses without `--config`: loopback listeners, self-signed
/// certificates generated at start, everything else at its default.
pub const EMBEDDED_DEFAULT_TOML: &str = include_str!("default.toml");

/// Printed (loudly) whenever the embedded default is in use.
pub const EMBEDDED_DEFAULT_WARNING: &str =
    "RUNNING ON THE EMBEDDED DEFAULT CONFIGURATION: loopback listeners only, \
     a local CA and certificates generated on first start, no federation partners. For local testing only; \
     give a production configuration with --config FILE (start from deploy/sipedge.toml).";

impl Config {
    /// Loads `path`, overridden by the process environment.
    pub fn load(path: &Path) -> Result<Config, Vec<Issue>> {
        Config::check(path).map_err(|i| i.errors)
    }

    /// Loads `path` with the given environment (name, value) pairs instead of the process's.
    #[cfg(test)]
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, Vec<Issue>> {
        Config::check_with_env(path, env).map_err(|i| i.errors)
    }

    /// Like [`Config::load`], but an invalid file keeps the warnings found on the way
    /// (`check-config` prints them with the errors).
    pub fn check(path: &Path) -> Result<Config, Invalid> {
        Config::check_with_env(path, process_env())
    }

    pub fn check_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, Invalid> {
        let source = ConfigSource::File(path.to_path_buf());
        let text = std::fs::read_to_string(path).map_err(|e| {
            Invalid::errors(vec![Issue {
                key: path.display().to_string(),
                problem: format!("cannot read the file: {e}"),
            }])
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        load_text(&text, source, Some(base), env)
    }

    /// The embedded default, overridden by the process environment.
    pub fn embedded_default() -> Result<Config, Vec<Issue>> {
        Config::check_embedded_default().map_err(|i| i.errors)
    }

    /// Like [`Config::embedded_default`], keeping the warnings of an invalid result.
    pub fn check_embedded_default() -> Result<Config, Invalid> {
        load_text(EMBEDDED_DEFAULT_TOML, ConfigSource::Embedded, None, process_env())
    }

    #[cfg(test)]
    pub fn embedded_default_with_env(
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, Vec<Issue>> {
        load_text(EMBEDDED_DEFAULT_TOML, ConfigSource::Embedded, None, env).map_err(|i| i.errors)
    }
}

/// The process environment (names and values that are not UTF-8 are skipped or converted lossily; a
/// value that is not UTF-8 then fails validation like any other bad value).
fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
        .collect()
}

fn load_text(
    text: &str,
    source: ConfigSource,
    base: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, Invalid> {
    let mut issues = Issues::default();
    let file_key = source.to_string();
    if let Err(e) = text.parse::<toml::Table>() {
        let at = e
            .span()
            .map(|s| line_col(text, s.start))
            .map(|(l, c)| format!(" at line {l}, column {c}"));
        let message = e.message().replace('\n', " ");
        issues.push(
            &file_key,
            format!("TOML syntax error{}: {}", at.unwrap_or_default(), message.trim()),
        );
        return Err(Invalid::errors(issues.into_vec()));
    }
    let (vars, overrides) = env_overrides(env, &mut issues);
    let env_source = Environment::with_prefix(ENV_PREFIX)
        .prefix_separator(ENV_SEPARATOR)
        .separator(ENV_SEPARATOR)
        .source(Some(vars));
    let layered = config::Config::builder()
        .add_source(File::from_str(text, FileFormat::Toml))
        .add_source(env_source)
        .build();
    let mut tree = match layered {
        Ok(c) => c.cache,
        Err(e) => {
            issues.push(&file_key, e.to_string().replace('\n', " "));
            return Err(Invalid::errors(issues.into_vec()));
        }
    };
    schema::check(&mut tree, &overrides, &mut issues);
    let file: FileConfig = match tree.try_deserialize() {
        Ok(f) => f,
        Err(e) => {
            // The schema walk removed what serde would refuse; this is a mismatch between the two.
            issues.push(&file_key, e.to_string());
            return Err(Invalid::errors(issues.into_vec()));
        }
    };
    validate::build(file, source, base, issues)
}

/// Picks the `SIPEDGE__…` variables: (name → value) for the `config` crate, and (key path → name,
/// value) for the schema walk. A name that does not spell a key path is an issue and is dropped.
fn env_overrides(
    env: impl IntoIterator<Item = (String, String)>,
    issues: &mut Issues,
) -> (config::Map<String, String>, EnvOverrides) {
    let prefix = format!("{ENV_PREFIX}{ENV_SEPARATOR}").to_ascii_lowercase();
    let mut vars = config::Map::new();
    let mut overrides = BTreeMap::new();
    for (name, value) in env {
        let lower = name.to_ascii_lowercase();
        let Some(rest) = lower.strip_prefix(&prefix) else {
            continue;
        };
        let segments: Vec<&str> = rest.split(ENV_SEPARATOR).collect();
        let well_formed = segments.iter().all(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
        if !well_formed {
            issues.push(
                format!("environment variable {name}"),
                format!(
                    "does not name a key: write {ENV_PREFIX}__SECTION__KEY, e.g. {ENV_PREFIX}__EDGE__FQDN"
                ),
            );
            continue;
        }
        overrides.insert(segments.join("."), (name.clone(), value.clone()));
        vars.insert(name, value);
    }
    (vars, overrides)
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
