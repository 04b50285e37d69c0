//! `sipedge check-config FILE` (design brief §6): loads and validates a configuration exactly as
//! `sipedge run` would (file + `SIPEDGE__…` environment overrides) and prints a stable, greppable
//! report on stdout: `warning: <key>: <text>` lines and `ok: <FILE> is valid (<n> warnings)`, exit 0;
//! or every problem as `error: <key>: <problem>` and `invalid: <FILE> (<n> errors)`, exit 1.
//! `--embedded-default` checks the configuration compiled into the binary instead of a file.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::config::{Config, Issue, EMBEDDED_DEFAULT_WARNING};

/// Checks `file`, or the embedded default when `file` is `None`.
pub fn run(file: Option<&Path>) -> ExitCode {
    let (name, loaded) = match file {
        Some(path) => (path.display().to_string(), Config::load(path)),
        None => ("<embedded default>".to_owned(), Config::embedded_default()),
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
pub fn report(name: &str, embedded: bool, loaded: &Result<Config, Vec<Issue>>) -> (String, bool) {
    let mut text = String::new();
    match loaded {
        Ok(config) => {
            let mut warnings: Vec<String> = config.warnings().iter().map(one_line).collect();
            if embedded {
                warnings.insert(0, format!("config: {EMBEDDED_DEFAULT_WARNING}"));
            }
            for w in &warnings {
                text.push_str(&format!("warning: {w}\n"));
            }
            text.push_str(&format!("ok: {name} is valid ({} warnings)\n", warnings.len()));
            (text, true)
        }
        Err(errors) => {
            for e in errors {
                text.push_str(&format!("error: {}\n", one_line(e)));
            }
            text.push_str(&format!("invalid: {name} ({} errors)\n", errors.len()));
            (text, false)
        }
    }
}

/// One issue on one line, whatever its text holds.
fn one_line(i: &Issue) -> String {
    i.to_string().replace(['\r', '\n'], " ")
}
