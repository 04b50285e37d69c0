//! Issue 17, the status page, black-box: the real `sipedge run` with 1,000 configured partners, a
//! hosted provider (a loopback UAS behind `dnsmasq`'s SRV record) that answers the push probe with a
//! hostile reason phrase, a refused request and a refused reload; then `GET /status.json` (the
//! driven values), `GET /status` (bounded, escaped) and the page in headless Chromium driven by
//! Selenium (Debian's `chromium`, `chromium-driver`, `python3-selenium`; `support/browser.py`): the
//! live DOM read back, the hostile text shown as text and not run, and a screenshot saved
//! (`target/status-page.png`; with `SIPEDGE_STATUS_SCREENSHOT=FILE`, there too).
//!
//! Loopback only; every wait is bounded.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "support/dnsmasq.rs"]
mod dnsmasq;
// Not every harness export is used here.
#[allow(unused_imports)]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dnsmasq::Dnsmasq;
use sip_codec::Message;
use support::front_end::{fe_client, fe_message};
use support::http;
use support::sip::{self, reply};
use support::{Edge, EdgeOpts, Reply, TestPki, TlsUas};

const WAIT: Duration = Duration::from_secs(10);
/// What a hostile provider puts in its reason phrase: it must reach the page as text.
const HOSTILE: &str = "<script>document.title='pwned'</script><b>bold</b>";
const PARTNERS: usize = 1_000;

