//! `sipedge check-config`, black-box: the real binary on the repository's example configurations
//! (each must be valid with exactly the warnings it declares in `# expect-warning: <key>` lines), on
//! the embedded default, and on every single-key mutation of `deploy/sipedge.toml` (each key renamed
//! in turn, keys inside arrays of tables included: exit 1 and an error naming the renamed key). The
//! certificates the examples name are generated here (rcgen) and supplied through the environment
//! overrides `SIPEDGE__<SECTION>__<KEY>`.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tempfile::TempDir;

/// A CA and one leaf for `fqdn`, as PEM files in a temporary directory.
struct Certs {
    dir: TempDir,
}

impl Certs {
    /// One leaf for both listeners, naming every name in `fqdns` (the first is the CN).
    fn new(fqdns: &[String]) -> Certs {
        let fqdn = fqdns.first().map_or("edge.test", String::as_str);
        let dir = tempfile::tempdir().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "check-config test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);
        let mut leaf = CertificateParams::new(fqdns.to_vec()).unwrap();
        leaf.distinguished_name.push(DnType::CommonName, fqdn);
        let key = KeyPair::generate().unwrap();
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca_pem).unwrap();
        std::fs::write(dir.path().join("edge.crt"), format!("{}{ca_pem}", cert.pem())).unwrap();
        std::fs::write(dir.path().join("edge.key"), key.serialize_pem()).unwrap();
        Certs { dir }
    }

    /// The environment overrides pointing every certificate key at the generated files.
    fn env(&self) -> Vec<(String, PathBuf)> {
        let d = self.dir.path();
        let mut env = Vec::new();
        for side in ["INTERNAL", "EXTERNAL"] {
            env.push((format!("SIPEDGE__{side}__CERT_FILE"), d.join("edge.crt")));
            env.push((format!("SIPEDGE__{side}__KEY_FILE"), d.join("edge.key")));
            env.push((format!("SIPEDGE__{side}__CA_FILE"), d.join("ca.pem")));
        }
        env
    }
}

struct Outcome {
    code: i32,
    stdout: String,
}

fn check_config(args: &[&str], env: &[(String, PathBuf)]) -> Outcome {
    let bin = sipedge_tests::sipedge_bin();
    let mut cmd = Command::new(&bin);
    cmd.arg("check-config").args(args);
    for (name, _) in std::env::vars_os() {
        if name
            .to_string_lossy()
            .to_ascii_uppercase()
            .starts_with("SIPEDGE__")
        {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot start {} ({e}); build it first: cargo build -p sipedge",
            bin.display()
        )
    });
    let stdout = String::from_utf8(out.stdout).unwrap();
    Outcome {
        code: out.status.code().unwrap(),
        stdout,
    }
}

/// Every TOML file in the repository with an `[edge]` table (the embedded default excepted: it is
/// checked with `--embedded-default`).
fn example_configs() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    walk(&path, out);
                }
            } else if name.ends_with(".toml") && !path.ends_with("crates/sipedge/src/config/default.toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                if text.parse::<toml::Table>().is_ok_and(|t| t.contains_key("edge")) {
                    out.push(path);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&sipedge_tests::workspace_root(), &mut out);
    out.sort();
    out
}

/// `edge.fqdn` and, when set, `internal.fqdn`: the names the listeners' certificates must carry.
fn edge_fqdns(path: &Path) -> Vec<String> {
    let table: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
    let mut names = vec![table["edge"]["fqdn"].as_str().unwrap().to_owned()];
    if let Some(internal) = table
        .get("internal")
        .and_then(|t| t.get("fqdn"))
        .and_then(|v| v.as_str())
    {
        names.push(internal.to_owned());
    }
    names
}

/// The keys of the `warning:` lines, in order.
fn warning_keys(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("warning: "))
        .map(|l| l.split(": ").next().unwrap().to_owned())
        .collect()
}

#[test]
fn every_example_config_is_valid_with_only_its_expected_warnings() {
    let examples = example_configs();
    assert!(
        examples.iter().any(|p| p.ends_with("deploy/sipedge.toml")),
        "{examples:?}"
    );
    for path in examples {
        let certs = Certs::new(&edge_fqdns(&path));
        let text = std::fs::read_to_string(&path).unwrap();
        let expected: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect-warning: "))
            .map(|k| k.trim().to_owned())
            .collect();
        let out = check_config(&[path.to_str().unwrap()], &certs.env());
        assert_eq!(out.code, 0, "{}:\n{}", path.display(), out.stdout);
        assert_eq!(
            warning_keys(&out.stdout),
            expected,
            "{}:\n{}",
            path.display(),
            out.stdout
        );
        let last = out.stdout.lines().last().unwrap();
        let n = match expected.len() {
            1 => "1 warning".to_owned(),
            n => format!("{n} warnings"),
        };
        assert_eq!(last, format!("ok: {} is valid ({n})", path.display()));
    }
}

