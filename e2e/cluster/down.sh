#!/usr/bin/env bash
# Stops the local cluster and removes everything it created: processes, pod sandboxes
# and their network namespaces, mounts, the bridge, iptables chains and ipsets made by
# kube-proxy, kube-router, the kubelet and the CNI plugins, and the state directories.
# The host's own rules, routes and resolver are not touched. Safe to run at any time.
#
# Usage: down.sh [--quiet]
set -euo pipefail
HERE="$(dirname "$0")"
source "$HERE/lib.sh"
source "$HERE/components.sh"
PKI_DIR="$CLUSTER_DIR/pki"

QUIET=0
[[ "${1:-}" == "--quiet" ]] && QUIET=1
say() { [[ $QUIET -eq 1 ]] || log "$@"; }

crictl_() {
  "$(crictl_bin)" --runtime-endpoint "unix://$CONTAINERD_SOCK" --timeout 30s "$@"
}

# Stop every pod sandbox through the CRI, so the CNI plugins release addresses and
# containerd removes the network namespaces and mounts it made.
remove_pods() {
  component_alive containerd || return 0
  [[ -x "$(crictl_bin)" ]] || return 0
  crictl_ rmp --all --force >>"$LOG_DIR/down.log" 2>&1 || say "crictl rmp failed (see down.log)"
}

# Network namespaces containerd made for our pods, named in its metadata store.
our_netns() {
  local db="$STATE_DIR/containerd/io.containerd.metadata.v1.bolt/meta.db"
  [[ -f "$db" ]] || return 0
  { grep -aoE '/var/run/netns/cni-[0-9a-f-]{36}' "$db" || true; } | sort -u | xargs -r -n1 basename
}

# Pod network namespaces that containerd's records no longer name (a state directory
# replaced under a running cluster), recognised by an address in our pod network.
orphan_pod_netns() {
  local n prefix="${POD_CIDR%.*}."
  for n in $(ip netns list 2>/dev/null | awk '/^cni-/ {print $1}'); do
    ip -n "$n" -4 -o addr show 2>/dev/null | grep -q "inet ${prefix//./\\.}" && echo "$n"
  done
  return 0
}

kill_pod_processes() {
  local pids
  pids="$(pod_pids)"
  [[ -n "$pids" ]] || return 0
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  sleep 0.5
}

# Components without a pid file (a crashed script, or two ups that raced before the lock
# existed), recognised by their command lines.
kill_stray_components() {
  local bins="kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy|kube-router"
  local pattern="^($CACHE_BIN/[^/ ]+/($bins) |etcd --name kennel --data-dir $STATE_DIR/"
  pattern+="|containerd --config [^ ]*/e2e/\\.cluster/config/containerd\\.toml"
  pattern+="|socat TCP-LISTEN:$API_PORT,bind=127\\.0\\.0\\.1,)"
  local pids; pids="$(pgrep -f -- "$pattern" || true)"
  [[ -n "$pids" ]] || return 0
  say "stopping stray components: $(echo $pids)"
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  sleep 0.3
}

