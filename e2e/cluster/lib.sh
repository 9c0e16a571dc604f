# Shared settings and helpers for the local cluster scripts. Sourced, never run.
# shellcheck shell=bash

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_DIR="$(cd "$E2E_DIR/.." && pwd)"
CLUSTER_DIR="$E2E_DIR/.cluster"        # kubeconfig, env file, pki, configs, logs
STATE_DIR="/var/lib/kennel-cluster"    # etcd data, kubelet and containerd roots
RUN_DIR="/run/kennel"                  # sockets and pid files (found by any checkout)
CACHE_BIN="${XDG_CACHE_HOME:-$HOME/.cache}/kennel/bin"
TOOLS_DIR="$E2E_DIR/tools"

# Network layout. Everything lives on one bridge this script creates; the API server
# and the kubelet's own ports listen on 127.0.0.1 only.
NODE_NAME="kennel-node"
BRIDGE="kennel0"
POD_CIDR="10.244.0.0/24"
NODE_IP="10.244.0.1"                   # the bridge's address: the node as pods see it
SERVICE_CIDR="10.96.0.0/16"
API_SERVER_SERVICE_IP="10.96.0.1"
DNS_SERVICE_IP="10.96.0.10"
API_PORT="6443"
ETCD_CLIENT_PORT="23790"
ETCD_PEER_PORT="23800"
CLUSTER_DOMAIN="cluster.local"

PAUSE_IMAGE="kennel.local/pause:1.0"
BUSYBOX_IMAGE="kennel.local/busybox:1.0"
COREDNS_IMAGE="kennel.local/coredns:1.0"

CONTAINERD_SOCK="$RUN_DIR/containerd/containerd.sock"

log() { printf '[cluster %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Seconds since the epoch with milliseconds, for the figures the scripts print.
now_ms() { date +%s%3N; }

# The cache directory of one Go tool: named by the version pinned in its go.mod and a
# hash of go.mod, go.sum and any build-time patch (*.sed), so any change builds afresh.
tool_cache_dir() {
  local tool="$1" version="$2" hash
  hash="$(cat "$TOOLS_DIR/$tool/go.mod" "$TOOLS_DIR/$tool/go.sum" \
    $(compgen -G "$TOOLS_DIR/$tool/*.sed" || true) | sha256sum | cut -c1-10)"
  printf '%s/%s-%s-%s\n' "$CACHE_BIN" "$tool" "$version" "$hash"
}

# The version of a module required in a tool's go.mod (the pin).
pinned_version() {
  local tool="$1" module="$2"
  awk -v m="$module" '$1 == m && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' \
    "$TOOLS_DIR/$tool/go.mod"
}

# Host paths that containerd 1.6, libcni and the kubelet use whatever they are told:
# cluster-up records which of them it brings into being, and cluster-down removes those.
HARDCODED_PATHS=(/run/containerd /var/lib/cni /var/lib/kubelet /var/log/containers)

CONFIG_DIR="$CLUSTER_DIR/config"
LOG_DIR="$CLUSTER_DIR/logs"
PID_DIR="$RUN_DIR/pids"
CNI_BIN_DIR="/usr/lib/cni"
CNI_CONF_DIR="$STATE_DIR/cni/net.d"

# Paths of the cached Go binaries (valid once build.sh has run).
k8s_bin() { printf '%s/%s\n' "$(tool_cache_dir kubernetes "$(pinned_version kubernetes k8s.io/kubernetes)")" "$1"; }
gvisor_dir() { tool_cache_dir gvisor "$(pinned_version gvisor gvisor.dev/gvisor)"; }
coredns_bin() { printf '%s/coredns\n' "$(tool_cache_dir coredns "$(pinned_version coredns github.com/coredns/coredns)")"; }
kube_router_bin() {
  printf '%s/kube-router\n' \
    "$(tool_cache_dir kube-router "$(pinned_version kube-router github.com/cloudnativelabs/kube-router/v2)")"
}
crictl_bin() { printf '%s/crictl\n' "$(tool_cache_dir cri-tools "$(pinned_version cri-tools sigs.k8s.io/cri-tools)")"; }

# The component processes, in start order; down.sh stops them in reverse.
COMPONENTS=(etcd kube-apiserver apiserver-proxy kube-controller-manager kube-scheduler containerd
  kubelet kube-proxy kube-router)

# Serialises cluster-up and cluster-down: several people (and their tests) share one
# node, and a down racing an up leaves a half-built cluster. Waits up to 15 minutes (a
# cold up builds for about 20); child scripts inherit the lock through the environment.
cluster_lock() {
  [[ -n "${KENNEL_CLUSTER_LOCK_HELD:-}" ]] && return 0
  mkdir -p /run/lock
  exec 9>/run/lock/kennel-cluster.lock
  if ! flock -n 9; then
    log "waiting for another cluster-up/cluster-down to finish"
    flock -w 900 9 || die "another cluster-up/cluster-down still holds /run/lock/kennel-cluster.lock"
  fi
  export KENNEL_CLUSTER_LOCK_HELD=1
}
