#!/usr/bin/env bash
# benches/all.sh — issue 11's whole table in one command, on one machine, one part after the other:
#   benches/connections.sh  (builds the edge on both crypto providers and the generator, unless
#                           NO_BUILD=1; the default build stays target/release/sipedge) handshakes
#                           (ECDSA, RSA; full, resumed), idle connections, a 10,000-connection burst,
#                           the providers side by side;
#   benches/compare.sh      sipedge vs Kamailio vs the ceiling: max, a fixed 5,000/s, half of max;
#   benches/soak.sh         the memory soak (SOAK_DURATION=600 s of max load, RSS every 30 s, then
#                           a minute after the load stops).
# Each prints its table with the date, machine and commit. ~30 minutes with the 10-minute soak.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
echo "== benches/connections.sh"
bash "$HERE/connections.sh"
export NO_BUILD=1
echo
echo "== benches/compare.sh"
bash "$HERE/compare.sh"
echo
echo "== benches/soak.sh"
DURATION=${SOAK_DURATION:-600} INTERVAL=${SOAK_INTERVAL:-30} bash "$HERE/soak.sh"
