//! Unit tests of loading and validation: defaults, every error naming its key and all reported at
//! once, environment overrides, unknown keys (file and environment), wrong types, TOML syntax, and
//! policy contradictions as key paths (the known-server conflict naming both entries). Certificates,
//! warnings, the embedded default and the schema drift check are in `tests_warnings.rs`.

use std::collections::BTreeSet;
use std::time::Duration;

use federation_policy::{FilterAction, VerificationLevel};

use super::file::*;
use super::test_support::{at, keys, with, Pki, VALID_TOML};
use super::*;

#[test]
fn a_valid_file_loads_with_defaults_and_no_warning() {
    let pki = Pki::with_edge_cert();
    let c = pki.load(VALID_TOML, &[]).unwrap();
    assert_eq!(c.warnings(), &[] as &[Issue]);
    assert_eq!(c.edge().fqdn.as_str(), "edge.corp.example");
    assert_eq!(c.edge().workers, None);
    assert!(c.edge().worker_count() >= 1);
    assert_eq!(c.internal().listen.to_string(), "10.0.0.10:5061");
    assert_eq!(
        (
            c.internal().next_hop.host().as_str(),
            c.internal().next_hop.port()
        ),
        ("pool.corp.example", 5061)
    );
    assert_eq!(c.internal().known_servers.len(), 3);
    assert!(c
        .internal()
        .client_ca
        .as_ref()
        .is_some_and(|ca| ca.certs.len() == 1));
    assert!(c.external().extra_roots.is_none());
    match &c.internal().tls {
        TlsIdentity::Files(f) => {
            assert_eq!(f.chain.len(), 2, "leaf and CA");
            assert!(
                f.cert_file.is_absolute(),
                "relative paths are taken from the file's directory"
            );
            assert_eq!(f.leaf.dns_names, ["edge.corp.example", "sip.corp.example"]);
        }
        TlsIdentity::SelfSigned => panic!("files expected"),
    }
    assert_eq!(c.push().proxy_uri.as_str(), DEFAULT_PUSH_PROXY_URI);
    assert_eq!(c.push().proxy_uri.domain().as_str(), "push.lync.com");
    assert_eq!(c.push().timeout, Duration::from_millis(DEFAULT_PUSH_TIMEOUT_MS));
    assert!(c.dns().servers.is_empty() && c.dns().hosts.is_empty());
    assert_eq!(c.metrics().listen.to_string(), DEFAULT_METRICS_LISTEN);
    assert_eq!(c.limits().max_message_bytes, 128 * 1024);
    assert_eq!(c.limits().keepalive_interval, Duration::from_secs(30));
    let p = c.policy();
    assert!(p.discovery().is_none());
    let partner = p
        .allowed(&federation_policy::DomainName::parse("partner.example").unwrap())
        .unwrap();
    assert_eq!(partner.proxy_fqdn.as_ref().map(|f| f.port()), Some(5062));
    assert_eq!(partner.comment.as_deref(), Some("pinned"));
    assert_eq!(
        p.providers()[0].verification_level,
        VerificationLevel::AlwaysVerifiable
    );
    assert_eq!(p.im_filter().action(), FilterAction::Warn);
    assert_eq!(
        p.im_filter().prefixes().len(),
        federation_policy::LYNC_DEFAULT_PREFIXES.len()
    );
    assert_eq!(p.edge_fqdn(), "edge.corp.example");
    assert!(p.known_server("FE1.corp.example").is_some());
}

