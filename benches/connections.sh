#!/usr/bin/env bash
# benches/connections.sh — the connection scenarios of issue 11, one command, one run, one table:
#   handshakes  full TLS handshakes and resumptions per second and per target CPU-second (mutual
#               TLS as the front end fe1.corp.test; ECDSA P-256 and RSA-2048 server keys) against
#               sipedge on aws-lc-rs and on ring (two release builds of the binary: the default,
#               and --no-default-features), Kamailio 5.6 (tls module, OpenSSL) and the reference server
#               (`sipedge-bench tls-server`, rustls's tlsserver-mio example) on each provider;
#   idle        TLS connections held idle after one answered OPTIONS, in steps up to what the
#               open-file limits allow: the target's PSS and RSS per connection;
#   burst       10,000 new connections, 500 in flight, each handshaken and answered: time to all
#               established, failures, connect+handshake latency, the target's CPU and peak RSS;
#   bulk        the MESSAGE load of `sipedge-bench run` (TLS both legs, records in bulk) through
#               sipedge on each provider: the other half of the provider choice.
# Prints one table (`sipedge-bench conn-table`) with the date, nproc, CPU model, load and commit.
#
# Knobs (environment): SCENARIOS="handshakes idle burst bulk" KEYS="ecdsa rsa"
#   HS_TARGETS="sipedge-ring sipedge-aws-lc-rs kamailio rustls-ref-ring rustls-ref-aws-lc-rs"
#   IDLE_TARGETS="sipedge-aws-lc-rs kamailio rustls-ref-aws-lc-rs" BURST_TARGETS=(as IDLE_TARGETS)
#   HS_DURATION=5 HS_WARMUP=1 HS_CONC=16 IDLE_MAX=0 (0: from the open-file limits) BURST_COUNT=10000
#   BURST_CONC=500 BULK_DURATION=5 SOURCES=8 (loopback source addresses 127.0.0.1..N)
#   IDLE_LINGER=35 (after the top idle step, seconds idle before the last reading: past Timer F)
#   KAM_CHILDREN=1 (Kamailio's TCP children; see below why not nproc) KAM_SHM_MB=4096 (its shared
#   memory: idle TLS connections take ~72 KiB of it each, 1024 MB ran out at ~12,000)
#   NO_BUILD=1 (reuse target/release/sipedge-ring, sipedge-aws-lc-rs and sipedge-bench)
#   KEEP=1 (keep the work directory: reports, configs, logs)
# Certificates come from `sipedge-bench pki`; Kamailio from the Debian packages kamailio and
# kamailio-tls-modules. Generator and targets share the machine: compare CPU per handshake.
set -euo pipefail
# shellcheck source=benches/edge-config.sh
. "$(dirname "$0")/edge-config.sh"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SCENARIOS=${SCENARIOS:-"handshakes idle burst bulk"}
KEYS=${KEYS:-"ecdsa rsa"}
HS_TARGETS=${HS_TARGETS:-"sipedge-ring sipedge-aws-lc-rs kamailio rustls-ref-ring rustls-ref-aws-lc-rs"}
IDLE_TARGETS=${IDLE_TARGETS:-"sipedge-aws-lc-rs kamailio rustls-ref-aws-lc-rs"}
BURST_TARGETS=${BURST_TARGETS:-$IDLE_TARGETS}
HS_DURATION=${HS_DURATION:-5}
HS_WARMUP=${HS_WARMUP:-1}
HS_CONC=${HS_CONC:-16}
IDLE_MAX=${IDLE_MAX:-0}
BURST_COUNT=${BURST_COUNT:-10000}
BURST_CONC=${BURST_CONC:-500}
BULK_DURATION=${BULK_DURATION:-5}
SOURCES=${SOURCES:-8}
CHILDREN=$(nproc)
# Kamailio 5.6.3 (Debian) with OpenSSL 3.0 crashes (SIGSEGV in tlsf_free under ERR_pop_to_mark,
# from tls_accept) within seconds of concurrent handshakes when more than one TCP child runs
# TLS, whatever the allocator (tlsf, qm, fm); with one child it is stable. Its CPU per handshake
# is measured all the same; its burst uses one core for TLS.
KAM_CHILDREN=${KAM_CHILDREN:-1}
IDLE_LINGER=${IDLE_LINGER:-35}
REL=$ROOT/target/release

if [[ -z ${NO_BUILD:-} ]]; then
    # One invocation per provider with the same package set, so both share one rustls build; the
    # default build (aws-lc-rs) last, so target/release/sipedge is what compare.sh runs.
    (cd "$ROOT" && cargo build --release -p sipedge -p sipedge-benches --bin sipedge --bin sipedge-bench --no-default-features)
    cp "$REL/sipedge" "$REL/sipedge-ring"
    (cd "$ROOT" && cargo build --release -p sipedge -p sipedge-benches --bin sipedge --bin sipedge-bench)
    cp "$REL/sipedge" "$REL/sipedge-aws-lc-rs"
