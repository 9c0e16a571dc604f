#!/usr/bin/env bash
# Everything `make test` (and so CI) runs, in order: unit tests, then the local cluster
# and the end-to-end tests against it. The cluster is always taken down on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== unit tests"
cargo test --workspace --lib --bins

echo "== local cluster"
trap 'echo "== cluster down"; e2e/cluster/down.sh' EXIT
e2e/cluster/up.sh

echo "== cluster end-to-end tests"
cargo test -p kennel-e2e --test cluster -- --test-threads=2

# Keep this step last: it installs the operator cluster-wide through the chart, which
# would reconcile the other tests' sandboxes. It builds the release image and Helm.
echo "== Helm chart: lint, dry run, install, sandbox, upgrade, handover, uninstall"
KENNEL_OPERATOR_IMAGE="$(e2e/images/operator.sh)" KENNEL_HELM_CLUSTER_WIDE=1 \
  cargo test -p kennel-e2e --test helm -- --test-threads=1 --nocapture
