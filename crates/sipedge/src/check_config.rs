//! `sipedge check-config FILE`: loads and validates a configuration exactly as `sipedge run` would
//! (file + `SIPEDGE__…` environment overrides) and prints a stable, greppable report on stdout:
//! `warning: <key>: <text>` lines and `ok: <FILE> is valid (<n> warnings)`, exit 0; or every
//! problem as `error: <key>: <problem>`, the warnings found on the way, and
//! `invalid: <FILE> (<n> errors)`, exit 1. Counts are singular for one ("1 error", "1 warning"). A
//! valid configuration also gets one `trust: external: …` line before the `ok:` line: how many
//! roots of the operating system's store and of `external.ca_file` partner certificates are
//! verified against. `--embedded-default` checks the configuration compiled into the binary
//! instead of a file.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::config::{Config, Invalid, Issue, EMBEDDED_DEFAULT_WARNING};

/// Checks `file`, or the embedded default when `file` is `None`.
pub fn run(file: Option<&Path>) -> ExitCode {
    let (name, loaded) = match file {
        Some(path) => (path.display().to_string(), Config::check(path)),
        None => ("<embedded default>".to_owned(), Config::check_embedded_default()),
    };
    let (text, ok) = report(&name, file.is_none(), &loaded);
    let mut out = std::io::stdout().lock();
    if out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_err() {
        return ExitCode::from(2);
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The report for one load, and whether the configuration is valid.
pub fn report(name: &str, embedded: bool, loaded: &Result<Config, Invalid>) -> (String, bool) {
    let mut text = String::new();
    let (errors, found) = match loaded {
        Ok(config) => (&[][..], config.warnings()),
        Err(invalid) => (&invalid.errors[..], &invalid.warnings[..]),
    };
    let mut warnings: Vec<String> = found.iter().map(one_line).collect();
    if embedded {
        warnings.insert(0, format!("config: {EMBEDDED_DEFAULT_WARNING}"));
    }
    for e in errors {
        text.push_str(&format!("error: {}\n", one_line(e)));
    }
    for w in &warnings {
        text.push_str(&format!("warning: {w}\n"));
    }
    if let Ok(config) = loaded {
        text.push_str(&format!("trust: {}\n", partner_roots(config)));
        let n = count(warnings.len(), "warning");
        text.push_str(&format!("ok: {name} is valid ({n})\n"));
    } else {
        text.push_str(&format!("invalid: {name} ({})\n", count(errors.len(), "error")));
    }
    (text, loaded.is_ok())
}

/// What partner certificates are verified against: the system's roots and `external.ca_file`'s.
fn partner_roots(config: &Config) -> String {
    let external = config.external();
    let system = count(external.system_roots.len(), "root");
    let mut text = format!(
        "external: partner certificates are verified against {system} from the operating system's trust store"
    );
    if let Some(ca) = &external.extra_roots {
        let extra = count(ca.certs.len(), "root");
        text.push_str(&format!(
            " and {extra} from {} (external.ca_file)",
            ca.file.display()
        ));
    }
    text
}

use crate::log::count;

/// One issue on one line, whatever its text holds.
fn one_line(i: &Issue) -> String {
    i.to_string().replace(['\r', '\n'], " ")
}
