# benches/edge-config.sh — sourced by compare.sh, connections.sh and soak.sh: the one sipedge configuration both
# benchmarks run, for the certificates `sipedge-bench pki` writes.
# edge_toml PKI_DIR SINK_PORT WORKERS: prints it — the front end fe1.corp.test as the only known
# server, the sink as the pinned partner edge.partner.test, static hosts, metrics on loopback.
edge_toml() {
    local P=$1 sink_port=$2 workers=$3
    cat <<TOML
[edge]
fqdn = "edge.corp.test"
sip_domains = ["corp.test"]
workers = $workers

[internal]
fqdn = "edge-int.corp.test"
listen = "127.0.0.1:0"
next_hop = "fe1.corp.test:9"
cert_file = "$P/edge-int.corp.test.crt"
key_file = "$P/edge-int.corp.test.key"
ca_file = "$P/internal-ca.pem"

[[internal.known_servers]]
fqdn = "fe1.corp.test"
version = 7

[external]
listen = "127.0.0.1:0"
cert_file = "$P/edge.corp.test.crt"
key_file = "$P/edge.corp.test.key"
ca_file = "$P/partner-ca.pem"

[federation]
enable_partner_discovery = false

[[federation.allowed]]
domain = "partner.test"
proxy_fqdn = "edge.partner.test:$sink_port"

[dns]
servers = ["127.0.0.1:53"]

[[dns.hosts]]
name = "fe1.corp.test"
ip = "127.0.0.1"

[[dns.hosts]]
name = "edge.partner.test"
ip = "127.0.0.1"

[metrics]
listen = "127.0.0.1:0"
TOML
}
