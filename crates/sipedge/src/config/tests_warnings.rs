//! Unit tests of what loads with warnings or fails on its certificates: expired, expiring and
//! SAN-mismatched certificates (made with rcgen), unreadable or non-PEM files, the push / IM filter /
//! discovery warnings, the embedded default (loopback, self-signed, refused as a user file), and the
//! schema of `schema.rs` kept in step with the serde structs of `file.rs`.

use super::file::*;
use super::load::EMBEDDED_DEFAULT_TOML;
use super::settings::ConfigSource;
use super::test_support::{at, keys, with, Pki, VALID_TOML};
use super::*;

#[test]
fn certificates_expired_expiring_and_names() {
    let pki = Pki::with_edge_cert();
    pki.leaf("old", &["edge.corp.example"], -1);
    pki.leaf("soon", &["edge.corp.example"], 10);
    pki.leaf("other", &["*.corp.example", "mail.corp.example"], 365);
    std::fs::write(pki.dir().join("garbage.pem"), "not pem at all").unwrap();

    let text = with(
        "",
        &[(
            "cert_file = \"edge.crt\"\nkey_file = \"edge.key\"\nca_file",
            "cert_file = \"old.crt\"\nkey_file = \"old.key\"\nca_file",
        )],
    );
    let errors = pki.load(&text, &[]).unwrap_err();
    let e = at(&errors, "internal.cert_file");
    assert!(e.problem.contains("expired on"), "{e}");

    let text = with(
        "",
        &[(
            "cert_file = \"edge.crt\"\nkey_file = \"edge.key\"\n\n",
            "cert_file = \"soon.crt\"\nkey_file = \"soon.key\"\n\n",
        )],
    );
    let c = pki.load(&text, &[]).unwrap();
    assert_eq!(keys(c.warnings()), ["external.cert_file"]);
    let w = &c.warnings()[0].problem;
    assert!(
        w.contains("expires on") && (w.contains("(in 9 days)") || w.contains("(in 10 days)")),
        "{w}"
    );

    let text = with(
        "",
        &[(
            "cert_file = \"edge.crt\"\nkey_file = \"edge.key\"\n\n",
            "cert_file = \"other.crt\"\nkey_file = \"other.key\"\n\n",
        )],
    );
    let c = pki.load(&text, &[]).unwrap();
    assert_eq!(keys(c.warnings()), ["external.cert_file"]);
    let w = &c.warnings()[0].problem;
    assert!(
        w.contains("does not cover edge.fqdn edge.corp.example") && w.contains("wildcards are not accepted"),
        "{w}"
    );

    let text = with(
        "",
        &[
            (
                "cert_file = \"edge.crt\"\nkey_file = \"edge.key\"\n\n",
                "cert_file = \"garbage.pem\"\nkey_file = \"edge.crt\"\n\n",
            ),
            ("ca_file = \"ca.pem\"", "ca_file = \"nowhere/ca.pem\""),
        ],
    );
    let errors = pki.load(&text, &[]).unwrap_err();
    assert_eq!(
        keys(&errors),
        ["internal.ca_file", "external.cert_file", "external.key_file"],
        "{errors:#?}"
    );
    assert!(errors[0].problem.starts_with("cannot read"));
    assert!(errors[1].problem.contains("no PEM CERTIFICATE"));
    assert!(errors[2].problem.contains("no PEM private key"));
}

#[test]
fn a_key_that_is_not_the_certificates_is_an_error_and_warnings_are_kept() {
    let pki = Pki::with_edge_cert();
    pki.leaf("soon", &["edge.corp.example"], 10);
    let (_, other_key) = pki.leaf("other", &["edge.corp.example"], 365);
    let text = with(
        "",
        &[
            (
                "cert_file = \"edge.crt\"\nkey_file = \"edge.key\"\nca_file",
                "cert_file = \"soon.crt\"\nkey_file = \"soon.key\"\nca_file",
            ),
            (
                "cert_file = \"edge.crt\"\nkey_file = \"edge.key\"\n\n",
                "cert_file = \"edge.crt\"\nkey_file = \"other.key\"\n\n",
            ),
        ],
    );
    let loaded = pki.check(&text);
    let invalid = loaded.as_ref().unwrap_err();
    assert_eq!(keys(&invalid.errors), ["external.key_file"], "{invalid:#?}");
    assert_eq!(
        invalid.errors[0].problem,
        format!(
            "the private key in {} does not belong to the certificate in {} (external.cert_file): \
             its public key is not the certificate's; give the key the certificate was issued for",
            other_key.display(),
            pki.dir().join("edge.crt").display()
        )
    );
    assert_eq!(keys(&invalid.warnings), ["internal.cert_file"]);
    let (report, ok) = crate::check_config::report("x.toml", false, &loaded);
    assert!(!ok);
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), 3, "{report}");
    assert!(lines[0].starts_with("error: external.key_file: the private key in "));
    assert!(lines[1].starts_with("warning: internal.cert_file: certificate "));
    assert_eq!(lines[2], "invalid: x.toml (1 error)");

    // Both listeners with the wrong key: "2 errors".
    let both = text.replace("key_file = \"soon.key\"", "key_file = \"other.key\"");
    let (report, _) = crate::check_config::report("x.toml", false, &pki.check(&both));
    assert_eq!(
        report.lines().last(),
        Some("invalid: x.toml (2 errors)"),
        "{report}"
    );
    let (report, ok) = crate::check_config::report("x.toml", false, &pki.check(VALID_TOML));
    assert!(ok);
    let system = rustls_native_certs::load_native_certs().certs.len();
    assert_eq!(
        report,
        format!(
            "trust: external: partner certificates are verified against {system} roots from the operating \
             system's trust store\nok: x.toml is valid (0 warnings)\n"
        )
    );
}