#[test]
fn every_error_names_its_key_and_all_come_at_once() {
    let pki = Pki::with_edge_cert();
    let text = with(
        "",
        &[
            ("fqdn = \"edge.corp.example\"", "fqdn = \"edge corp\"\nworkers = 5000"),
            ("listen = \"10.0.0.10:5061\"", "listen = \"10.0.0.10\""),
            ("next_hop = \"pool.corp.example\"", "next_hop = \"pool.corp.example:0\""),
            ("{ fqdn = \"fe2.corp.example\", version = \"8.0\" }", "{ fqdn = \"fe2.corp.example\" }"),
            ("{ domain = \"partner.example\", proxy_fqdn", "{ domain = \"exa mple.com\", proxy_fqdn"),
            ("{ domain = \"evil.example\" }", "{ domain = \"evil.example\" }, { domain = \"*.bad.example\" }"),
            ("enabled = true, verification_level = \"AlwaysVerifiable\"", "enabled = true, verification_level = \"Maybe\""),
            ("action = \"warn\"", "action = \"drop\"\nblocked_prefixes = [\"http:\", \"\"]\n[push]\nproxy_uri = \"sip:push@192.0.2.1\"\ntimeout_ms = 0\n[dns]\nservers = [\"192.0.2.53:53\", \"resolver\"]\nhosts = [{ name = \"sip.partner.example\", ip = \"999.1.1.1\" }]\n[limits]\nmax_connections = 0\n[metrics]\nlisten = \"0.0.0.0:5061\""),
        ],
    );
    let errors = pki.load(&text, &[]).unwrap_err();
    let expected = [
        "edge.fqdn",
        "edge.workers",
        "internal.listen",
        "internal.next_hop",
        "internal.known_servers[1].version",
        "federation.allowed[1].domain",
        "federation.blocked[1].domain",
        "federation.hosted_providers[0].verification_level",
        "im_filter.action",
        "im_filter.blocked_prefixes[1]",
        "push.proxy_uri",
        "push.timeout_ms",
        "dns.servers[1]",
        "dns.hosts[0].ip",
        "limits.max_connections",
        "metrics.listen",
    ];
    let got: BTreeSet<&str> = keys(&errors).into_iter().collect();
    assert_eq!(got, expected.into_iter().collect(), "{errors:#?}");
    assert_eq!(
        at(&errors, "federation.allowed[1].domain").to_string(),
        "federation.allowed[1].domain: \"exa mple.com\" contains a character that is not a letter, digit, '-', '_' or '.'"
    );
    assert!(at(&errors, "federation.blocked[1].domain")
        .problem
        .contains("wildcard"));
    assert!(at(&errors, "internal.known_servers[1].version")
        .problem
        .starts_with("missing"));
    assert!(
        at(&errors, "metrics.listen").problem.contains("external.listen"),
        "0.0.0.0:5061 overlaps external"
    );
    assert!(at(&errors, "push.timeout_ms").problem.contains("100..=32000"));
}

#[test]
fn missing_required_keys_are_each_named() {
    let pki = Pki::new();
    let errors = pki.load("", &[]).unwrap_err();
    for key in [
        "edge.fqdn",
        "edge.sip_domains",
        "internal.listen",
        "internal.next_hop",
        "internal.cert_file",
        "internal.key_file",
        "internal.ca_file",
        "external.listen",
        "external.cert_file",
        "external.key_file",
    ] {
        assert!(at(&errors, key).problem.starts_with("missing"), "{key}");
    }
    assert_eq!(errors.len(), 10, "{errors:#?}");
}

#[test]
fn environment_overrides_the_file() {
    let pki = Pki::with_edge_cert();
    let env = [
        ("SIPEDGE__EDGE__FQDN", "sip.corp.example"),
        ("SIPEDGE__EDGE__SIP_DOMAINS", "corp.example, corp2.example"),
        ("SIPEDGE__EDGE__WORKERS", "4"),
        ("SIPEDGE__FEDERATION__ENABLE_PARTNER_DISCOVERY", "true"),
        ("SIPEDGE__PUSH__TIMEOUT_MS", "2500"),
        ("SIPEDGE__METRICS__LISTEN", "10.0.0.10:9464"),
        ("UNRELATED", "x"),
        ("SIPEDGE_SINGLE_UNDERSCORE", "ignored: not our prefix"),
    ];
    let c = pki.load(VALID_TOML, &env).unwrap();
    assert_eq!(c.edge().fqdn.as_str(), "sip.corp.example");
    let domains: Vec<&str> = c.edge().sip_domains.iter().map(|d| d.as_str()).collect();
    assert_eq!(domains, ["corp.example", "corp2.example"]);
    assert_eq!(c.edge().worker_count(), 4);
    assert_eq!(c.policy().discovery().map(|d| d.messages_per_second), Some(20));
    assert_eq!(c.push().timeout, Duration::from_millis(2500));
    assert_eq!(c.metrics().listen.to_string(), "10.0.0.10:9464");
    // The certificate covers sip.corp.example too; but internal.fqdn (edge.fqdn by default) is now a
    // name the push probe's identity does not have among the known servers.
    assert_eq!(keys(c.warnings()), ["internal.known_servers"]);
    assert!(c.warnings()[0]
        .problem
        .starts_with("internal.fqdn sip.corp.example is not a known server"));

    let errors = pki
        .load(
            VALID_TOML,
            &[
                ("SIPEDGE__EDGE__WORKERS", "many"),
                ("SIPEDGE__FEDERATION__ENABLE_PARTNER_DISCOVERY", "perhaps"),
            ],
        )
        .unwrap_err();
    assert_eq!(
        keys(&errors),
        ["edge.workers", "federation.enable_partner_discovery"]
    );
    assert!(
        errors[0].problem.contains("SIPEDGE__EDGE__WORKERS=\"many\""),
        "{errors:#?}"
    );
}