#[test]
fn the_embedded_default_is_valid() {
    let out = check_config(&["--embedded-default"], &[]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    let warnings = warning_keys(&out.stdout);
    assert_eq!(
        warnings.first().map(String::as_str),
        Some("config"),
        "the loud warning first: {}",
        out.stdout
    );
    assert!(out.stdout.contains("EMBEDDED DEFAULT"));
    let n = match warnings.len() {
        1 => "1 warning".to_owned(),
        n => format!("{n} warnings"),
    };
    assert_eq!(
        out.stdout.lines().last().unwrap(),
        format!("ok: <embedded default> is valid ({n})")
    );
}

#[test]
fn errors_are_listed_one_per_line_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[edge]\nfqdn = \"edge.example.com\"\nsip_domains = [\"example.com\"]\n\
         [federation]\nallowed = [{ domain = \"a.example\" }, { domain = \"b.example\" }, { domain = \"exa mple.com\" }]\n",
    )
    .unwrap();
    let env = vec![("SIPEDGE__EDGE__FQDNX".to_owned(), PathBuf::from("x"))];
    let out = check_config(&[path.to_str().unwrap()], &env);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines.contains(
        &"error: federation.allowed[2].domain: \"exa mple.com\" contains a character that is not a letter, digit, '-', '_' or '.'"
    ));
    assert!(lines.iter().any(|l| l
        .starts_with("error: edge.fqdnx: unknown key (set by environment variable SIPEDGE__EDGE__FQDNX)")));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("error: internal.cert_file: missing")));
    let errors = lines.iter().filter(|l| l.starts_with("error: ")).count();
    assert!(errors >= 8, "{}", out.stdout);
    assert_eq!(
        *lines.last().unwrap(),
        format!("invalid: {} ({errors} errors)", path.display())
    );

    let missing = check_config(&["/nonexistent/sipedge.toml"], &[]);
    assert_eq!(missing.code, 1);
    assert!(
        missing
            .stdout
            .starts_with("error: /nonexistent/sipedge.toml: cannot read the file"),
        "{}",
        missing.stdout
    );
}