fi
BENCH=$REL/sipedge-bench
for b in "$BENCH" "$REL/sipedge-ring" "$REL/sipedge-aws-lc-rs"; do
    [[ -x $b ]] || { echo "connections.sh: $b is missing (run without NO_BUILD=1)" >&2; exit 1; }
done
ME=connections.sh
PREFIX=sipedge-connections
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"
# stop_group PID : SIGTERM to the process group, then wait (5 s) for its leader to go.
stop_group() {
    kill -TERM -- "-$1" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL -- "-$1" 2>/dev/null || true
}

P=$WORK/pki
"$BENCH" pki --dir "$P"
SRC=$(seq -s, -f '127.0.0.%g' 1 "$SOURCES")
HARD=$(ulimit -Hn)
# What the edge and Kamailio may hold: the hard limit less the edge's own descriptors (listeners,
# DNS, metrics; see crates/sipedge/src/fd_limit.rs) — so the edge starts without its fd warning.
MAXCONN=$((HARD - 300))
KAM=$(command -v kamailio || echo /usr/sbin/kamailio)

# The sink: the partner edge.partner.test the edge and Kamailio forward the OPTIONS (and the bulk
# MESSAGE load) to.
start sink "$BENCH" sink --listen 127.0.0.1:0 \
    --cert "$P/edge.partner.test.crt" --key "$P/edge.partner.test.key" --ca "$P/internal-ca.pem"
SINK=$(wait_line "$WORK/sink.out" '^listening ' | awk '{print $3}')
SINK_PORT=${SINK##*:}

# leaf NAME KEY : the certificate/key file stem of NAME for the key type.
leaf() { if [[ $2 == rsa ]]; then echo "$P/$1.rsa"; else echo "$P/$1"; fi; }

# up TARGET KEY : starts the target; sets T_PID (group leader), T_PIDS (all, comma-separated),
# T_ADDR and T_NAME (the name its certificate carries). Nonzero if it did not start.
up() {
    local t=$1 key=$2 stem
    case $t in
    sipedge-ring | sipedge-aws-lc-rs)
        stem=$(leaf edge-int.corp.test "$key")
        edge_toml "$P" "$SINK_PORT" "$CHILDREN" |
            sed -e "s#$P/edge-int.corp.test.crt#$stem.crt#" -e "s#$P/edge-int.corp.test.key#$stem.key#" \
                >"$WORK/$t-$key.toml"
        printf '\n[limits]\nmax_connections = %s\nmax_connections_per_ip = %s\n' "$MAXCONN" "$MAXCONN" \
            >>"$WORK/$t-$key.toml"
        start "$t-$key" "$REL/$t" run --config "$WORK/$t-$key.toml"
        T_PID=$LAST_PID T_PIDS=$LAST_PID T_NAME=edge-int.corp.test
        T_ADDR=$(wait_line "$WORK/$t-$key.out" '^listening internal sip\+tls ' | awk '{print $4}') || return 1
        wait_line "$WORK/$t-$key.out" '^metrics http ' >/dev/null || return 1
        ;;
    rustls-ref-ring | rustls-ref-aws-lc-rs)
        stem=$(leaf edge-int.corp.test "$key")
        start "$t-$key" "$BENCH" tls-server --listen 127.0.0.1:0 --cert "$stem.crt" --key "$stem.key" \
            --ca "$P/internal-ca.pem" --provider "${t#rustls-ref-}"
        T_PID=$LAST_PID T_PIDS=$LAST_PID T_NAME=edge-int.corp.test
        T_ADDR=$(wait_line "$WORK/$t-$key.out" '^listening tls ' | awk '{print $3}') || return 1
        ;;
    kamailio)
        [[ -x $KAM ]] || { echo "connections.sh: kamailio is not installed: no Kamailio rows" >&2; return 1; }
        stem=$(leaf kamailio.corp.test "$key")
        local ktls ktcp
        ktls=$(free_port)
        ktcp=$(free_port)
        sed -e "s#@CERT@#$stem.crt#" -e "s#@KEY@#$stem.key#" -e "s#@CA@#$P/all-ca.pem#" \
            "$ROOT/benches/kamailio/kamailio-tls.cfg.in" >"$WORK/kamailio-tls-$key.cfg"
        sed -e "s#@CHILDREN@#$KAM_CHILDREN#" -e "s#@MAX_CONN@#$MAXCONN#" -e "s#@TLS_PORT@#$ktls#" \
            -e "s#@TCP_PORT@#$ktcp#" -e "s#@TLS_CFG@#$WORK/kamailio-tls-$key.cfg#" \
            -e "s#@TLS_SINK@#sip:$SINK;transport=tls#" -e "s#@TCP_SINK@#sip:127.0.0.1:9;transport=tcp#" \
            "$ROOT/benches/kamailio/kamailio.cfg.in" >"$WORK/kamailio-$key.cfg"
        mkdir -p "$WORK/kamailio-run"
        start "kamailio-$key" "$KAM" -DD -E -x tlsf -X tlsf -m "${KAM_SHM_MB:-4096}" -M 16 \
            -f "$WORK/kamailio-$key.cfg" -w "$WORK/kamailio-run" -Y "$WORK/kamailio-run"
        T_PID=$LAST_PID T_NAME=kamailio.corp.test T_ADDR=127.0.0.1:$ktls
        if ! wait_port "$ktls"; then
            tail -20 "$WORK/kamailio-$key.log" >&2
            stop_group "$T_PID"
            return 1
        fi
        sleep 0.5
        # Every process of its group: the main one and its forked workers.
        T_PIDS=$(pgrep -g "$T_PID" | paste -sd, -)
        ;;
    *)
        echo "connections.sh: unknown target $t" >&2
        return 1
        ;;
    esac
}