#[test]
fn unknown_keys_in_the_file_and_the_environment() {
    let pki = Pki::with_edge_cert();
    let text = with(
        "typo_section = 1\n",
        &[
            ("sip_domains = [", "fqnd = \"x\"\nsip_domains = ["),
            (
                "{ fqdn = \"fe2.corp.example\", version = \"8.0\" }",
                "{ fqdn = \"fe2.corp.example\", version = \"8.0\", pool = \"x\" }",
            ),
            ("comment = \"pinned\"", "comment = \"pinned\", port = 5062"),
        ],
    );
    let env = [
        ("SIPEDGE__PUSH__PROXY", "sip:x@y"),
        ("SIPEDGE__NOSUCH__KEY", "1"),
        ("SIPEDGE____FQDN", "x"),
    ];
    let errors = pki.load(&text, &env).unwrap_err();
    let got: BTreeSet<&str> = keys(&errors).into_iter().collect();
    let expected: BTreeSet<&str> = [
        "typo_section",
        "edge.fqnd",
        "internal.known_servers[1].pool",
        "federation.allowed[1].port",
        "push.proxy",
        "nosuch",
        "environment variable SIPEDGE____FQDN",
    ]
    .into_iter()
    .collect();
    assert_eq!(got, expected, "{errors:#?}");
    assert!(at(&errors, "edge.fqnd").problem.contains("did you mean `fqdn`"));
    assert!(at(&errors, "push.proxy").problem.contains("SIPEDGE__PUSH__PROXY"));
    assert!(at(&errors, "nosuch").problem.starts_with("unknown key"));
}

#[test]
fn wrong_types_are_reported_with_the_rest() {
    let pki = Pki::with_edge_cert();
    let text = with(
        "",
        &[
            (
                "sip_domains = [\"corp.example\"]",
                "sip_domains = \"corp.example\"\nworkers = -2",
            ),
            ("enabled = true", "enabled = \"yes\""),
            ("{ domain = \"evil.example\" }", "\"evil.example\""),
            (
                "action = \"warn\"",
                "action = \"warn\"\nblocked_prefixes = [\"http:\", 7]",
            ),
        ],
    );
    let errors = pki.load(&text, &[]).unwrap_err();
    assert_eq!(
        keys(&errors),
        [
            "edge.sip_domains",
            "federation.blocked[0]",
            "federation.hosted_providers[0].enabled",
            "im_filter.blocked_prefixes[1]",
            "edge.workers",
        ],
        "{errors:#?}"
    );
    assert!(errors[0]
        .problem
        .contains("expected a list of strings, found string \"corp.example\""));
}

/// A number out of its key's range gets one message, the range, whatever the value and wherever
/// it comes from (a negative one was "negative; expected a number >= 0" for a key whose range
/// starts at 1).
#[test]
fn a_number_out_of_range_gets_one_message() {
    let pki = Pki::with_edge_cert();
    for v in ["-1", "0", "1000001", "9223372036854775807"] {
        let text = with(
            "",
            &[(
                "[im_filter]",
                &format!("[limits]\nmax_connections = {v}\n\n[im_filter]"),
            )],
        );
        let errors = pki.load(&text, &[]).unwrap_err();
        assert_eq!(
            errors,
            [Issue {
                key: "limits.max_connections".to_owned(),
                problem: format!("{v} is out of range: expected 1..=1000000"),
            }]
        );
    }
    let errors = pki
        .load(VALID_TOML, &[("SIPEDGE__LIMITS__MAX_CONNECTIONS", "-5")])
        .unwrap_err();
    assert_eq!(errors[0].problem, "-5 is out of range: expected 1..=1000000");
    let errors = pki
        .load(VALID_TOML, &[("SIPEDGE__LIMITS__MAX_CONNECTIONS", "many")])
        .unwrap_err();
    assert!(
        errors[0].problem.ends_with("expected a whole number"),
        "{errors:?}"
    );
}

