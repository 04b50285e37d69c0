//! Unit tests of the reload diff: what is logged for each kind of change (domains, providers, known
//! servers with their Lync events, certificates with old and new serial and expiry, limits, other
//! settings), nothing for an identical file, and the keys only a restart applies.

use serde_json::Value;

use super::*;
use crate::config::test_support::{with, Pki, VALID_TOML};

/// The records of one event kind.
fn of<'a>(records: &'a [Value], event: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["event"] == event).collect()
}

#[test]
fn an_identical_file_changes_nothing_and_needs_no_restart() {
    let pki = Pki::with_edge_cert();
    let a = pki.load(VALID_TOML, &[]).unwrap();
    let b = pki.load(VALID_TOML, &[]).unwrap();
    assert_eq!(changes(&a, &b), Vec::<Value>::new());
    assert_eq!(Fixed::of(&a).refused(&b), []);
}

#[test]
fn federation_lists_and_providers_are_logged_per_entry() {
    let pki = Pki::with_edge_cert();
    let old = pki.load(VALID_TOML, &[]).unwrap();
    let text = with(
        "",
        &[
            (
                r#"{ domain = "push.lync.com" },"#,
                r#"{ domain = "new.example" },"#,
            ),
            ("sip.partner.example:5062", "edge.partner.example"),
            (
                r#"blocked = [{ domain = "evil.example" }]"#,
                r#"blocked = [{ domain = "worse.example" }]"#,
            ),
            ("enabled = true", "enabled = false"),
        ],
    );
    let new = pki.load(&text, &[]).unwrap();
    let records = changes(&old, &new);
    let allowed = of(&records, "federation_allowed");
    let summary: Vec<(&str, &str)> = allowed
        .iter()
        .map(|r| (r["change"].as_str().unwrap(), r["domain"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("changed", "partner.example"),
            ("removed", "push.lync.com"),
            ("added", "new.example")
        ],
        "{records:#?}"
    );
    assert_eq!(allowed[0]["proxy_fqdn"], "edge.partner.example");
    assert_eq!(allowed[0]["old_proxy_fqdn"], "sip.partner.example:5062");
    let blocked = of(&records, "federation_blocked");
    assert_eq!(blocked.len(), 2, "{records:#?}");
    assert_eq!(
        (&blocked[0]["change"], &blocked[0]["domain"]),
        (&"removed".into(), &"evil.example".into())
    );
    assert_eq!(
        (&blocked[1]["change"], &blocked[1]["domain"]),
        (&"added".into(), &"worse.example".into())
    );
    let providers = of(&records, "hosted_provider");
    assert_eq!(providers.len(), 1, "{records:#?}");
    assert_eq!(providers[0]["change"], "changed");
    assert_eq!(providers[0]["name"], "LyncOnline");
    assert_eq!(
        (&providers[0]["enabled"], &providers[0]["old_enabled"]),
        (&false.into(), &true.into())
    );
}

#[test]
fn known_servers_carry_the_lync_add_and_remove_events() {
    let pki = Pki::with_edge_cert();
    let old = pki.load(VALID_TOML, &[]).unwrap();
    let text = with(
        "",
        &[(
            r#"{ fqdn = "fe2.corp.example", version = "8.0" },"#,
            r#"{ fqdn = "fe3.corp.example", version = "6" },"#,
        )],
    );
    let new = pki.load(&text, &[]).unwrap();
    let records = changes(&old, &new);
    let known = of(&records, "known_server");
    let summary: Vec<(&str, &str, u64)> = known
        .iter()
        .map(|r| {
            (
                r["change"].as_str().unwrap(),
                r["fqdn"].as_str().unwrap(),
                r["lync_event"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("removed", "fe2.corp.example", 14495),
            ("added", "fe3.corp.example", 14493)
        ],
        "{records:#?}"
    );
}

#[test]
fn a_replaced_certificate_is_logged_with_old_and_new_serial_and_expiry() {
    let pki = Pki::with_edge_cert();
    let old = pki.load(VALID_TOML, &[]).unwrap();
    // Same files, a new certificate in them (another key, serial and expiry).
    pki.leaf("edge", &["edge.corp.example", "sip.corp.example"], 200);
    let new = pki.load(VALID_TOML, &[]).unwrap();
    let records = changes(&old, &new);
    let certs = of(&records, "certificate_replaced");
    assert_eq!(certs.len(), 2, "both sides use edge.crt: {records:#?}");
    let (internal, external) = (certs[0], certs[1]);
    assert_eq!(
        (&internal["side"], &external["side"]),
        (&"internal".into(), &"external".into())
    );
    assert_ne!(internal["serial"], internal["old_serial"], "{internal}");
    assert!(!internal["serial"].as_str().unwrap().is_empty());
    assert!(
        internal["not_after"].as_i64().unwrap() < internal["old_not_after"].as_i64().unwrap(),
        "200 days instead of 365: {internal}"
    );
    assert!(internal["subject"]
        .as_str()
        .unwrap()
        .contains("edge.corp.example"));
    assert!(internal["expires"].as_str().unwrap().ends_with("UTC"));
    assert_eq!(records.len(), 2, "nothing else changed: {records:#?}");
}

#[test]
fn limits_and_settings_are_logged_with_old_and_new_values() {
    let pki = Pki::with_edge_cert();
    let old = pki.load(VALID_TOML, &[]).unwrap();
    let text = with(
        "",
        &[
            (
                r#"next_hop = "pool.corp.example""#,
                r#"next_hop = "pool2.corp.example""#,
            ),
            (
                "[im_filter]",
                "[limits]\nmax_connections = 77\ntransaction_timeout_ms = 9000\n\n[im_filter]",
            ),
        ],
    );
    let new = pki.load(&text, &[]).unwrap();
    let records = changes(&old, &new);
    let limits = of(&records, "limit_changed");
    let keys: Vec<(&str, &str)> = limits
        .iter()
        .map(|r| (r["key"].as_str().unwrap(), r["new"].as_str().unwrap()))
        .collect();
    assert_eq!(
        keys,
        [
            ("limits.max_connections", "77"),
            ("limits.transaction_timeout_ms", "9000")
        ],
        "{records:#?}"
    );
    let settings = of(&records, "setting_changed");
    assert_eq!(settings.len(), 2, "{records:#?}");
    assert_eq!(settings[0]["key"], "internal.next_hop");
    assert_eq!(settings[0]["old"], "pool.corp.example");
    assert_eq!(settings[0]["new"], "pool2.corp.example");
    // push.timeout_ms is not written: its default follows Timer F (a third of 9000 ms).
    assert_eq!(settings[1]["key"], "push.timeout_ms");
    assert_eq!(settings[1]["old"], "10000");
    assert_eq!(settings[1]["new"], "3000");
}

#[test]
fn push_relay_settings_are_logged() {
    let pki = Pki::with_edge_cert();
    let old = pki.load(VALID_TOML, &[]).unwrap();
    let text = with(
        "",
        &[(
            "[im_filter]",
            "[push]\nmax_retries = 2\nbackoff_ms = 100\nbackoff_max_ms = 900\nbreaker_failures = 7\n\
             breaker_cooldown_ms = 5000\n\n[im_filter]",
        )],
    );
    let new = pki.load(&text, &[]).unwrap();
    let records = changes(&old, &new);
    let got: Vec<(&str, &str, &str)> = of(&records, "setting_changed")
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap();
            (s("key"), s("old"), s("new"))
        })
        .collect();
    assert_eq!(
        got,
        [
            ("push.max_retries", "1", "2"),
            ("push.backoff_ms", "200", "100"),
            ("push.backoff_max_ms", "2000", "900"),
            ("push.breaker_failures", "5", "7"),
            ("push.breaker_cooldown_ms", "30000", "5000"),
        ],
        "{records:#?}"
    );
}

#[test]
fn listener_addresses_and_workers_need_a_restart() {
    let pki = Pki::with_edge_cert();
    let old = pki.load(VALID_TOML, &[]).unwrap();
    let text = with(
        "",
        &[
            ("10.0.0.10:5061", "10.0.0.11:5061"),
            ("[edge]\n", "[edge]\nworkers = 3\n"),
            (
                "[im_filter]",
                "[metrics]\nlisten = \"127.0.0.1:9999\"\n\n[im_filter]",
            ),
        ],
    );
    let new = pki.load(&text, &[]).unwrap();
    let refused = Fixed::of(&old).refused(&new);
    let keys: Vec<(&str, &str, &str)> = refused
        .iter()
        .map(|r| (r.key, r.old.as_str(), r.new.as_str()))
        .collect();
    assert_eq!(keys.len(), 3, "{refused:#?}");
    assert_eq!(keys[0], ("internal.listen", "10.0.0.10:5061", "10.0.0.11:5061"));
    assert_eq!(keys[1].0, "metrics.listen");
    assert_eq!(keys[1].2, "127.0.0.1:9999");
    assert_eq!(keys[2], ("edge.workers", "0 (one per core)", "3"));
    // The listener addresses are not runtime changes: nothing else is logged.
    assert_eq!(changes(&old, &new), Vec::<Value>::new());
}

/// The IM filter's change reads as the configuration writes it (it logged Rust's Debug text,
/// `Block ["callto:", …]`).
#[test]
fn an_im_filter_change_is_logged_in_the_configurations_words() {
    let pki = Pki::with_edge_cert();
    let old = pki.load(VALID_TOML, &[]).unwrap();
    let text = with(
        "",
        &[(
            "action = \"warn\"",
            "action = \"block\"\nblocked_prefixes = [\"callto:\", \"ftp:\"]",
        )],
    );
    let new = pki.load(&text, &[]).unwrap();
    let records = changes(&old, &new);
    let filter = of(&records, "setting_changed");
    assert_eq!(filter.len(), 1, "{records:#?}");
    assert_eq!(filter[0]["key"], "im_filter");
    assert_eq!(
        filter[0]["new"],
        "action = \"block\", blocked_prefixes = [\"callto:\", \"ftp:\"]"
    );
    assert!(filter[0]["old"]
        .as_str()
        .unwrap()
        .starts_with("action = \"warn\", blocked_prefixes = [\"callto:\""));
    assert!(
        !filter[0]["text"].as_str().unwrap().contains("Block"),
        "{}",
        filter[0]
    );
}

/// `[pool]` needs a restart (the sync thread and the replica's name are fixed at start): adding it,
/// changing it, or changing only its password is refused, and no password is quoted.
#[test]
fn the_pool_needs_a_restart_and_its_password_is_never_quoted() {
    let pki = Pki::with_edge_cert();
    let old = pki.load(VALID_TOML, &[]).unwrap();
    let pooled = |url: &str| {
        let mut t = VALID_TOML.to_owned();
        t.push_str(&format!("\n[pool]\nredis = \"{url}\"\nreplica = \"edge-a\"\n"));
        pki.load(&t, &[]).unwrap()
    };
    let a = pooled("redis://u:first-secret@10.0.0.5:6379");
    let refused = Fixed::of(&old).refused(&a);
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(refused[0].key, "pool");
    assert_eq!(refused[0].old, "none (standalone)");
    assert_eq!(
        refused[0].new,
        "redis://10.0.0.5:6379 as replica edge-a (redis_down divide, user u)"
    );
    let b = pooled("redis://u:second-secret@10.0.0.5:6379");
    let refused = Fixed::of(&a).refused(&b);
    let keys: Vec<&str> = refused.iter().map(|r| r.key).collect();
    assert_eq!(keys, ["pool.redis_password"]);
    let text = format!("{refused:?} {:?} {:?}", Fixed::of(&a), Fixed::of(&b));
    assert!(!text.contains("secret"), "{text}");
    assert_eq!(
        Fixed::of(&b).refused(&pooled("redis://u:second-secret@10.0.0.5:6379")),
        []
    );
}