REPORTS=()
# bench SCENARIO TARGET KEY NAME ARGS... : one sipedge-bench connection run, its JSON kept.
bench() {
    local sc=$1 t=$2 key=$3 name=$4; shift 4
    local out=$WORK/$name.json ca=$P/internal-ca.pem
    "$BENCH" "$sc" --target "$T_ADDR" --server-name "$T_NAME" --cert "$P/fe1.corp.test.crt" \
        --key "$P/fe1.corp.test.key" --ca "$ca" --source "$SRC" --pid "$T_PIDS" --label "$t" \
        --key-type "$key" --json "$@" >"$out" 2>"$WORK/$name.err" || {
        echo "connections.sh: $sc against $t ($key) failed:" >&2
        tail -5 "$WORK/$name.err" >&2
        return 0
    }
    "$BENCH" conn-table "$out" | tail -n +2 >&2
    REPORTS+=("$out")
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for sc in $SCENARIOS; do
    case $sc in
    handshakes)
        for key in $KEYS; do
            for t in $HS_TARGETS; do
                echo "== handshakes: $t, $key, $HS_CONC in flight, ${HS_DURATION}s (+${HS_WARMUP}s)" >&2
                up "$t" "$key" || continue
                bench handshakes "$t" "$key" "hs-full-$t-$key" --concurrency "$HS_CONC" \
                    --duration "$HS_DURATION" --warmup "$HS_WARMUP"
                bench handshakes "$t" "$key" "hs-resume-$t-$key" --concurrency "$HS_CONC" \
                    --duration "$HS_DURATION" --warmup "$HS_WARMUP" --resume
                stop_group "$T_PID"
            done
        done
        ;;
    idle)
        for t in $IDLE_TARGETS; do
            echo "== idle: $t, steps up to ${IDLE_MAX/#0/the limits}" >&2
            up "$t" ecdsa || continue
            bench idle "$t" ecdsa "idle-$t" --max "$IDLE_MAX" --timeout-ms 30000 --linger "$IDLE_LINGER"
            stop_group "$T_PID"
        done
        ;;
    burst)
        for t in $BURST_TARGETS; do
            echo "== burst: $t, $BURST_COUNT connections, $BURST_CONC in flight" >&2
            up "$t" ecdsa || continue
            bench burst "$t" ecdsa "burst-$t" --count "$BURST_COUNT" --concurrency "$BURST_CONC" \
                --timeout-ms 30000
            stop_group "$T_PID"
        done
        ;;
    bulk)
        for t in sipedge-ring sipedge-aws-lc-rs; do
            echo "== bulk: $t, MESSAGE load 2 x 32 in flight, ${BULK_DURATION}s" >&2
            up "$t" ecdsa || continue
            "$BENCH" run --target "$T_ADDR" --server-name "$T_NAME" --cert "$P/fe1.corp.test.crt" \
                --key "$P/fe1.corp.test.key" --ca "$P/internal-ca.pem" -c 2 --inflight 32 \
                --duration "$BULK_DURATION" --warmup 1 --pid "$T_PIDS" --label "$t" --json \
                >"$WORK/bulk-$t.json"
            "$BENCH" conn-table "$WORK/bulk-$t.json" | tail -n +2 >&2
            REPORTS+=("$WORK/bulk-$t.json")
            stop_group "$T_PID"
        done
        ;;
    *) echo "connections.sh: unknown scenario $sc" >&2 ;;
    esac
done

echo
echo "sipedge-bench connections — $(date -u '+%Y-%m-%d %H:%M UTC'), nproc $(nproc)," \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), commit $(git -C "$ROOT" rev-parse --short HEAD)," \
    "load $LOAD_BEFORE before, $(cut -d' ' -f1-3 /proc/loadavg) after"
echo "mutual TLS as fe1.corp.test from $SOURCES loopback sources; open-file hard limit $HARD;" \
    "handshakes: $HS_CONC in flight, ${HS_DURATION}s; kamailio: $KAM_CHILDREN TCP child(ren), OpenSSL $(openssl version | cut -d' ' -f2)"
if [[ ${#REPORTS[@]} -gt 0 ]]; then "$BENCH" conn-table "${REPORTS[@]}"; fi
echo "per core: handshakes per CPU-second of the target (all its threads/processes); ×ref: sipedge-<provider>" \
    "over rustls-ref-<provider>, ×kam: over kamailio (same key and mode; above 1: better)." \
    "idle: (PSS after − PSS before) / connections held; burst: to the last answer."