/// The edge asks at most `MAX_SERVERS` DNS servers (a socket each per worker): more is an error,
/// not a silent cut.
#[test]
fn more_dns_servers_than_are_used_is_an_error() {
    let pki = Pki::with_edge_cert();
    let list: Vec<String> = (1..=9).map(|n| format!("\"192.0.2.{n}:53\"")).collect();
    let text = with(
        "",
        &[(
            "[im_filter]",
            &format!("[dns]\nservers = [{}]\n\n[im_filter]", list.join(", ")),
        )],
    );
    let errors = pki.load(&text, &[]).unwrap_err();
    assert_eq!(keys(&errors), ["dns.servers"]);
    assert_eq!(
        errors[0].problem,
        "9 servers: at most 8 are used; list the 8 to ask"
    );
}

/// Names in the configuration are host names: `_` is refused with the rule it breaks.
#[test]
fn host_names_with_an_underscore_are_refused() {
    let pki = Pki::with_edge_cert();
    let text = with(
        "",
        &[
            ("fqdn = \"edge.corp.example\"", "fqdn = \"bad_name\""),
            (
                "next_hop = \"pool.corp.example\"",
                "next_hop = \"pool_1.corp.example:5061\"",
            ),
        ],
    );
    let errors = pki.load(&text, &[]).unwrap_err();
    assert_eq!(keys(&errors), ["edge.fqdn", "internal.next_hop"], "{errors:#?}");
    assert_eq!(
        errors[0].problem,
        "\"bad_name\" contains '_': a host name has letters, digits, '-' and '.' only (RFC 1123)"
    );
}

#[test]
fn toml_syntax_errors_name_the_line() {
    let pki = Pki::new();
    let errors = pki
        .load("[edge]\nfqdn = \"x\"\nsip_domains = [\n", &[])
        .unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].key.ends_with("sipedge.toml"), "{errors:?}");
    assert!(
        errors[0].problem.starts_with("TOML syntax error at line"),
        "{errors:?}"
    );
    assert!(!errors[0].problem.contains('\n'));
}

#[test]
fn known_server_conflict_names_both_entries() {
    let pki = Pki::with_edge_cert();
    let text = with(
        "",
        &[(
            "{ fqdn = \"fe2.corp.example\", version = \"8.0\" },",
            "{ fqdn = \"fe2.corp.example\", version = \"8.0\" },\n  { fqdn = \"FE1.corp.example:5061\", version = \"7.0\" },\n  { fqdn = \"fe2.corp.example\", version = \"8.0\" },",
        )],
    );
    let invalid = pki.check(&text).unwrap_err();
    let errors = invalid.errors;
    assert_eq!(errors.len(), 1, "an identical repeat is no conflict: {errors:#?}");
    assert_eq!(
        invalid.warnings,
        [Issue {
            key: "internal.known_servers[3]".to_owned(),
            problem: "fe2.corp.example version 8 repeats internal.known_servers[1] exactly: keep one of the two entries"
                .to_owned(),
        }]
    );
    let e = at(&errors, "internal.known_servers[2]");
    assert!(e.problem.contains("internal.known_servers[0]"), "{e}");
    assert!(
        e.problem.contains("\"8.0\"") && e.problem.contains("\"7.0\""),
        "{e}"
    );
    assert!(
        e.problem.contains("fe1.corp.example:5061") && e.problem.contains("fe1.corp.example,"),
        "{e}"
    );
}

