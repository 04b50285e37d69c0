#!/bin/sh
# Type-checks the Grafana dashboard against Grafana's published schema types: installs the pinned
# @grafana/schema and typescript from package-lock.json (npm ci), writes the JSON as a typed
# TypeScript literal (generate.mjs) and runs `tsc --noEmit --strict`. Exit status non-zero on any
# error. Run from anywhere, e.g. the repository root:
#
#   grafana/schema-check/check.sh                 # checks grafana/dashboards/sipedge.json
#   grafana/schema-check/check.sh other.json      # checks another file against the same types
set -eu

json=""
if [ $# -gt 0 ]; then
    json=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
fi
cd "$(dirname "$0")"

npm ci --prefer-offline --no-audit --no-fund --loglevel=error
node generate.mjs ${json:+"$json"}
# Error positions are in dashboard.gen.ts: the JSON, 2-space indented, after a 4-line header (the
# strict second copy follows the first).
./node_modules/.bin/tsc -p tsconfig.json --noEmit --strict --pretty false
echo "schema check: ok"
