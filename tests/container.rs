//! Issue 18, the image, black-box: `scripts/image.sh` builds `localhost/sipedge:latest` (FROM
//! scratch: the binary, its C libraries, the CA bundle) and podman runs it as the README says —
//! `--read-only --cap-drop=ALL --security-opt no-new-privileges`, non-root, the configuration and
//! certificates mounted read-only, host networking on loopback. `/readyz` answers 200 through the
//! image's own `sipedge health` and from the host; `sipedge send` from the host reaches the edge in
//! the container and a partner on the host answers; a configuration change and `podman kill
//! --signal HUP` is applied (generation 2 read back from `/metrics`); with `run --watch` and the
//! configuration's directory mounted (as in Kubernetes), a file renamed over the configuration on
//! the host is applied without a signal (generation 3); `podman stop` drains and the container
//! exits 0 within its grace period.
//!
//! The image holds the binary of this test run's profile (`SIPEDGE_BIN`): `scripts/image.sh` without
//! it builds the release binary, as an operator does. podman runs with a `containers.conf` of the
//! test's own (`CONTAINERS_CONF`: runc, cgroupfs, ulimits below this machine's hard limits), which
//! changes nothing on the host. Skipped, saying so, only where podman is not installed; CI installs
//! it (scripts/test.sh).

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

// Not every harness export is used here.
#[allow(unused_imports)]
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::http;
use support::{EdgeOpts, TestPki, TlsUas};

const WAIT: Duration = Duration::from_secs(15);
const NAME: &str = "sipedge-test-container";