#[test]
fn policy_contradictions_become_key_paths() {
    let pki = Pki::with_edge_cert();
    let text = with(
        "",
        &[
            ("{ domain = \"push.lync.com\" },", "{ domain = \"push.lync.com\" },\n  { domain = \"PUSH.lync.com.\" },\n  { domain = \"corp.example\" },"),
            ("{ domain = \"evil.example\" }", "{ domain = \"evil.example\" }, { domain = \"partner.example\" }, { domain = \"evil.example\" }"),
            (
                "verification_level = \"AlwaysVerifiable\" },",
                "verification_level = \"AlwaysVerifiable\" },\n  { name = \"Other\", proxy_fqdn = \"SIPFED.online.lync.com:5061\", enabled = false },",
            ),
        ],
    );
    let errors = pki.load(&text, &[]).unwrap_err();
    let got: BTreeSet<&str> = keys(&errors).into_iter().collect();
    let expected: BTreeSet<&str> = [
        "federation.allowed[1].domain",
        "federation.blocked[1].domain",
        "federation.blocked[2].domain",
        "edge.sip_domains[0]",
        "federation.hosted_providers[1]",
    ]
    .into_iter()
    .collect();
    assert_eq!(got, expected, "{errors:#?}");
    assert!(at(&errors, "federation.allowed[1].domain")
        .problem
        .contains("federation.allowed[0]"));
    assert!(at(&errors, "federation.blocked[1].domain")
        .problem
        .contains("federation.allowed[3]"));
    assert!(at(&errors, "federation.blocked[2].domain")
        .problem
        .contains("federation.blocked[0]"));
    assert!(at(&errors, "edge.sip_domains[0]")
        .problem
        .contains("federation.allowed[2]"));
    let p = at(&errors, "federation.hosted_providers[1]");
    assert!(
        p.problem.contains("federation.hosted_providers[0]") && p.problem.contains("\"LyncOnline\""),
        "{p}"
    );
}

#[test]
fn a_uri_where_a_host_name_belongs_is_said_to_be_one() {
    let pki = Pki::with_edge_cert();
    let text = with(
        "",
        &[
            (
                "next_hop = \"pool.corp.example\"",
                "next_hop = \"sip:pool.corp.example\"",
            ),
            (
                "proxy_fqdn = \"sip.partner.example:5062\"",
                "proxy_fqdn = \"http://sip.partner.example:5062/\"",
            ),
            (
                "proxy_fqdn = \"sipfed.online.lync.com\"",
                "proxy_fqdn = \"sips:user@sipfed.online.lync.com;transport=tls\"",
            ),
        ],
    );
    let errors = pki.load(&text, &[]).unwrap_err();
    assert_eq!(
        keys(&errors),
        [
            "internal.next_hop",
            "federation.allowed[1].proxy_fqdn",
            "federation.hosted_providers[0].proxy_fqdn"
        ],
        "{errors:#?}"
    );
    assert_eq!(
        errors[0].problem,
        "\"sip:pool.corp.example\" is a URI: write a host name, not a URI, with an optional :port (here \"pool.corp.example\")"
    );
    assert_eq!(
        errors[1].problem,
        "\"http://sip.partner.example:5062/\" is a URI: write a host name, not a URI, with an optional :port (here \"sip.partner.example:5062\")"
    );
    assert!(
        errors[2].problem.ends_with("(here \"sipfed.online.lync.com\")"),
        "{errors:#?}"
    );
    // A host with a bad port is still a port error.
    let text = with(
        "",
        &[(
            "next_hop = \"pool.corp.example\"",
            "next_hop = \"pool.corp.example:sip\"",
        )],
    );
    let errors = pki.load(&text, &[]).unwrap_err();
    assert!(
        !at(&errors, "internal.next_hop").problem.contains("URI"),
        "{errors:#?}"
    );
}

#[test]
fn metrics_never_listen_on_the_external_address() {
    let pki = Pki::with_edge_cert();
    let text = |listen: &str| with(&format!("[metrics]\nlisten = \"{listen}\"\n"), &[]);
    for listen in ["192.0.2.10:9464", "0.0.0.0:9464", "192.0.2.10:5061"] {
        let errors = pki.load(&text(listen), &[]).unwrap_err();
        assert_eq!(
            errors,
            [Issue {
                key: "metrics.listen".to_owned(),
                problem: format!(
                    "{listen} is on the external listener's address (external.listen 192.0.2.10:5061): metrics \
                     never face the partners; listen on the internal side's address or loopback (default 127.0.0.1:9464), \
                     or, in a pod where a network policy separates the ports, set metrics.network_policy = true"
                ),
            }]
        );
    }
    for listen in ["10.0.0.10:9464", "127.0.0.1:9464", "127.0.0.1:5061"] {
        assert!(pki.load(&text(listen), &[]).is_ok(), "{listen}");
    }
    // A pod: one IP, every side on 0.0.0.0, a network policy separating the ports. Allowed when said
    // so, with a warning naming what protects the metrics; the same port is still an error.
    let pod = |metrics: &str, policy: &str| {
        with(
            &format!("[metrics]\nlisten = \"{metrics}\"\n{policy}"),
            &[
                ("192.0.2.10:5061", "0.0.0.0:5071"),
                ("10.0.0.10:5061", "0.0.0.0:5061"),
            ],
        )
    };
    let errors = pki.load(&pod("0.0.0.0:9464", ""), &[]).unwrap_err();
    assert_eq!(keys(&errors), ["metrics.listen"]);
    let c = pki
        .load(&pod("0.0.0.0:9464", "network_policy = true\n"), &[])
        .unwrap();
    assert_eq!(keys(c.warnings()), ["metrics.network_policy"]);
    assert!(
        c.warnings()[0]
            .problem
            .contains("only a network policy keeps partners away"),
        "{:?}",
        c.warnings()
    );
    let errors = pki
        .load(&pod("0.0.0.0:5071", "network_policy = true\n"), &[])
        .unwrap_err();
    assert_eq!(
        keys(&errors),
        ["metrics.listen"],
        "the external port itself stays an error"
    );
}

