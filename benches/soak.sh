#!/usr/bin/env bash
# benches/soak.sh — the soak scenario of issue 11: sustained load through sipedge with its RSS sampled
# over time. sipedge-bench drives 2 mutual-TLS connections x 32 pipelined MESSAGE + 200 OK at max rate
# (or RATE) for DURATION seconds into a sipedge-bench sink behind the edge; VmRSS of the edge is printed
# every INTERVAL seconds, then once a minute after the load stops (AFTER seconds), with the achieved
# rate and CPU per transaction.
#
# Knobs (environment): DURATION=600 INTERVAL=10 AFTER=60 RATE=0 CONNS=2 INFLIGHT=32
#   EDGE=target/release/sipedge (any build of the edge: compare two side by side) NO_BUILD=1
set -euo pipefail
# shellcheck source=benches/edge-config.sh
. "$(dirname "$0")/edge-config.sh"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-600}
INTERVAL=${INTERVAL:-10}
AFTER=${AFTER:-60}
RATE=${RATE:-0}
CONNS=${CONNS:-2}
INFLIGHT=${INFLIGHT:-32}
if [[ -z ${NO_BUILD:-} ]]; then
    (cd "$ROOT" && cargo build --release -p sipedge -p sipedge-benches --bin sipedge --bin sipedge-bench)
fi
BENCH=$ROOT/target/release/sipedge-bench
EDGE=${EDGE:-$ROOT/target/release/sipedge}
ME=soak.sh
PREFIX=sipedge-soak
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }

P=$WORK/pki
"$BENCH" pki --dir "$P" >/dev/null
start sink "$BENCH" sink --listen 127.0.0.1:0 --cert "$P/edge.partner.test.crt" \
    --key "$P/edge.partner.test.key" --ca "$P/internal-ca.pem"
sink=$(wait_line "$WORK/sink.out" '^listening ' | awk '{print $3}')
edge_toml "$P" "${sink##*:}" "$(nproc)" >"$WORK/sipedge.toml"
start edge "$EDGE" run --config "$WORK/sipedge.toml"
edge=$LAST_PID
addr=$(wait_line "$WORK/edge.out" '^listening internal sip\+tls ' | awk '{print $4}')
echo "soak: $EDGE ($(cd "$ROOT" && git rev-parse --short HEAD)), $(date -u '+%F %H:%M UTC'), nproc $(nproc)"
echo "load: $CONNS connections x $INFLIGHT in flight, rate ${RATE} (0: max), ${DURATION}s"
echo "idle RSS: $(rss "$edge") kB"
"$BENCH" run --target "$addr" --server-name edge-int.corp.test --cert "$P/fe1.corp.test.crt" \
    --key "$P/fe1.corp.test.key" --ca "$P/internal-ca.pem" -c "$CONNS" --inflight "$INFLIGHT" \
    --rate "$RATE" --duration "$DURATION" --warmup 0 --pid "$edge" --label soak >"$WORK/run.out" &
gen=$!
t=0
while kill -0 "$gen" 2>/dev/null; do
    sleep "$INTERVAL"
    t=$((t + INTERVAL))
    kill -0 "$gen" 2>/dev/null && echo "t=${t}s RSS: $(rss "$edge") kB"
done
wait "$gen"
cat "$WORK/run.out"
for a in $(seq 60 60 "$AFTER"); do
    sleep 60
    echo "${a}s after the load: RSS $(rss "$edge") kB"
done
