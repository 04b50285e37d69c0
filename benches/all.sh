#!/usr/bin/env bash
# benches/all.sh — issue 11's whole table in one command: the builds once (both crypto providers),
# then, one after the other on the same machine,
#   benches/compare.sh      sipedge vs Kamailio vs the ceiling: max, a fixed 5,000/s, half of max;
#   benches/connections.sh  handshakes (ECDSA, RSA; full, resumed), idle connections, a 10,000
#                           connection burst, the providers side by side;
#   benches/soak.sh         the memory soak (SOAK_DURATION=600 s of max load, RSS every 30 s, then
#                           a minute after the load stops).
# Each prints its table with the date, machine and commit; this prints them in that order. Takes
# ~30 minutes with the 10-minute soak. Knobs: SOAK_DURATION=600, and each script's own.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
REL=$ROOT/target/release
if [[ -z ${NO_BUILD:-} ]]; then
    # ring first, the default (aws-lc-rs) last: target/release/sipedge is the default build.
    (cd "$ROOT" && cargo build --release -p sipedge -p sipedge-benches --bin sipedge --bin sipedge-bench --no-default-features)
    cp "$REL/sipedge" "$REL/sipedge-ring"
    (cd "$ROOT" && cargo build --release -p sipedge -p sipedge-benches --bin sipedge --bin sipedge-bench)
    cp "$REL/sipedge" "$REL/sipedge-aws-lc-rs"
fi
export NO_BUILD=1
echo "== benches/compare.sh"
bash "$HERE/compare.sh"
echo
echo "== benches/connections.sh"
bash "$HERE/connections.sh"
echo
echo "== benches/soak.sh"
DURATION=${SOAK_DURATION:-600} INTERVAL=${SOAK_INTERVAL:-30} bash "$HERE/soak.sh"