#[test]
fn an_invite_timeout_below_three_minutes_is_warned_about() {
    let pki = Pki::with_edge_cert();
    let c = pki
        .load(VALID_TOML, &[("SIPEDGE__LIMITS__INVITE_TIMEOUT_MS", "60000")])
        .unwrap();
    assert_eq!(
        c.warnings(),
        [Issue {
            key: "limits.invite_timeout_ms".to_owned(),
            problem: "60000 ms is below 3 minutes (RFC 3261 Timer C > 3 min; default 181000): mobile endpoints \
                      have 60 s to answer an INVITE (desktops 15 s), and a call still ringing when this expires \
                      is cancelled with 408"
                .to_owned(),
        }]
    );
    let c = pki
        .load(VALID_TOML, &[("SIPEDGE__LIMITS__INVITE_TIMEOUT_MS", "180000")])
        .unwrap();
    assert_eq!(c.warnings(), &[] as &[Issue]);
}

#[test]
fn warnings_on_push_filter_and_discovery() {
    let pki = Pki::with_edge_cert();
    let text = with(
        "",
        &[
            ("{ domain = \"push.lync.com\" },", ""),
            ("enabled = true", "enabled = false"),
            ("action = \"warn\"", "action = \"block\""),
            ("blocked = [{ domain = \"evil.example\" }]", "blocked = []"),
            (
                "[federation]\n",
                "[federation]\nenable_partner_discovery = true\n",
            ),
        ],
    );
    let c = pki.load(&text, &[]).unwrap();
    assert_eq!(
        keys(c.warnings()),
        [
            "push.proxy_uri",
            "federation.hosted_providers",
            "im_filter.blocked_prefixes",
            "federation.enable_partner_discovery"
        ],
        "{:#?}",
        c.warnings()
    );
    assert!(c.warnings()[0].problem.contains("504"));
    assert!(c.warnings()[1].problem.contains("504"));
    assert!(c.warnings()[2]
        .problem
        .contains("Push Notification request was rejected"));
    // Pinned push domain: no provider needed.
    let text = VALID_TOML.replace(
        "{ domain = \"push.lync.com\" }",
        "{ domain = \"push.lync.com\", proxy_fqdn = \"sipfed.online.lync.com\" }",
    );
    let text = text.replace("enabled = true", "enabled = false");
    assert_eq!(pki.load(&text, &[]).unwrap().warnings(), &[] as &[Issue]);
}

/// One error elsewhere does not hide the cross-section warnings (the IM filter blocking push, push
/// routing, discovery with nothing blocked, the known servers): check-config prints them with it.
#[test]
fn one_error_keeps_the_cross_section_warnings() {
    let pki = Pki::with_edge_cert();
    let text = with(
        "",
        &[
            ("action = \"warn\"", "action = \"block\""),
            ("  { domain = \"push.lync.com\" },\n", ""),
            (
                "blocked = [{ domain = \"evil.example\" }]",
                "enable_partner_discovery = true",
            ),
            ("  { fqdn = \"edge.corp.example\", version = 0 },\n", ""),
            (
                "next_hop = \"pool.corp.example\"",
                "next_hop = \"sip:pool.corp.example\"",
            ),
        ],
    );
    let loaded = pki.check(&text);
    let invalid = loaded.as_ref().unwrap_err();
    assert_eq!(keys(&invalid.errors), ["internal.next_hop"], "{invalid:#?}");
    let mut found = keys(&invalid.warnings);
    found.sort_unstable();
    assert_eq!(
        found,
        [
            "federation.enable_partner_discovery",
            "im_filter.blocked_prefixes",
            "internal.known_servers",
            "push.proxy_uri"
        ]
    );
    let (report, ok) = crate::check_config::report("x.toml", false, &loaded);
    assert!(!ok);
    assert_eq!(
        report.lines().filter(|l| l.starts_with("warning: ")).count(),
        4,
        "{report}"
    );
    assert_eq!(report.lines().last(), Some("invalid: x.toml (1 error)"));
}

