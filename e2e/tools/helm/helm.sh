#!/usr/bin/env bash
# Runs the pinned Helm (e2e/tools/helm/go.mod), building it first if it is not cached
# under ${XDG_CACHE_HOME:-~/.cache}/kennel/bin/. Uses the local cluster's kubeconfig
# unless KUBECONFIG is set. Usage: helm.sh ARGS...   e.g. helm.sh lint charts/kennel
set -euo pipefail
source "$(dirname "$0")/../../cluster/lib.sh"

dir="$(tool_cache_dir helm "$(pinned_version helm helm.sh/helm/v4)")"
if [[ ! -f "$dir/.complete" ]]; then
  mkdir -p "$CLUSTER_DIR/logs"
  "$E2E_DIR/cluster/build.sh" helm
fi
export KUBECONFIG="${KUBECONFIG:-$CLUSTER_DIR/kubeconfig}"
# Helm's own caches and config stay out of the user's home directory.
export HELM_CACHE_HOME="${HELM_CACHE_HOME:-$CLUSTER_DIR/helm/cache}"
export HELM_CONFIG_HOME="${HELM_CONFIG_HOME:-$CLUSTER_DIR/helm/config}"
export HELM_DATA_HOME="${HELM_DATA_HOME:-$CLUSTER_DIR/helm/data}"
exec "$dir/helm" "$@"
