#!/usr/bin/env bash
# Everything `make test` (and so CI) runs, in order: unit tests, then the local cluster
# and the end-to-end tests against it. The cluster is always taken down on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== unit tests"
cargo test -p kennel-operator   # lib, bins and operator/tests/ (the CRD drift check)
cargo test -p kennel-operator --features otel   # and the OTLP trace export
cargo test -p kennel-e2e --lib --bins

echo "== local cluster"
trap 'echo "== cluster down"; e2e/cluster/down.sh' EXIT
e2e/cluster/up.sh

echo "== cluster end-to-end tests"
cargo test -p kennel-e2e --test cluster -- --test-threads=2

# The release image holds the fence gate every test operator puts in its sandbox Pods,
# and is the image the Helm tests install.
echo "== operator image"
KENNEL_OPERATOR_IMAGE="$(e2e/images/operator.sh)"
export KENNEL_OPERATOR_IMAGE

echo "== operator end-to-end tests (each test runs its own operator in its own namespace)"
cargo build -p kennel-operator
"$(grep '^KUBECTL=' e2e/.cluster/env | cut -d= -f2-)" \
  --kubeconfig "$(grep '^KUBECONFIG=' e2e/.cluster/env | cut -d= -f2-)" \
  apply --server-side -f crds/ >/dev/null
# Three at a time: expiry lags stay within their 2 s bound on two cores.
cargo test -p kennel-e2e --test sandbox -- --test-threads=3 --nocapture

echo "== tenant guardrails: hostile-input matrix, quota, policy re-check, bypass, in-sandbox reach"
cargo test -p kennel-e2e --test guardrails -- --test-threads=2 --nocapture

# Keep this step last: it installs the operator cluster-wide through the chart, which
# would reconcile the other tests' sandboxes. It builds Helm.
echo "== Helm chart: lint, dry run, install, sandbox, upgrade, handover, uninstall"
KENNEL_HELM_CLUSTER_WIDE=1 cargo test -p kennel-e2e --test helm -- --test-threads=1 --nocapture
