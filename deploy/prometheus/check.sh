#!/bin/sh
# Proves deploy/prometheus/ with the tool that consumes it (STYLE.md practice 15): promtool checks the
# rule files' syntax and PromQL, then runs the unit tests in tests/ (every alert firing and staying
# quiet, the main recording rules' values). Run from anywhere; exits non-zero on the first failure.
# promtool comes with Debian's `prometheus` package.
set -eu
cd "$(dirname "$0")/../.."

if ! command -v promtool >/dev/null 2>&1; then
    echo "check.sh: promtool not found (Debian: apt-get install prometheus)" >&2
    exit 1
fi

run() {
    echo "+ $*"
    "$@"
}

run promtool --version
run promtool check rules deploy/prometheus/rules.yml deploy/prometheus/alerts.yml
run promtool test rules deploy/prometheus/tests/*.yml
echo "check.sh: ok"