remove_mounts() {
  local netns="$1" m n
  for n in $netns; do
    [[ -e "/run/netns/$n" ]] || continue
    ip netns delete "$n" 2>/dev/null || umount -l "/run/netns/$n" 2>/dev/null || true
    rm -f "/run/netns/$n"
  done
  # Deepest first, so nested mounts come off before their parents.
  for m in $(findmnt -rn -o TARGET | grep -E "^($STATE_DIR|$RUN_DIR)(/|$)" | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
}

# Deletes, in every table, the chains whose names we own and the rules that jump to them,
# then restores the table: the host's own rules and chain policies stay exactly as they were.
sweep_iptables() {
  local save="$1" restore="$2" table dump cleaned
  command -v "$save" >/dev/null || return 0
  for table in raw mangle nat filter security; do
    dump="$("$save" -t "$table" 2>/dev/null)" || continue
    grep -qE 'KUBE-|CNI-' <<<"$dump" || continue
    cleaned="$(awk '
      /^:(KUBE-|CNI-)/ { next }
      /^-A (KUBE-|CNI-)/ { next }
      /^-A / && / -j (KUBE-|CNI-)/ { next }
      /^-A / && /--match-set (KUBE-|kube-router|inet6:KUBE-)/ { next }
      { print }' <<<"$dump")"
    "$restore" -T "$table" <<<"$cleaned" || say "could not clean $table with $restore"
  done
}

# iptables-nft creates its tables on first use; drop those that did not exist before
# up.sh ran (it records them) and are now empty again.
remove_new_empty_nft_tables() {
  local before="$RUN_DIR/nft-tables.before" family table rules
  [[ -f "$before" ]] && command -v nft >/dev/null || return 0
  while read -r _ family table; do
    grep -qx "table $family $table" "$before" && continue
    rules="$(nft -a list table "$family" "$table" 2>/dev/null \
      | grep -c '# handle' | awk '{print $1}')"
    # Every table and chain line carries a handle too; rules are the rest.
    local chains; chains="$(nft list table "$family" "$table" 2>/dev/null | grep -cE '^\s*(table|chain) ')"
    if [[ "$rules" -le "$chains" ]]; then nft delete table "$family" "$table" || true; fi
  done < <(nft list tables 2>/dev/null)
}

sweep_ipsets() {
  command -v ipset >/dev/null || return 0
  local s
  for s in $(ipset list -n 2>/dev/null | grep -E '^(inet6:)?(KUBE-|kube-router)'); do
    ipset destroy "$s" 2>/dev/null || say "could not destroy ipset $s"
  done
}

# What containerd 1.6, libcni and the kubelet leave in fixed host paths: stale shim
# sockets in /run/containerd/s, libcni's cached results for our network, the kubelet's
# log links; and each of those paths entirely when cluster-up brought it into being.
remove_hardcoded_path_leftovers() {
  local dir=/run/containerd/s f listening p
  if [[ -d "$dir" ]]; then
    listening="$(ss -xlH 2>/dev/null | awk '{print $5}')"
    for f in "$dir"/*; do
      if [[ -S "$f" ]] && ! grep -qxF "$f" <<<"$listening"; then rm -f "$f"; fi
    done
  fi
  # libcni names cached results NETWORK-SANDBOX-IFNAME; containerd's loopback network is
  # cni-loopback, ours is kennel.
  for f in /var/lib/cni/results/kennel-*-eth0; do
    [[ -e "$f" ]] || continue
    p="${f#/var/lib/cni/results/kennel-}"
    rm -f "$f" "/var/lib/cni/results/cni-loopback-${p%-eth0}-lo"
  done
  find /var/log/containers -maxdepth 1 -lname "$STATE_DIR/*" -delete 2>/dev/null || true
  [[ -f "$RUN_DIR/created-paths" ]] || return 0
  while read -r p; do
    case "$p" in
      /run/containerd|/var/lib/cni|/var/lib/kubelet|/var/log/containers) rm -rf "$p" ;;
    esac
  done <"$RUN_DIR/created-paths"
}

remove_cgroups() {
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods /sys/fs/cgroup/unified/kubepods; do
    [[ -d "$d" ]] || continue
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

main() {
  cluster_lock
  mkdir -p "$LOG_DIR"
  say "stopping the cluster"
  local netns; netns="$(our_netns)"
  stop_component kubelet
  remove_pods
  stop_components kube-router kube-proxy containerd
  kill_pod_processes
  stop_components kube-scheduler kube-controller-manager apiserver-proxy kube-apiserver
  stop_component etcd
  kill_stray_components
  kill_pod_processes
  remove_mounts "$netns $(orphan_pod_netns)"
  sweep_iptables iptables-save iptables-restore
  sweep_iptables ip6tables-save ip6tables-restore
  # Only when legacy tables exist: merely listing them would create them.
  if [[ -s /proc/net/ip_tables_names ]]; then
    sweep_iptables iptables-legacy-save iptables-legacy-restore
  fi
  remove_new_empty_nft_tables
  sweep_ipsets
  ip link delete "$BRIDGE" 2>/dev/null || true
  "$HERE/test-hosts.sh" down
  remove_cgroups
  remove_hardcoded_path_leftovers
  rm -rf "$STATE_DIR" "$RUN_DIR" "$CLUSTER_DIR/kubeconfig" "$CLUSTER_DIR/env"
  say "cluster down"
}

main "$@"
