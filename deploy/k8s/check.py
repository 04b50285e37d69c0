#!/usr/bin/env python3
"""Checks deploy/k8s/ beyond what kubernetes-validate can (check.sh runs both):

- kustomization.yaml lists exactly the manifests of this directory;
- the PrometheusRule's spec.groups are exactly the groups of deploy/prometheus/rules.yml and
  alerts.yml (written with --write), and promtool checks them;
- the ServiceMonitor selects the metrics Service by its labels and scrapes a port that Service has;
- the ConfigMap's sipedge.toml puts metrics on 0.0.0.0 only with metrics.network_policy = true, and
  the NetworkPolicy admits the metrics port from monitoring only.

The ServiceMonitor and the PrometheusRule are custom resources: no Kubernetes schema covers them.
"""
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
PROM = HERE.parent / "prometheus"


def load_all(name):
    return [d for d in yaml.safe_load_all((HERE / name).read_text()) if d]


def fail(msg):
    print(f"check.py: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    groups = yaml.safe_load((PROM / "rules.yml").read_text())["groups"] + yaml.safe_load(
        (PROM / "alerts.yml").read_text()
    )["groups"]
    if "--write" in sys.argv:
        text = (HERE / "prometheusrule.yaml").read_text()
        head = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
        doc = load_all("prometheusrule.yaml")[0]
        doc["spec"] = {"groups": groups}
        (HERE / "prometheusrule.yaml").write_text(head + yaml.safe_dump(doc, sort_keys=False, width=1000))

    kustom = yaml.safe_load((HERE / "kustomization.yaml").read_text())
    listed = set(kustom["resources"])
    present = {p.name for p in HERE.glob("*.yaml")} - {"kustomization.yaml"}
    if listed != present:
        fail(f"kustomization.yaml lists {sorted(listed)}, the directory has {sorted(present)}")

    rule = load_all("prometheusrule.yaml")[0]
    if (rule["apiVersion"], rule["kind"]) != ("monitoring.coreos.com/v1", "PrometheusRule"):
        fail("prometheusrule.yaml is not a monitoring.coreos.com/v1 PrometheusRule")
    if rule["spec"]["groups"] != groups:
        fail("prometheusrule.yaml's groups differ from deploy/prometheus/: run deploy/k8s/check.sh --write")
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
        yaml.safe_dump({"groups": rule["spec"]["groups"]}, f)
        f.flush()
        r = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"promtool check rules on the PrometheusRule: {r.stdout}{r.stderr}")

    monitor = load_all("servicemonitor.yaml")[0]
    if (monitor["apiVersion"], monitor["kind"]) != ("monitoring.coreos.com/v1", "ServiceMonitor"):
        fail("servicemonitor.yaml is not a monitoring.coreos.com/v1 ServiceMonitor")
    wanted = monitor["spec"]["selector"]["matchLabels"]
    services = [s for s in load_all("services.yaml") if s["kind"] == "Service"]
    chosen = [s for s in services if wanted.items() <= s["metadata"].get("labels", {}).items()]
    if len(chosen) != 1:
        fail(f"the ServiceMonitor's selector {wanted} picks {len(chosen)} Services, not 1")
    ports = {p["name"] for p in chosen[0]["spec"]["ports"]}
    for ep in monitor["spec"]["endpoints"]:
        if ep["port"] not in ports:
            fail(f"the ServiceMonitor scrapes port {ep['port']!r}; {chosen[0]['metadata']['name']} has {sorted(ports)}")

    toml_text = load_all("configmap.yaml")[0]["data"]["sipedge.toml"]
    if 'listen = "0.0.0.0:9464"' in toml_text and "network_policy = true" not in toml_text:
        fail("metrics on 0.0.0.0 without metrics.network_policy = true: check-config refuses it")
    policy = load_all("networkpolicy.yaml")[0]
    for rule_ in policy["spec"]["ingress"]:
        if any(p["port"] == 9464 for p in rule_.get("ports", [])):
            names = [
                f.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
                for f in rule_.get("from", [])
            ]
            if names != ["monitoring"]:
                fail(f"the metrics port is admitted from {names}, not only from monitoring")
    print("check.py: ok")


if __name__ == "__main__":
    main()