#[test]
fn lists_of_tables_cannot_come_from_the_environment() {
    let pki = Pki::with_edge_cert();
    let env = [
        ("SIPEDGE__FEDERATION__ALLOWED", "partner.example"),
        ("SIPEDGE__INTERNAL__KNOWN_SERVERS__0__VERSION", "6"),
    ];
    let errors = pki.load(VALID_TOML, &env).unwrap_err();
    let lists = "internal.known_servers, federation.allowed, federation.blocked, \
                 federation.hosted_providers, dns.hosts";
    let got: Vec<String> = errors.iter().map(Issue::to_string).collect();
    assert_eq!(
        got,
        [
            format!(
                "internal.known_servers: set by environment variable SIPEDGE__INTERNAL__KNOWN_SERVERS__0__VERSION: \
                 a list of tables ([[internal.known_servers]]) cannot be set from the environment; such keys \
                 ({lists}) are set in the configuration file"
            ),
            format!(
                "federation.allowed: set by environment variable SIPEDGE__FEDERATION__ALLOWED: a list of tables \
                 ([[federation.allowed]]) cannot be set from the environment; such keys ({lists}) are set in \
                 the configuration file"
            ),
        ]
    );
}

#[test]
fn known_server_versions_are_numbers_and_exact_repeats_warn() {
    let pki = Pki::with_edge_cert();
    let entries = "{ fqdn = \"fe1.corp.example\", version = \"8.0\" },\n  { fqdn = \"fe2.corp.example\", version = \"8.0\" },";
    let text = with(
        "",
        &[(
            entries,
            "{ fqdn = \"fe1.corp.example\", version = 6 },\n  { fqdn = \"fe2.corp.example\", version = \"7\" },\n  \
             { fqdn = \"mcx.corp.example\", version = 0 },\n  { fqdn = \"fe2.corp.example:5061\", version = \"7.0\" },\n  \
             { fqdn = \"fe3.corp.example\", version = 5.0 },",
        )],
    );
    let c = pki.load(&text, &[]).unwrap();
    assert_eq!(
        c.warnings(),
        [Issue {
            key: "internal.known_servers[3]".to_owned(),
            problem: "fe2.corp.example:5061 version 7 repeats internal.known_servers[1] exactly: keep one of the two entries"
                .to_owned(),
        }]
    );
    let versions: Vec<(String, &str)> = c
        .policy()
        .known_servers()
        .map(|k| (k.fqdn.to_string(), k.version.as_str()))
        .collect();
    assert_eq!(
        versions,
        [
            ("edge.corp.example".to_owned(), "0"),
            ("fe1.corp.example".to_owned(), "6"),
            ("fe2.corp.example".to_owned(), "7"),
            ("fe3.corp.example".to_owned(), "5"),
            ("mcx.corp.example".to_owned(), "0"),
        ]
    );

    let text = with(
        "",
        &[(
            entries,
            "{ fqdn = \"fe1.corp.example\", version = \"Lync 2013\" },\n  { fqdn = \"fe2.corp.example\", version = -1 },\n  \
             { fqdn = \"fe3.corp.example\", version = \"7.\" },",
        )],
    );
    let errors = pki.load(&text, &[]).unwrap_err();
    let got: Vec<String> = errors.iter().map(Issue::to_string).collect();
    assert_eq!(
        got,
        [
            "internal.known_servers[1].version: expected a version number (6, \"7.0\"), found integer -1",
            "internal.known_servers[0].version: \"Lync 2013\" is not a version number (fe1.corp.example): write the \
             server's version, a number as Lync writes it (6 = Lync 2013, 5 = Lync 2010, 0 = any)",
            "internal.known_servers[2].version: \"7.\" is not a version number (fe3.corp.example): write the \
             server's version, a number as Lync writes it (6 = Lync 2013, 5 = Lync 2010, 0 = any)",
        ]
    );
}

