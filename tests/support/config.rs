//! The edge configuration of the proxy scenarios: `edge.corp.test` serving `corp.test`, the front end
//! `fe1.corp.test` as internal next hop and only known server, the partner `partner.test` pinned to
//! `edge.partner.test:<port>`, static DNS entries for every name on 127.0.0.1, short timers.

use std::fmt::Write as _;

use super::pki::TestPki;

#[derive(Debug, Clone)]
pub struct EdgeOpts {
    /// Port of the front end's UAS (the internal next hop `fe1.corp.test:<port>`).
    pub fe_port: u16,
    /// Port of the partner's UAS (`edge.partner.test:<port>`).
    pub partner_port: u16,
    pub transaction_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// `None`: the default (181000).
    pub invite_timeout_ms: Option<u64>,
    /// More allowed partners: (domain, proxy_fqdn with port).
    pub extra_allowed: Vec<(String, String)>,
    pub blocked: Vec<String>,
    /// More static DNS names, all on 127.0.0.1.
    pub extra_hosts: Vec<String>,
    pub workers: u32,
    /// More allowed partners without a pinned proxy FQDN (routed by their SRV record).
    pub allowed_srv: Vec<String>,
    /// `[[federation.hosted_providers]]`: (name, proxy_fqdn, enabled, verification_level).
    pub hosted_providers: Vec<(String, String, bool, String)>,
    pub enable_partner_discovery: bool,
    /// `None`: the default (20).
    pub discovery_messages_per_second: Option<u64>,
    /// `None`: the default (1000).
    pub discovery_contacts_per_hour: Option<u64>,
    /// `None`: the default (5000).
    pub message_timeout_ms: Option<u64>,
    /// Appended as written (whole tables, e.g. `[push]` with its keys).
    pub extra_toml: String,
    /// `[dns] servers`; empty: a dead loopback port (names come from the static entries only).
    pub dns_servers: Vec<String>,
    /// `None`: the default.
    pub keepalive_interval_s: Option<u64>,
    /// `None`: the default (10000).
    pub max_connections: Option<u64>,
}

impl EdgeOpts {
    pub fn new(fe_port: u16, partner_port: u16) -> EdgeOpts {
        EdgeOpts {
            fe_port,
            partner_port,
            transaction_timeout_ms: 1500,
            connect_timeout_ms: 1000,
            invite_timeout_ms: None,
            extra_allowed: Vec::new(),
            blocked: Vec::new(),
            extra_hosts: Vec::new(),
            workers: 2,
            allowed_srv: Vec::new(),
            hosted_providers: Vec::new(),
            enable_partner_discovery: false,
            discovery_messages_per_second: None,
            discovery_contacts_per_hour: None,
            dns_servers: Vec::new(),
            message_timeout_ms: None,
            extra_toml: String::new(),
            keepalive_interval_s: None,
            max_connections: None,
        }
    }

    /// The hosted provider LyncOnline (`sipfed.online.lync.com`), enabled.
    pub fn lync_online(&mut self) {
        self.hosted_providers.push((
            "LyncOnline".into(),
            "sipfed.online.lync.com".into(),
            true,
            "AlwaysVerifiable".into(),
        ));
    }

    pub fn render(&self, pki: &TestPki) -> String {
        let p = |path: &std::path::Path| path.display().to_string();
        let mut s = String::new();
        writeln!(
            s,
            r#"[edge]
fqdn = "edge.corp.test"
sip_domains = ["corp.test"]
workers = {workers}

[internal]
fqdn = "edge-int.corp.test"
listen = "127.0.0.1:0"
next_hop = "fe1.corp.test:{fe_port}"
cert_file = "{int_cert}"
key_file = "{int_key}"
ca_file = "{int_ca}"

[[internal.known_servers]]
fqdn = "fe1.corp.test"
version = "7.0"

[external]
listen = "127.0.0.1:0"
cert_file = "{ext_cert}"
key_file = "{ext_key}"
ca_file = "{partner_ca}"

[federation]
enable_partner_discovery = {discovery}
{discovery_rate}
[[federation.allowed]]
domain = "partner.test"
proxy_fqdn = "edge.partner.test:{partner_port}"
"#,
            workers = self.workers,
            discovery = self.enable_partner_discovery,
            discovery_rate = self
                .discovery_messages_per_second
                .map(|n| format!("discovery_messages_per_second = {n}\n"))
                .into_iter()
                .chain(
                    self.discovery_contacts_per_hour
                        .map(|n| format!("discovery_contacts_per_hour = {n}\n")),
                )
                .collect::<String>(),
            fe_port = self.fe_port,
            partner_port = self.partner_port,
            int_cert = p(&pki.edge_internal.cert_file),
            int_key = p(&pki.edge_internal.key_file),
            int_ca = p(&pki.internal_ca.file),
            ext_cert = p(&pki.edge_external.cert_file),
            ext_key = p(&pki.edge_external.key_file),
            partner_ca = p(&pki.partner_ca.file),
        )
        .unwrap();
        for (domain, proxy) in &self.extra_allowed {
            writeln!(
                s,
                "[[federation.allowed]]\ndomain = \"{domain}\"\nproxy_fqdn = \"{proxy}\"\n"
            )
            .unwrap();
        }
        for domain in &self.allowed_srv {
            writeln!(s, "[[federation.allowed]]\ndomain = \"{domain}\"\n").unwrap();
        }
        for domain in &self.blocked {
            writeln!(s, "[[federation.blocked]]\ndomain = \"{domain}\"\n").unwrap();
        }
        for (name, fqdn, enabled, level) in &self.hosted_providers {
            writeln!(
                s,
                "[[federation.hosted_providers]]\nname = \"{name}\"\nproxy_fqdn = \"{fqdn}\"\nenabled = {enabled}\nverification_level = \"{level}\"\n"
            )
            .unwrap();
        }
        if self.dns_servers.is_empty() {
            // No resolver off this machine: names come from the static entries (a dead loopback
            // port for anything else).
            s.push_str("[dns]\nservers = [\"127.0.0.1:53\"]\n\n");
        } else {
            let list: Vec<String> = self.dns_servers.iter().map(|a| format!("\"{a}\"")).collect();
            writeln!(s, "[dns]\nservers = [{}]\n", list.join(", ")).unwrap();
        }
        let mut hosts = vec!["fe1.corp.test".to_owned(), "edge.partner.test".to_owned()];
        hosts.extend(self.extra_hosts.iter().cloned());
        for h in hosts {
            writeln!(s, "[[dns.hosts]]\nname = \"{h}\"\nip = \"127.0.0.1\"\n").unwrap();
        }
        writeln!(s, "[metrics]\nlisten = \"127.0.0.1:0\"\n").unwrap();
        writeln!(
            s,
            "[limits]\ntransaction_timeout_ms = {}\nconnect_timeout_ms = {}",
            self.transaction_timeout_ms, self.connect_timeout_ms
        )
        .unwrap();
        if let Some(t) = self.invite_timeout_ms {
            writeln!(s, "invite_timeout_ms = {t}").unwrap();
        }
        if let Some(t) = self.message_timeout_ms {
            writeln!(s, "message_timeout_ms = {t}").unwrap();
        }
        if let Some(t) = self.keepalive_interval_s {
            writeln!(s, "keepalive_interval_s = {t}").unwrap();
        }
        if let Some(n) = self.max_connections {
            writeln!(s, "max_connections = {n}").unwrap();
        }
        s.push('\n');
        s.push_str(&self.extra_toml);
        s
    }
}
