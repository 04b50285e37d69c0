//! Issue 18, configuration and certificates that follow their files: the real `sipedge run --watch`
//! on files laid out as Kubernetes lays them out, changed the way kubelet, cert-manager and editors
//! change them, with no signal sent. A ConfigMap-style swap of the `..data` symlink is applied (read
//! back from traffic on an open connection and from `/metrics`) and the watch follows the new
//! directory to the next swap; a Secret-style rotation of the external certificate is presented by
//! the next handshake (checked by serial against the `certificate_replaced` record) while the
//! connection opened before keeps its session and carries a request; a configuration caught
//! half-written is refused (the running one stays and serves) and the completed file is applied.
//!
//! Each test has its own edge, files and peers; every wait is bounded; loopback only.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::front_end::{fe_client, fe_message, partner_message};
use support::pki::Identity;
use support::sip;
use support::{Edge, EdgeOpts, TestPki, TlsPeer, TlsUas};

const WAIT: Duration = Duration::from_secs(5);
/// From the file change to the reload's record: the quiet time (250 ms), then a reload that
/// validates the whole file (the system trust store included) and rebuilds TLS.
const RELOAD_WAIT: Duration = Duration::from_secs(15);

fn uas_ok(pki: &TestPki, identity: &Identity) -> TlsUas {
    TlsUas::ok(identity, &pki.internal_ca.cert, "uas-tag")
}

/// A kubelet-style volume: `dir/..<stamp>/` holds the files, `dir/..data` points at it and each
/// `dir/<name>` at `..data/<name>`. An update is a new stamped directory, a new `..data_tmp` link
/// renamed over `..data` (one atomic step), then the old directory removed — what kubelet's
/// AtomicWriter does for ConfigMaps and Secrets.
struct Volume {
    dir: PathBuf,
    stamp: u32,
}

impl Volume {
    fn new(dir: &Path, files: &[(&str, Vec<u8>)]) -> Volume {
        std::fs::create_dir_all(dir).unwrap();
        let mut v = Volume {
            dir: dir.to_path_buf(),
            stamp: 0,
        };
        v.update(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
        }
        v
    }