/// The page in headless Chromium, driven by Selenium (`support/browser.py`, Debian's
/// python3-selenium and chromium-driver): what it read from the live DOM.
fn browse(url: &str, screenshot: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/browser.py");
    let out = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(url)
        .arg(screenshot)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): install python3-selenium, chromium-driver (scripts/test.sh does)",
                script.display()
            )
        });
    assert!(
        out.status.success(),
        "the browser run failed (apt-get install chromium chromium-driver python3-selenium):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_status_page_shows_the_driven_state_bounded_escaped_and_in_a_browser() {
    let pki = TestPki::new();
    let provider_id = pki.partner_leaf("sipfed.online.lync.com");
    let provider = TlsUas::start_with(&provider_id, &pki.internal_ca.cert, |m: &Message<'_>| {
        match m.method() {
            Some("ACK") => vec![],
            _ => vec![Reply::Now(reply(m, 403, HOSTILE, Some("lync-online")))],
        }
    });
    let fe_uas = TlsUas::start(&pki.fe, &pki.internal_ca.cert, |m: &Message<'_>| {
        vec![reply(m, 200, "OK", Some("fe"))]
    });
    let dns = Dnsmasq::lync_online(provider.port());
    let mut opts = EdgeOpts::new(fe_uas.port(), support::free_port());
    opts.dns_servers = vec![dns.server()];
    opts.lync_online();
    opts.allowed_srv.push("push.lync.com".into());
    opts.blocked.push("blocked.test".into());
    for i in 0..PARTNERS {
        opts.extra_allowed.push((
            format!("p{i:04}.partners.test"),
            format!("sip.p{i:04}.partners.test:5061"),
        ));
    }
    opts.extra_toml = "[im_filter]\naction = \"warn\"\n".into();
    let config = format!(
        "{}\n[[internal.known_servers]]\nfqdn = \"edge-int.corp.test\"\nversion = 0\n",
        opts.render(&pki)
    );
    let edge = Edge::start(&config, &pki);
    let metrics = edge.metrics_addr.unwrap();

    // Drive: a refusal (blocked domain), a good MESSAGE (a link up), the push probe failing with the
    // provider's hostile reason, and a refused reload.
    let mut fe = fe_client(&edge, &pki);
    let r = fe_message(&mut fe, &edge, "sip:x@blocked.test", "z9hG4bKst-1", WAIT);
    assert_eq!(sip::status(&r), 403, "{r}");
    let (status, probe) = http::get(metrics, "/probe/push").unwrap();
    assert_eq!(status, 503, "{probe}");
    let good = std::fs::read_to_string(&edge.config_path).unwrap();
    std::fs::write(&edge.config_path, format!("{good}\n[nosuch]\nkey = 1\n")).unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &edge.pid().to_string()])
        .status()
        .unwrap()
        .success());
    edge.wait_log("\"reload_failed\"", WAIT)
        .unwrap_or_else(|| panic!("no reload_failed\n{}", edge.log_dump()));

    // The JSON: every driven value, once the workers published (twice a second).
    let deadline = Instant::now() + WAIT;
    let json = loop {
        let (code, body) = http::get(metrics, "/status.json").unwrap();
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if !v["recent_refusals"].as_array().unwrap().is_empty() {
            break v;
        }
        assert!(Instant::now() < deadline, "no refusal on the status page: {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(json["edge"]["fqdn"], "edge.corp.test");
    assert_eq!(json["edge"]["ready"], true);
    let roles: Vec<&str> = json["edge"]["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["internal", "external", "metrics"]);
    assert_eq!(json["config"]["last_reload"], "refused");
    assert_eq!(json["config"]["generation"], 1);
    assert!(
        json["config"]["last_errors"][0]
            .as_str()
            .unwrap()
            .starts_with("nosuch: unknown key"),
        "{}",
        json["config"]
    );
    // 1,000 partners + partner.test + push.lync.com configured; 200 shown.
    assert_eq!(json["partners"]["total"], PARTNERS + 2);
    assert_eq!(json["partners"]["rows"].as_array().unwrap().len(), 200);
    let provider_row = &json["providers"]["rows"][0];
    assert_eq!(
        (provider_row["name"].as_str(), provider_row["breaker"].as_str()),
        (Some("LyncOnline"), Some("closed"))
    );
    let refusal = &json["recent_refusals"][0];
    assert_eq!(
        (refusal["status"].as_u64(), refusal["reason"].as_str()),
        (Some(403), Some("blocked"))
    );
    assert!(
        refusal["diagnostic"].as_str().unwrap().starts_with("1005;"),
        "{refusal}"
    );
    assert_eq!(json["push_probe"]["result"], "failure");
    assert!(
        json["push_probe"]["error"].as_str().unwrap().contains(HOSTILE),
        "{}",
        json["push_probe"]
    );
    let links = json["links"]["rows"].as_array().unwrap();
    assert!(
        links
            .iter()
            .any(|l| l["side"] == "internal" && l["name"] == "fe1.corp.test"),
        "{links:?}"
    );
    let days = json["certificates"][0]["days_left"].as_i64().unwrap();
    assert!(days > 0, "{days}");

    // The page: bounded, escaped, timed.
    let t0 = Instant::now();
    let (code, page) = http::get(metrics, "/status").unwrap();
    let took = t0.elapsed();
    assert_eq!(code, 200);
    assert!(page.len() < 250 * 1024, "{} bytes", page.len());
    assert!(
        !page.contains("<script") && !page.contains("<b>bold"),
        "unescaped network text"
    );
    assert!(
        page.contains("&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;"),
        "escaped text missing"
    );
    assert!(page.contains("(200 of 1002 shown)"), "the bound is said");
    println!(
        "status page with {PARTNERS} partners: {} bytes, served in {took:?}",
        page.len()
    );

    // A real browser: the live DOM read back through Selenium, and a screenshot.
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/status-page.png");
    // A screenshot left by an earlier run must not stand for this one's.
    let _ = std::fs::remove_file(&shot);
    let seen = browse(&format!("http://{metrics}/status"), &shot);
    assert_eq!(
        seen["title"], "sipedge edge.corp.test",
        "the hostile script did not run: {seen}"
    );
    assert_eq!(
        (seen["scripts"].as_u64(), seen["hostile_bold"].as_u64()),
        (Some(0), Some(0)),
        "{seen}"
    );
    let probe = seen["probe"].as_array().unwrap();
    assert!(
        probe.iter().any(|p| p.as_str().unwrap().contains(HOSTILE)),
        "the hostile reason phrase shows as text: {probe:?}"
    );
    let summary: Vec<&str> = seen["summary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        summary.iter().any(|c| c.contains("last reload refused")),
        "{summary:?}"
    );
    assert!(summary.iter().any(|c| c.contains("failure")), "{summary:?}");
    let refusal = seen["refusals"][0].as_str().unwrap();
    assert!(
        refusal.contains("403") && refusal.contains("1005;reason="),
        "{refusal}"
    );
    assert!(
        seen["providers"][0].as_str().unwrap().starts_with("LyncOnline"),
        "{seen}"
    );
    assert_eq!(seen["partner_rows"], 200);
    assert!(
        seen["partners_heading"][0]
            .as_str()
            .unwrap()
            .contains("(200 of 1002 shown)"),
        "{seen}"
    );
    assert!(
        seen["reload_errors"][0]
            .as_str()
            .unwrap()
            .starts_with("nosuch: unknown key"),
        "{seen}"
    );
    assert!(shot.exists(), "no screenshot");
    if let Ok(keep) = std::env::var("SIPEDGE_STATUS_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}