fn podman(conf: &Path, args: &[&str]) -> Output {
    Command::new("podman")
        .env("CONTAINERS_CONF", conf)
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The address after `prefix` in the container's output (`listening internal sip+tls ADDR`).
fn printed(conf: &Path, prefix: &str) -> SocketAddr {
    let deadline = Instant::now() + WAIT;
    loop {
        let logs = text(&podman(conf, &["logs", NAME]));
        if let Some(a) = logs.lines().find_map(|l| l.strip_prefix(prefix)) {
            return a.trim().parse().unwrap();
        }
        assert!(Instant::now() < deadline, "no {prefix:?} line:\n{logs}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The container, removed on drop.
struct Running<'a>(&'a Path);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let _ = podman(self.0, &["rm", "-f", "-t", "0", NAME]);
    }
}

#[test]
fn the_image_runs_read_only_non_root_serves_reloads_and_drains() {
    if Command::new("podman").arg("--version").output().is_err() {
        // CI installs podman (scripts/test.sh): a missing engine there is a failure, not a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "podman is not installed, and CI must run this test"
        );
        eprintln!("SKIPPED: podman is not installed (apt-get install podman runc; scripts/test.sh does)");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    // Below this machine's hard limits: runc cannot raise a limit, only lower it.
    let conf = work.path().join("containers.conf");
    std::fs::write(
        &conf,
        "[containers]\ndefault_ulimits = [\"nofile=4096:4096\", \"nproc=4096:4096\"]\n\
         [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
    )
    .unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let build = Command::new("bash")
        .arg(repo.join("scripts/image.sh"))
        .env("SIPEDGE_BIN", sipedge_tests::sipedge_bin())
        .env("CONTAINERS_CONF", &conf)
        .output()
        .unwrap();
    assert!(build.status.success(), "image.sh failed:\n{}", text(&build));
    println!("{}", text(&build).lines().last().unwrap_or_default());

    // A production configuration: the test PKI's files, mounted read-only at the same paths.
    let pki = TestPki::new();
    let fe_uas = TlsUas::ok(&pki.fe, &pki.internal_ca.cert, "t");
    let partner = TlsUas::ok(&pki.partner, &pki.internal_ca.cert, "t");
    // The configuration's directory is mounted (not the file), as a ConfigMap is: a file renamed
    // over it on the host is seen inside.
    let conf_dir = work.path().join("conf");
    std::fs::create_dir(&conf_dir).unwrap();
    let config = conf_dir.join("sipedge.toml");
    std::fs::write(&config, EdgeOpts::new(fe_uas.port(), partner.port()).render(&pki)).unwrap();
    let pki_dir = pki.path().display().to_string();
    let _ = podman(&conf, &["rm", "-f", "-t", "0", NAME]);
    let run = podman(
        &conf,
        &[
            "run",
            "-d",
            "--name",
            NAME,
            "--network",
            "host",
            "--read-only",
            "--cap-drop=ALL",
            "--security-opt",
            "no-new-privileges",
            "--health-cmd",
            "none",
            "-v",
            &format!("{}:/etc/sipedge/conf:ro", conf_dir.display()),
            "-v",
            &format!("{pki_dir}:{pki_dir}:ro"),
            "localhost/sipedge:latest",
            "run",
            "--config",
            "/etc/sipedge/conf/sipedge.toml",
            "--watch",
        ],
    );
    assert!(run.status.success(), "podman run failed:\n{}", text(&run));
    let _running = Running(&conf);
    let internal = printed(&conf, "listening internal sip+tls ");
    let metrics = printed(&conf, "metrics http ");

    // Non-root, and /readyz 200 through the image's own health subcommand and from the host.
    let user = podman(&conf, &["inspect", NAME, "--format", "{{.Config.User}}"]);
    assert_eq!(String::from_utf8_lossy(&user.stdout).trim(), "10001:10001");
    let health = podman(
        &conf,
        &[
            "exec",
            NAME,
            "/usr/local/bin/sipedge",
            "health",
            "--url",
            &format!("http://{metrics}/readyz"),
        ],
    );
    assert!(health.status.success(), "{}", text(&health));
    assert_eq!(http::get(metrics, "/readyz").unwrap().0, 200);

    // sipedge send from the host, through the edge in the container, to the partner on the host.
    let send = Command::new(sipedge_tests::sipedge_bin())
        .args([
            "send",
            "--edge",
            &internal.to_string(),
            "--fqdn",
            "edge-int.corp.test",
            "--to",
            "sip:bob@partner.test",
        ])
        .args(["--from", "sip:alice@corp.test", "--timeout-ms", "10000"])
        .arg("--cert")
        .arg(&pki.fe.cert_file)
        .arg("--key")
        .arg(&pki.fe.key_file)
        .arg("--ca")
        .arg(&pki.internal_ca.file)
        .output()
        .unwrap();
    assert!(send.status.success(), "{}", text(&send));
    assert!(
        String::from_utf8_lossy(&send.stdout).contains("SIP/2.0 200 OK"),
        "{}",
        text(&send)
    );

    // A configuration change, then SIGHUP through podman: generation 2.
    let mut changed = std::fs::read_to_string(&config).unwrap();
    changed.push_str("\n[[federation.blocked]]\ndomain = \"blocked.test\"\n");
    std::fs::write(&config, changed).unwrap();
    let hup = podman(&conf, &["kill", "--signal", "HUP", NAME]);
    assert!(hup.status.success(), "{}", text(&hup));
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, body) = http::get(metrics, "/metrics").unwrap();
        if body.lines().any(|l| l == "sipedge_config_generation 2") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no reload:\n{}",
            text(&podman(&conf, &["logs", NAME]))
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // No signal: a new file renamed over the configuration on the host (an editor's save, a
    // ConfigMap's swap) is seen by the watch inside the container: generation 3.
    let mut again = std::fs::read_to_string(&config).unwrap();
    again.push_str("\n[[federation.blocked]]\ndomain = \"blocked2.test\"\n");
    let aside = conf_dir.join(".sipedge.toml.new");
    std::fs::write(&aside, again).unwrap();
    std::fs::rename(&aside, &config).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, body) = http::get(metrics, "/metrics").unwrap();
        if body.lines().any(|l| l == "sipedge_config_generation 3") {
            assert!(
                body.lines().any(|l| l == "sipedge_config_watched_files 7"),
                "{body}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the watch did not apply the renamed file:\n{}",
            text(&podman(&conf, &["logs", NAME]))
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The records: config_changed, then reload_applied with its trigger (written by the log
    // thread, a moment after the metrics show the generation).
    let deadline = Instant::now() + WAIT;
    loop {
        let logs = text(&podman(&conf, &["logs", NAME]));
        if logs.contains("\"event\":\"config_changed\"") && logs.contains("\"trigger\":\"watch\"") {
            break;
        }
        assert!(Instant::now() < deadline, "{logs}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // podman stop: SIGTERM, the drain, exit 0 within the grace period.
    let t0 = Instant::now();
    let stop = podman(&conf, &["stop", "-t", "15", NAME]);
    let took = t0.elapsed();
    assert!(stop.status.success(), "{}", text(&stop));
    let code = podman(&conf, &["inspect", NAME, "--format", "{{.State.ExitCode}}"]);
    assert_eq!(
        String::from_utf8_lossy(&code.stdout).trim(),
        "0",
        "{}",
        text(&podman(&conf, &["logs", NAME]))
    );
    assert!(took < Duration::from_secs(12), "stopped after {took:?}");
    println!("podman stop: drained and exited 0 in {took:?}");
}