#[test]
fn version_numbers_in_their_shortest_form() {
    use super::sections::version_number;
    for (written, canonical) in [
        ("6", "6"),
        ("7.0", "7"),
        (" 07.10 ", "7.1"),
        ("0", "0"),
        ("00.00", "0"),
    ] {
        assert_eq!(version_number(written).as_deref(), Some(canonical), "{written:?}");
    }
    for bad in ["", ".5", "7.", "7.0.1", "-1", "six", "6 5"] {
        assert_eq!(version_number(bad), None, "{bad:?}");
    }
}

#[test]
fn push_relay_keys_default_and_become_relay_settings() {
    let pki = Pki::with_edge_cert();
    let c = pki.load(VALID_TOML, &[]).unwrap();
    let want = push_relay::RelaySettings {
        timeout: Duration::from_millis(10_000),
        max_retries: 1,
        backoff_initial: Duration::from_millis(200),
        backoff_max: Duration::from_millis(2_000),
        breaker_failures: 5,
        breaker_cooldown: Duration::from_millis(30_000),
    };
    assert_eq!(c.push().relay_settings(), want);

    let text = with(
        "",
        &[(
            "[im_filter]",
            "[push]\ntimeout_ms = 4000\nmax_retries = 3\nbackoff_ms = 0\nbackoff_max_ms = 0\n\
             breaker_failures = 1000\nbreaker_cooldown_ms = 3600000\n\n[im_filter]",
        )],
    );
    let c = pki.load(&text, &[]).unwrap();
    let want = push_relay::RelaySettings {
        timeout: Duration::from_millis(4_000),
        max_retries: 3,
        backoff_initial: Duration::ZERO,
        backoff_max: Duration::ZERO,
        breaker_failures: 1000,
        breaker_cooldown: Duration::from_secs(3600),
    };
    assert_eq!(c.push().relay_settings(), want);
    assert_eq!(c.warnings(), &[] as &[Issue], "16 s of budget is within Timer F");

    let env = [
        ("SIPEDGE__PUSH__MAX_RETRIES", "0"),
        ("SIPEDGE__PUSH__BREAKER_COOLDOWN_MS", "1000"),
    ];
    let c = pki.load(VALID_TOML, &env).unwrap();
    assert_eq!(c.push().max_retries, 0);
    assert_eq!(c.push().breaker_cooldown, Duration::from_secs(1));
}

#[test]
fn push_relay_keys_out_of_range_are_each_named() {
    let pki = Pki::with_edge_cert();
    // (the [push] lines, the key with the error, a text the problem must contain)
    let cases: &[(&str, &str, &str)] = &[
        ("max_retries = 6", "push.max_retries", "0..=5"),
        ("backoff_ms = 10001", "push.backoff_ms", "0..=10000"),
        ("backoff_max_ms = 60001", "push.backoff_max_ms", "0..=60000"),
        (
            "backoff_ms = 500\nbackoff_max_ms = 499",
            "push.backoff_max_ms",
            "below push.backoff_ms (500)",
        ),
        (
            "backoff_max_ms = 100",
            "push.backoff_max_ms",
            "below push.backoff_ms (200)",
        ),
        ("breaker_failures = 0", "push.breaker_failures", "1..=1000"),
        ("breaker_failures = 1001", "push.breaker_failures", "1..=1000"),
        (
            "breaker_cooldown_ms = 999",
            "push.breaker_cooldown_ms",
            "1000..=3600000",
        ),
        (
            "breaker_cooldown_ms = 3600001",
            "push.breaker_cooldown_ms",
            "1000..=3600000",
        ),
        (
            "max_retries = -1",
            "push.max_retries",
            "-1 is out of range: expected 0..=5",
        ),
        ("breaker_failures = \"five\"", "push.breaker_failures", ""),
        ("breaker_probe = 1", "push.breaker_probe", "unknown"),
    ];
    for (lines, key, text) in cases {
        let file = with("", &[("[im_filter]", &format!("[push]\n{lines}\n\n[im_filter]"))]);
        let errors = pki.load(&file, &[]).unwrap_err();
        assert_eq!(keys(&errors), [*key], "{lines}: {errors:#?}");
        assert!(at(&errors, key).problem.contains(text), "{lines}: {errors:#?}");
    }
}

