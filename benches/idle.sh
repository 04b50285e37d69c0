#!/usr/bin/env bash
# benches/idle.sh — what an idle edge costs: the release sipedge with the benchmark configuration
# (edge-config.sh) and EDGE_WORKERS workers (default 2), left alone for SECONDS (default 30) after a
# 3 s settle; prints the CPU its threads used (the sum of /proc/PID/task/*/schedstat, in ns) and
# that as a share of one core. NO_BUILD=1 reuses target/release.
set -euo pipefail
# shellcheck source=benches/edge-config.sh
. "$(dirname "$0")/edge-config.sh"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_IDLE=${SECONDS_IDLE:-30}
EDGE_WORKERS=${EDGE_WORKERS:-2}
if [[ -z ${NO_BUILD:-} ]]; then
    (cd "$ROOT" && cargo build --release -p sipedge -p sipedge-benches --bin sipedge --bin sipedge-bench)
fi
ME=idle.sh
PREFIX=sipedge-idle
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"
"$ROOT/target/release/sipedge-bench" pki --dir "$WORK/pki"
edge_toml "$WORK/pki" 9 "$EDGE_WORKERS" >"$WORK/edge.toml"
start edge "$ROOT/target/release/sipedge" run --config "$WORK/edge.toml"
pid=$LAST_PID
wait_line "$WORK/edge.out" '^listening internal' >/dev/null
sleep 3
on_cpu() { cat /proc/"$pid"/task/*/schedstat | awk '{s += $1} END {print s}'; }
before=$(on_cpu)
sleep "$SECONDS_IDLE"
after=$(on_cpu)
python3 - "$before" "$after" "$SECONDS_IDLE" "$EDGE_WORKERS" <<'PY'
import sys
before, after, secs, workers = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
used = after - before
print(f"idle edge, {workers} workers, {secs} s: {used / 1e6:.1f} ms of CPU, {used / (secs * 1e9) * 100:.4f} % of one core")
PY
