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

# Every alert has a test and a runbook section its runbook_url points at (GitHub's heading anchors:
# the heading lower-cased).
echo "+ every alert: a promtool test and a runbook section"
for alert in $(sed -n 's/^ *- alert: *//p' deploy/prometheus/alerts.yml); do
    grep -q "alertname: $alert\$" deploy/prometheus/tests/*.yml \
        || { echo "check.sh: $alert has no promtool test" >&2; exit 1; }
    anchor=$(echo "$alert" | tr '[:upper:]' '[:lower:]')
    grep -q "runbook.md#$anchor\$" deploy/prometheus/alerts.yml \
        || { echo "check.sh: $alert's runbook_url is not #$anchor" >&2; exit 1; }
    grep -qx "## $alert" docs/runbook.md \
        || { echo "check.sh: docs/runbook.md has no section ## $alert" >&2; exit 1; }
done
echo "check.sh: ok"