#[test]
fn push_timeout_must_be_shorter_than_timer_f() {
    let pki = Pki::with_edge_cert();
    let push_and_limits = |push: &str, limits: &str| {
        with(
            "",
            &[(
                "[im_filter]",
                &format!("[push]\n{push}\n[limits]\n{limits}\n\n[im_filter]"),
            )],
        )
    };
    // Written and not below Timer F: an error naming the key and the rule.
    for (push, limits) in [
        ("timeout_ms = 5000", "transaction_timeout_ms = 5000"),
        ("timeout_ms = 5001", "transaction_timeout_ms = 5000"),
        ("timeout_ms = 32000", ""),
    ] {
        let errors = pki.load(&push_and_limits(push, limits), &[]).unwrap_err();
        assert_eq!(keys(&errors), ["push.timeout_ms"], "{push} / {limits}");
        assert!(
            at(&errors, "push.timeout_ms")
                .problem
                .contains("the relay's own timeout must be shorter than Timer F"),
            "{errors:#?}"
        );
    }
    let c = pki
        .load(
            &push_and_limits("timeout_ms = 4999", "transaction_timeout_ms = 5000"),
            &[],
        )
        .unwrap();
    assert_eq!(c.push().timeout, Duration::from_millis(4999));
    // Not written: 10 s or a third of Timer F, whichever is shorter, at least 100 ms.
    for (timer_f, want) in [
        (32_000, 10_000),
        (60_000, 10_000),
        (9_000, 3_000),
        (1_500, 500),
        (300, 100),
    ] {
        let c = pki
            .load(
                &push_and_limits("", &format!("transaction_timeout_ms = {timer_f}")),
                &[],
            )
            .unwrap();
        assert_eq!(c.push().timeout, Duration::from_millis(want), "Timer F {timer_f}");
    }
    let errors = pki
        .load(&push_and_limits("", "transaction_timeout_ms = 100"), &[])
        .unwrap_err();
    assert_eq!(keys(&errors), ["push.timeout_ms"]);
}

#[test]
fn a_push_whose_retries_outlast_timer_f_is_warned_about() {
    let pki = Pki::with_edge_cert();
    let file = with(
        "",
        &[("[im_filter]", "[push]\ntimeout_ms = 20000\n\n[im_filter]")],
    );
    let c = pki.load(&file, &[]).unwrap();
    assert_eq!(keys(c.warnings()), ["push.max_retries"]);
    assert!(
        c.warnings()[0].problem.contains("40200 ms"),
        "{:#?}",
        c.warnings()
    );
    let file = with(
        "",
        &[(
            "[im_filter]",
            "[push]\ntimeout_ms = 20000\nmax_retries = 0\n\n[im_filter]",
        )],
    );
    assert_eq!(pki.load(&file, &[]).unwrap().warnings(), &[] as &[Issue]);
}

/// `[pool]` through the file and the environment: the Kubernetes Deployment names each replica by
/// its pod (`SIPEDGE__POOL__REPLICA` from the Downward API); without the section the edge is
/// standalone.
#[test]
fn the_pool_section_takes_its_replica_from_the_environment() {
    let pki = Pki::with_edge_cert();
    assert!(
        pki.load(VALID_TOML, &[]).unwrap().pool().is_none(),
        "standalone by default"
    );
    let text = format!("{VALID_TOML}\n[pool]\nredis = \"redis://10.0.0.5:6379\"\nreplica = \"from-file\"\n");
    let c = pki
        .load(&text, &[("SIPEDGE__POOL__REPLICA", "sipedge-7d9f-x2k")])
        .unwrap();
    let pool = c.pool().unwrap();
    assert_eq!(pool.replica, "sipedge-7d9f-x2k");
    assert_eq!(pool.redis, "redis://10.0.0.5:6379");
    let errors = pki
        .load(&format!("{VALID_TOML}\n[pool]\nreplica = \"a\"\n"), &[])
        .unwrap_err();
    assert!(errors.iter().any(|e| e.key == "pool.redis"), "{errors:?}");
}