    fn update(&mut self, files: &[(&str, Vec<u8>)]) {
        let old = self.dir.join(format!("..2026_12_07_{}", self.stamp));
        self.stamp += 1;
        let stamped = format!("..2026_12_07_{}", self.stamp);
        let real = self.dir.join(&stamped);
        std::fs::create_dir(&real).unwrap();
        for (name, bytes) in files {
            std::fs::write(real.join(name), bytes).unwrap();
        }
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&stamped, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        if old.exists() {
            std::fs::remove_dir_all(old).unwrap();
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Now, in the records' `ts` form (Unix seconds).
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Waits for the `n`-th (1-based) record of `event`.
fn nth_event(edge: &Edge, event: &str, n: usize) -> serde_json::Value {
    edge.wait_event(event, n, RELOAD_WAIT)
}

/// Waits until the watch thread has taken its first look at the files.
fn watching(edge: &Edge) -> serde_json::Value {
    nth_event(edge, "config_watch", 1)
}

/// One sample of `/metrics` by its exact series text (`name` or `name{labels}`).
fn metric(edge: &Edge, series: &str) -> f64 {
    let (status, body) = support::http::get(edge.metrics_addr.unwrap(), "/metrics").unwrap();
    assert_eq!(status, 200);
    support::http::sample(&body, series).unwrap_or_else(|| panic!("no {series} in /metrics"))
}

// ---- 1. a ConfigMap-style symlink swap --------------------------------------------------------------

#[test]
fn a_kubelet_symlink_swap_of_the_config_is_applied_without_a_signal() {
    let pki = TestPki::new();
    let fe_uas = uas_ok(&pki, &pki.fe);
    let partner_uas = uas_ok(&pki, &pki.partner);
    let mut opts = EdgeOpts::new(fe_uas.port(), partner_uas.port());
    opts.blocked.push("partner2.test".into());
    let root = tempfile::tempdir().unwrap();
    let mut volume = Volume::new(
        &root.path().join("config"),
        &[("sipedge.toml", opts.render(&pki).into_bytes())],
    );
    let edge = Edge::start_at(&volume.path("sipedge.toml"), root, &["--watch"]);
    let w = watching(&edge);
    assert!(
        w["text"].as_str().unwrap().starts_with("watching 7 files"),
        "config, 2 certificates, 2 keys, 2 CA bundles: {w}"
    );
    assert_eq!(metric(&edge, "sipedge_config_watched_files"), 7.0);
    assert_eq!(metric(&edge, "sipedge_config_max_connections"), 10000.0);

    // partner2.test is blocked: refused.
    let mut fe = fe_client(&edge, &pki);
    let r = fe_message(&mut fe, &edge, "sip:bob@partner2.test", "z9hG4bKw1", WAIT);
    assert_eq!(sip::status(&r), 403, "{r}");

    // The ConfigMap changes: partner2.test allowed (pinned to the partner's proxy), a lower limit.
    opts.blocked.clear();
    opts.extra_allowed.push((
        "partner2.test".into(),
        format!("edge.partner.test:{}", partner_uas.port()),
    ));
    opts.max_connections = Some(777);
    let swapped = unix_now();
    volume.update(&[("sipedge.toml", opts.render(&pki).into_bytes())]);

    let applied = nth_event(&edge, "reload_applied", 1);
    eprintln!(
        "watch: ..data swap to reload_applied in {:.0} ms",
        (applied["ts"].as_f64().unwrap() - swapped) * 1000.0
    );
    assert_eq!(applied["trigger"], "watch", "{applied}");
    assert_eq!(applied["generation"], 2, "{applied}");
    let changed = &edge.events("config_changed")[0];
    assert_eq!(
        changed["by"], "event",
        "seen by inotify, not the 10 s poll: {changed}"
    );
    assert_eq!(
        changed["files"],
        serde_json::json!([volume.path("sipedge.toml").display().to_string()]),
        "{changed}"
    );
    // On the connection opened before: the new policy routes the request.
    let r = fe_message(&mut fe, &edge, "sip:bob@partner2.test", "z9hG4bKw2", WAIT);
    assert_eq!(sip::status(&r), 200, "{r}");
    assert_eq!(metric(&edge, "sipedge_config_max_connections"), 777.0);
    assert_eq!(metric(&edge, "sipedge_config_generation"), 2.0);
    assert_eq!(
        metric(&edge, "sipedge_config_reloads_total{result=\"success\"}"),
        1.0
    );

    // The old stamped directory is gone; the watch followed the link to the new one.
    opts.max_connections = Some(555);
    volume.update(&[("sipedge.toml", opts.render(&pki).into_bytes())]);
    let again = nth_event(&edge, "reload_applied", 2);
    assert_eq!(
        (again["trigger"].as_str(), again["generation"].as_u64()),
        (Some("watch"), Some(3))
    );
    assert_eq!(metric(&edge, "sipedge_config_max_connections"), 555.0);
    // Nothing else: the watch's and the reloads' own reads of the files wake nothing.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(edge.events("reload_applied").len(), 2, "{}", edge.log_dump());
    assert!(edge.events("reload_failed").is_empty(), "{}", edge.log_dump());
}

// ---- 2. a Secret-style certificate rotation ---------------------------------------------------------

/// The serial of a DER certificate as the edge logs it (`01:a2:…`).
fn serial(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.raw_serial_as_string()
}

#[test]
fn a_rotated_certificate_is_presented_by_the_next_handshake_and_the_old_connection_keeps_working() {
    let pki = TestPki::new();
    let fe_uas = uas_ok(&pki, &pki.fe);
    let partner_uas = uas_ok(&pki, &pki.partner);
    let opts = EdgeOpts::new(fe_uas.port(), partner_uas.port());
    let root = tempfile::tempdir().unwrap();
    let read = |p: &Path| std::fs::read(p).unwrap();
    // The external certificate and key in a Secret volume (tls.crt, tls.key).
    let mut secret = Volume::new(
        &root.path().join("tls"),
        &[
            ("tls.crt", read(&pki.edge_external.cert_file)),
            ("tls.key", read(&pki.edge_external.key_file)),
        ],
    );
    let config = opts
        .render(&pki)
        .replace(
            &format!("\"{}\"", pki.edge_external.cert_file.display()),
            &format!("\"{}\"", secret.path("tls.crt").display()),
        )
        .replace(
            &format!("\"{}\"", pki.edge_external.key_file.display()),
            &format!("\"{}\"", secret.path("tls.key").display()),
        );
    assert!(config.contains("tls.crt") && config.contains("tls.key"));
    let config_path = root.path().join("sipedge.toml");
    std::fs::write(&config_path, config).unwrap();
    let edge = Edge::start_at(&config_path, root, &["--watch"]);
    watching(&edge);

    let partner = || {
        TlsPeer::connect(
            edge.external_addr,
            &pki.partner,
            &pki.internal_ca.cert,
            "edge.corp.test",
        )
        .unwrap_or_else(|e| panic!("partner cannot connect: {e}\n{}", edge.log_dump()))
    };
    let old_der = pki.edge_external.chain[0].clone();
    let mut before = partner();
    assert_eq!(before.peer_certificate().as_ref(), Some(&old_der));

    // cert-manager renews: a new certificate and key, swapped in together.
    let renewed = pki.internal_leaf("edge.corp.test");
    let new_der = renewed.chain[0].clone();
    assert_ne!(serial(&new_der), serial(&old_der));
    let swapped = unix_now();
    secret.update(&[
        ("tls.crt", read(&renewed.cert_file)),
        ("tls.key", read(&renewed.key_file)),
    ]);
    let applied = nth_event(&edge, "reload_applied", 1);
    eprintln!(
        "watch: certificate swap to reload_applied in {:.0} ms",
        (applied["ts"].as_f64().unwrap() - swapped) * 1000.0
    );
    assert_eq!(applied["trigger"], "watch", "{applied}");
    let replaced = nth_event(&edge, "certificate_replaced", 1);
    assert_eq!(replaced["side"], "external", "{replaced}");
    assert_eq!(replaced["old_serial"], serial(&old_der), "{replaced}");
    assert_eq!(replaced["serial"], serial(&new_der), "{replaced}");
    let changed = &edge.events("config_changed")[0];
    let files: Vec<&str> = changed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with("tls.crt")) && files.iter().any(|f| f.ends_with("tls.key")),
        "{changed}"
    );

    let after = partner();
    let presented = after.peer_certificate().unwrap();
    assert_eq!(
        serial(&presented),
        serial(&new_der),
        "the handshake after the rotation presents the new certificate"
    );
    // The connection opened before still carries a request (partner → our user, via the FE).
    let branch = "z9hG4bKrot-1";
    let r = partner_message(&mut before, &edge, branch, WAIT);
    assert_eq!(sip::status(&r), 200, "{r}");
    assert_eq!(
        serial(before.peer_certificate().unwrap().as_ref()),
        serial(&old_der),
        "it keeps its own session"
    );
}

// ---- 3. a file caught half-written -------------------------------------------------------------------

#[test]
fn a_half_written_config_is_refused_and_the_completed_one_applied() {
    use std::io::Write;
    let pki = TestPki::new();
    let fe_uas = uas_ok(&pki, &pki.fe);
    let partner_uas = uas_ok(&pki, &pki.partner);
    let mut opts = EdgeOpts::new(fe_uas.port(), partner_uas.port());
    let root = tempfile::tempdir().unwrap();
    let config_path = root.path().join("sipedge.toml");
    std::fs::write(&config_path, opts.render(&pki)).unwrap();
    let edge = Edge::start_at(&config_path, root, &["--watch"]);
    watching(&edge);
    let mut fe = fe_client(&edge, &pki);

    // A copy in place (truncate, write): stopped in the middle of a quoted string, then finished
    // after the watch has seen it.
    opts.max_connections = Some(4321);
    let full = opts.render(&pki);
    let cut = full.find("next_hop = \"fe1.corp").unwrap() + "next_hop = \"fe1.co".len();
    let mut file = std::fs::File::create(&config_path).unwrap();
    file.write_all(&full.as_bytes()[..cut]).unwrap();
    file.flush().unwrap();

    let failed = nth_event(&edge, "reload_failed", 1);
    assert_eq!(failed["trigger"], "watch", "{failed}");
    assert_eq!(
        failed["generation"], 1,
        "the running configuration stays: {failed}"
    );
    assert!(!edge.events("reload_error").is_empty(), "{}", edge.log_dump());
    assert!(edge.events("reload_applied").is_empty(), "{}", edge.log_dump());
    // Still serving, on the running configuration.
    let r = fe_message(&mut fe, &edge, "sip:bob@partner.test", "z9hG4bKh1", WAIT);
    assert_eq!(sip::status(&r), 200, "{r}");
    assert_eq!(metric(&edge, "sipedge_config_max_connections"), 10000.0);
    assert_eq!(metric(&edge, "sipedge_config_last_reload_success"), 0.0);

    file.write_all(&full.as_bytes()[cut..]).unwrap();
    file.flush().unwrap();
    drop(file);
    let applied = nth_event(&edge, "reload_applied", 1);
    assert_eq!(
        (applied["trigger"].as_str(), applied["generation"].as_u64()),
        (Some("watch"), Some(2)),
        "{applied}"
    );
    assert_eq!(metric(&edge, "sipedge_config_max_connections"), 4321.0);
    assert_eq!(metric(&edge, "sipedge_config_last_reload_success"), 1.0);
    let r = fe_message(&mut fe, &edge, "sip:bob@partner.test", "z9hG4bKh2", WAIT);
    assert_eq!(sip::status(&r), 200, "{r}");
    assert!(fe.closed().is_none(), "the front end's connection stays open");
}