/// Every key path of a table: `edge.fqdn`, `federation.allowed[1].proxy_fqdn`, and the tables too.
fn key_paths(table: &toml::Table, out: &mut Vec<Vec<Step>>, at: &[Step]) {
    for (key, value) in table {
        let mut here = at.to_vec();
        here.push(Step::Key(key.clone()));
        out.push(here.clone());
        match value {
            toml::Value::Table(t) => key_paths(t, out, &here),
            toml::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let toml::Value::Table(t) = item {
                        let mut inner = here.clone();
                        inner.push(Step::Index(i));
                        key_paths(t, out, &inner);
                    }
                }
            }
            _ => {}
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn render(path: &[Step]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Key(k) if s.is_empty() => s.push_str(k),
            Step::Key(k) => s.push_str(&format!(".{k}")),
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Renames the last key of `path` in `table` to `<key>_renamed`.
fn rename(table: &mut toml::Table, path: &[Step]) {
    let (last, parents) = path.split_last().unwrap();
    let mut cur = table;
    let mut steps = parents.iter().peekable();
    while let Some(step) = steps.next() {
        let Step::Key(k) = step else { unreachable!() };
        cur = match (cur.get_mut(k).unwrap(), steps.peek()) {
            (toml::Value::Array(items), Some(Step::Index(i))) => {
                steps.next();
                items[*i].as_table_mut().unwrap()
            }
            (toml::Value::Table(t), _) => t,
            (v, _) => panic!("unexpected {v:?}"),
        };
    }
    let Step::Key(k) = last else { unreachable!() };
    let value = cur.remove(k).unwrap();
    cur.insert(format!("{k}_renamed"), value);
}

#[test]
fn renaming_any_key_of_the_example_is_an_error_naming_it() {
    let example = sipedge_tests::workspace_root().join("deploy/sipedge.toml");
    let original: toml::Table = std::fs::read_to_string(&example).unwrap().parse().unwrap();
    let certs = Certs::new(&edge_fqdns(&example));
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    key_paths(&original, &mut paths, &[]);
    assert!(paths.len() > 50, "{} key paths", paths.len());
    assert!(paths
        .iter()
        .any(|p| render(p) == "federation.allowed[1].proxy_fqdn"));
    for path in &paths {
        let mut mutated = original.clone();
        rename(&mut mutated, path);
        let file = dir.path().join("mutated.toml");
        std::fs::write(&file, toml::to_string(&mutated).unwrap()).unwrap();
        let out = check_config(&[file.to_str().unwrap()], &certs.env());
        let renamed = format!("{}_renamed", render(path));
        assert_eq!(
            out.code,
            1,
            "renaming {} must be an error:\n{}",
            render(path),
            out.stdout
        );
        let wanted = format!("error: {renamed}: unknown key");
        assert!(
            out.stdout.lines().any(|l| l.starts_with(&wanted)),
            "{wanted:?} missing:\n{}",
            out.stdout
        );
    }
}

/// `check-config` exit 0 means `run` starts: a private key that is not the certificate's is an error
/// naming the key, in plain words; the warnings found on the way (here Timer C under 3 minutes, and
/// the example's IM filter blocking push, a cross-section one) are still printed; one error is
/// "1 error".
#[test]
fn a_key_that_does_not_belong_to_its_certificate_is_an_error() {
    let example = sipedge_tests::workspace_root().join("deploy/sipedge.toml");
    let certs = Certs::new(&edge_fqdns(&example));
    let other_key = certs.dir.path().join("other.key");
    std::fs::write(&other_key, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let mut env: Vec<(String, PathBuf)> = certs
        .env()
        .into_iter()
        .filter(|(k, _)| k != "SIPEDGE__EXTERNAL__KEY_FILE")
        .collect();
    env.push(("SIPEDGE__EXTERNAL__KEY_FILE".to_owned(), other_key.clone()));
    // A warning from a section that validated is printed with the error.
    env.push((
        "SIPEDGE__LIMITS__INVITE_TIMEOUT_MS".to_owned(),
        PathBuf::from("60000"),
    ));
    let out = check_config(&[example.to_str().unwrap()], &env);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let crt = certs.dir.path().join("edge.crt");
    assert_eq!(
        lines,
        [
            format!(
                "error: external.key_file: the private key in {} does not belong to the certificate in {} \
                 (external.cert_file): its public key is not the certificate's; give the key the certificate \
                 was issued for",
                other_key.display(),
                crt.display()
            ),
            "warning: limits.invite_timeout_ms: 60000 ms is below 3 minutes (RFC 3261 Timer C > 3 min; \
             default 181000): mobile endpoints have 60 s to answer an INVITE (desktops 15 s), and a call still \
             ringing when this expires is cancelled with 408"
                .to_owned(),
            // The example's expected cross-section warning, kept with the error (issue 16, item 10).
            "warning: im_filter.blocked_prefixes: the IM filter blocks \"http:\" and \"https:\" with action \
             block: push requests will be rejected (Push Notification request was rejected); remove them from \
             blocked_prefixes or set action = \"warn\""
                .to_owned(),
            format!("invalid: {} (1 error)", example.display()),
        ],
        "{}",
        out.stdout
    );
}

/// Partner certificates are verified against the operating system's trust store (here the one
/// SSL_CERT_FILE names, as `update-ca-certificates` would maintain it) plus `external.ca_file`;
/// check-config says how many of each. No system roots: a warning with a ca_file, an error without.
#[test]
fn partner_roots_are_the_system_store_plus_ca_file() {
    let example = sipedge_tests::workspace_root().join("deploy/sipedge.toml");
    let certs = Certs::new(&edge_fqdns(&example));
    let ca = certs.dir.path().join("ca.pem");
    let store = |file: &Path| {
        let mut env = certs.env();
        env.push(("SSL_CERT_FILE".to_owned(), file.to_path_buf()));
        env.push(("SSL_CERT_DIR".to_owned(), PathBuf::new()));
        env
    };
    let out = check_config(&[example.to_str().unwrap()], &store(&ca));
    assert_eq!(out.code, 0, "{}", out.stdout);
    let trust: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("trust: ")).collect();
    assert_eq!(
        trust,
        [format!(
            "trust: external: partner certificates are verified against 1 root from the operating system's \
             trust store and 1 root from {} (external.ca_file)",
            ca.display()
        )]
    );

    let nowhere = certs.dir.path().join("no-such-bundle.crt");
    let out = check_config(&[example.to_str().unwrap()], &store(&nowhere));
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(
        warning_keys(&out.stdout),
        ["external.ca_file", "im_filter.blocked_prefixes"],
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!(
            "), so only the 1 root in {} is trusted: partners whose certificates chain to a public CA will be \
             refused",
            ca.display()
        )),
        "{}",
        out.stdout
    );

    let without_ca_file: Vec<(String, PathBuf)> = store(&nowhere)
        .into_iter()
        .filter(|(k, _)| k != "SIPEDGE__EXTERNAL__CA_FILE")
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("no-ca-file.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    std::fs::write(
        &file,
        text.replace("ca_file = \"/etc/sipedge/tls/partner-roots.pem\"\n", ""),
    )
    .unwrap();
    let out = check_config(&[file.to_str().unwrap()], &without_ca_file);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let errors: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{}", out.stdout);
    assert!(
        errors[0].starts_with(
            "error: external.ca_file: the operating system's trust store (/etc/ssl/certs/ca-certificates.crt \
             from the ca-certificates package, or SSL_CERT_FILE / SSL_CERT_DIR) holds no roots ("
        ) && errors[0].ends_with(
                ") and external.ca_file is not set: the edge could verify no partner's certificate \
                 (it could dial no partner, and the external listener cannot start); install ca-certificates \
                 or set external.ca_file"
            ),
        "{}",
        out.stdout
    );
}