/// The push probe and `test-push --config` present the internal certificate (internal.fqdn): a
/// table without that name admits every front end but not the edge's own checks.
#[test]
fn an_internal_fqdn_that_is_not_a_known_server_is_warned_about() {
    let pki = Pki::with_edge_cert();
    let text = with("", &[("  { fqdn = \"edge.corp.example\", version = 0 },\n", "")]);
    let c = pki.load(&text, &[]).unwrap();
    assert_eq!(keys(c.warnings()), ["internal.known_servers"]);
    let w = &c.warnings()[0].problem;
    assert!(
        w.starts_with("internal.fqdn edge.corp.example is not a known server")
            && w.contains("GET /probe/push")
            && w.contains("[[internal.known_servers]] fqdn = \"edge.corp.example\" version = 0"),
        "{w}"
    );
    assert!(pki.load(VALID_TOML, &[]).unwrap().warnings().is_empty());
}

#[test]
fn the_embedded_default_is_loopback_and_self_signed() {
    let c = Config::embedded_default_with_env(Vec::new()).unwrap();
    assert_eq!(c.source(), &ConfigSource::Embedded);
    assert!(matches!(c.internal().tls, TlsIdentity::SelfSigned));
    assert!(matches!(c.external().tls, TlsIdentity::SelfSigned));
    for addr in [c.internal().listen, c.external().listen, c.metrics().listen] {
        assert!(addr.ip().is_loopback(), "{addr}");
    }
    assert_eq!(
        [
            c.internal().listen.port(),
            c.external().listen.port(),
            c.metrics().listen.port()
        ],
        [5061, 5071, 9464]
    );
    assert!(EMBEDDED_DEFAULT_WARNING.contains("--config"));
    // The same text as a user file lacks certificates: only the embedded default may.
    let pki = Pki::new();
    let errors = pki.load(EMBEDDED_DEFAULT_TOML, &[]).unwrap_err();
    assert_eq!(
        keys(&errors),
        [
            "internal.cert_file",
            "internal.key_file",
            "internal.ca_file",
            "external.cert_file",
            "external.key_file"
        ]
    );
}

/// `schema.rs` and the serde structs describe the same keys.
#[test]
fn schema_matches_the_file_structs() {
    let s = || Some("x".to_owned());
    let full = FileConfig {
        edge: EdgeFile {
            fqdn: s(),
            sip_domains: Some(vec![]),
            workers: Some(0),
        },
        internal: InternalFile {
            fqdn: s(),
            listen: s(),
            next_hop: s(),
            cert_file: s(),
            key_file: s(),
            ca_file: s(),
            known_servers: vec![KnownServerFile {
                fqdn: s(),
                version: s(),
            }],
        },
        external: ExternalFile {
            listen: s(),
            cert_file: s(),
            key_file: s(),
            ca_file: s(),
        },
        federation: FederationFile {
            enable_partner_discovery: Some(true),
            discovery_messages_per_second: Some(1),
            discovery_contacts_per_hour: Some(1),
            allowed: vec![AllowedFile {
                domain: s(),
                proxy_fqdn: s(),
                comment: s(),
            }],
            blocked: vec![BlockedFile { domain: s() }],
            hosted_providers: vec![ProviderFile {
                name: s(),
                proxy_fqdn: s(),
                enabled: Some(true),
                verification_level: s(),
            }],
        },
        push: PushFile {
            proxy_uri: s(),
            timeout_ms: Some(1),
            max_retries: Some(1),
            backoff_ms: Some(1),
            backoff_max_ms: Some(1),
            breaker_failures: Some(1),
            breaker_cooldown_ms: Some(1),
        },
        im_filter: ImFilterFile {
            blocked_prefixes: Some(vec![]),
            action: s(),
        },
        dns: DnsFile {
            servers: Some(vec![]),
            hosts: vec![HostFile { name: s(), ip: s() }],
        },
        metrics: MetricsFile {
            listen: s(),
            network_policy: Some(false),
        },
        limits: LimitsFile {
            max_message_bytes: Some(1),
            max_connections: Some(1),
            handshake_timeout_ms: Some(1),
            keepalive_interval_s: Some(1),
            max_connections_per_ip: Some(1),
            idle_timeout_s: Some(1),
            message_timeout_ms: Some(1),
            connect_timeout_ms: Some(1),
            outgoing_tls_per_partner: Some(1),
            transaction_timeout_ms: Some(1),
            invite_timeout_ms: Some(1),
            max_subscriptions: Some(1),
        },
        pool: Some(PoolFile {
            redis: s(),
            replica: s(),
            redis_down: s(),
            redis_password_file: s(),
        }),
    };
    fn paths(v: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    paths(v, &p, out);
                }
            }
            serde_json::Value::Array(items) if items.first().is_some_and(serde_json::Value::is_object) => {
                paths(&items[0], &format!("{prefix}[]"), out);
            }
            _ => out.push(prefix.to_owned()),
        }
    }
    let mut from_serde = Vec::new();
    paths(&serde_json::to_value(&full).unwrap(), "", &mut from_serde);
    from_serde.sort();
    assert_eq!(from_serde, schema::all_paths());
}
