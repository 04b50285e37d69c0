#!/bin/sh
# Validates deploy/k8s/: the built-in objects with kubernetes-validate --strict (PyPI; the
# Kubernetes schemas are in the wheel) for Kubernetes 1.33, then check.py for the kustomization,
# the two Prometheus Operator custom resources (no Kubernetes schema covers them) and the metrics
# exposure. Exits non-zero on the first failure. `check.sh --write` regenerates the PrometheusRule.
set -eu
cd "$(dirname "$0")"
command -v kubernetes-validate >/dev/null || { echo "check.sh: pip install kubernetes-validate" >&2; exit 1; }
kubernetes-validate --strict --quiet -k 1.33.0 namespace.yaml configmap.yaml deployment.yaml services.yaml \
  pdb.yaml networkpolicy.yaml
python3 check.py "$@"
echo "k8s check.sh: ok"
