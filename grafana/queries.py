#!/usr/bin/env python3
"""Prints every panel query of the sipedge Grafana dashboard, template variables resolved for a test.

One JSON object a line: {"panel": <title>, "refId": <refId>, "expr": <PromQL>}, panels in dashboard
order (panels inside collapsed rows included), so a test can run each expr against a real Prometheus.

Resolved: $datasource / ${datasource} are dropped; $instance and $partner (any ${name} or ${name:fmt}
form) become .* ; $__rate_interval -> 1m, $__range -> 5m, $__interval -> 30s. Any other variable is an
error (exit 1), so a new variable cannot slip through unresolved.

Usage: grafana/queries.py [dashboard.json]   (default: grafana/dashboards/sipedge.json)
Python 3 standard library only.
"""

import json
import re
import sys
from pathlib import Path

VALUES = {
    "datasource": "",
    "instance": ".*",
    "partner": ".*",
    "__rate_interval": "1m",
    "__range": "5m",
    "__interval": "30s",
}

# $name, ${name} or ${name:format}; [[name]] is Grafana's deprecated form.
VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")


def resolve(expr: str) -> str:
    def value(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in VALUES:
            raise ValueError(f"unknown template variable ${name} in {expr!r}")
        return VALUES[name]

    return VARIABLE.sub(value, expr)


def panels(items):
    """Panels in order, descending into rows (a collapsed row holds its panels)."""
    for p in items:
        yield p
        yield from panels(p.get("panels", []))


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "dashboards" / "sipedge.json"
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    try:
        for p in panels(dashboard.get("panels", [])):
            for t in p.get("targets", []):
                if "expr" not in t:
                    continue
                line = {"panel": p.get("title", ""), "refId": t.get("refId", ""), "expr": resolve(t["expr"])}
                print(json.dumps(line, ensure_ascii=False))
    except ValueError as e:
        print(f"{path}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
