#!/usr/bin/env bash
# Starts the local single-node Kubernetes cluster: etcd, the control plane, containerd
# (runc and gVisor), the kubelet, kube-proxy, CoreDNS and kube-router as the
# NetworkPolicy enforcer. Idempotent: a healthy cluster started from this checkout is
# left alone. Everything runs as background processes with pid files in /run/kennel.
#
# Writes e2e/.cluster/kubeconfig and e2e/.cluster/env (KEY=value lines for tests).
set -euo pipefail
HERE="$(dirname "$0")"
source "$HERE/lib.sh"
source "$HERE/pki.sh"
source "$HERE/config.sh"
source "$HERE/components.sh"

KUBECONFIG_FILE="$CLUSTER_DIR/kubeconfig"
SYSTEM_PACKAGES=(containerd runc containernetworking-plugins iptables ipset etcd-server buildah
  busybox-static skopeo umoci conntrack socat openssl curl nftables)

install_system_packages() {
  local missing=() p
  for p in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq >"$LOG_DIR/apt.log" 2>&1
  # policy-rc.d keeps the packages' own daemons (containerd, etcd) from starting.
  local had_policy=0; [[ -e /usr/sbin/policy-rc.d ]] && had_policy=1
  [[ $had_policy -eq 1 ]] || printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >>"$LOG_DIR/apt.log" 2>&1 || { tail -20 "$LOG_DIR/apt.log" >&2; die "apt-get install failed"; }
  [[ $had_policy -eq 1 ]] || rm -f /usr/sbin/policy-rc.d
}

# True when a cluster started from this checkout is running and its API server answers.
already_up() {
  [[ -f "$RUN_DIR/checkout" && "$(cat "$RUN_DIR/checkout")" == "$REPO_DIR" ]] || return 1
  [[ -f "$KUBECONFIG_FILE" && -f "$CLUSTER_DIR/env" ]] || return 1
  local c
  for c in "${COMPONENTS[@]}"; do component_alive "$c" || return 1; done
  kubectl_ get --raw /readyz >/dev/null 2>&1
}

create_bridge() {
  ip link add "$BRIDGE" type bridge
  ip addr add "$NODE_IP/${POD_CIDR#*/}" dev "$BRIDGE"
  ip link set "$BRIDGE" up
}

import_images() {
  local archives=() a names=("$PAUSE_IMAGE" "$BUSYBOX_IMAGE" "$COREDNS_IMAGE") i=0
  mapfile -t archives < <("$E2E_DIR/images/build.sh" pause busybox coredns)
  for a in "${archives[@]}"; do
    "$HERE/import-image.sh" "$a" "${names[$i]}" 2>>"$LOG_DIR/import.log"
    i=$((i + 1))
  done
}

apply_manifests() {
  local m="$HERE/manifests"
  kubectl_ apply -f "$m/runtimeclasses.yaml" -f "$m/kube-router-rbac.yaml" >/dev/null
  sed -e "s|@DNS_SERVICE_IP@|$DNS_SERVICE_IP|g" -e "s|@CLUSTER_DOMAIN@|$CLUSTER_DOMAIN|g" \
    -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" "$m/coredns.yaml" | kubectl_ apply -f - >/dev/null
}

write_env_file() {
  cat >"$CLUSTER_DIR/env" <<EOF
KUBECONFIG=$KUBECONFIG_FILE
KUBECTL=$(k8s_bin kubectl)
NODE_NAME=$NODE_NAME
NODE_IP=$NODE_IP
POD_CIDR=$POD_CIDR
SERVICE_CIDR=$SERVICE_CIDR
CLUSTER_DOMAIN=$CLUSTER_DOMAIN
API_SERVER_SERVICE_IP=$API_SERVER_SERVICE_IP
API_SERVER_ENDPOINT=$NODE_IP:$API_PORT
API_SERVER_LOCAL=127.0.0.1:$API_PORT
DNS_SERVICE_IP=$DNS_SERVICE_IP
DNS_POD_LABEL=k8s-app=kube-dns
DNS_POD_PORT=53
RUNTIME_CLASSES=gvisor,runc
BUSYBOX_IMAGE=$BUSYBOX_IMAGE
IMPORT_IMAGE=$HERE/import-image.sh
EOF
}

wait_for_cluster_ready() {
  wait_until "node $NODE_NAME Ready" 120 node_ready
  wait_until "default ServiceAccount" 60 kubectl_ -n default get serviceaccount default
  wait_until "CoreDNS available" 120 kubectl_ -n kube-system wait --for=condition=Available \
    deployment/coredns --timeout=2s
}

node_ready() {
  [[ "$(kubectl_ get node "$NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

main() {
  local start; start="$(now_ms)"
  mkdir -p "$CLUSTER_DIR" "$LOG_DIR" "$CONFIG_DIR"
  [[ $EUID -eq 0 ]] || die "run as root: the node needs mounts, namespaces and iptables"
  cluster_lock
  install_system_packages
  "$HERE/build.sh"
  if already_up; then
    "$HERE/test-hosts.sh" up
    log "cluster already up (KUBECONFIG=$KUBECONFIG_FILE)"
    return
  fi
  "$HERE/down.sh" --quiet   # clear whatever a crashed or foreign cluster left behind
  local boot; boot="$(now_ms)"
  mkdir -p "$STATE_DIR" "$RUN_DIR" "$PID_DIR" "$CONFIG_DIR"
  echo "$REPO_DIR" >"$RUN_DIR/checkout"
  nft list tables >"$RUN_DIR/nft-tables.before" 2>/dev/null || true
  local p
  for p in "${HARDCODED_PATHS[@]}"; do [[ -e "$p" ]] || echo "$p"; done >"$RUN_DIR/created-paths"
  create_bridge
  make_pki
  write_kubeconfig "$KUBECONFIG_FILE" "https://127.0.0.1:$API_PORT" admin
  start_control_plane
  write_containerd_config && write_cni_config && write_kubelet_config && write_kube_proxy_config
  start_containerd
  import_images
  start_node
  apply_manifests
  start_kube_router
  wait_for_cluster_ready
  write_env_file
  "$HERE/test-hosts.sh" up   # addresses the e2e tests serve on (outside every cluster range)
  log "cluster up: start $(( ($(now_ms) - boot) / 1000 )) s, total with builds and checks $(( ($(now_ms) - start) / 1000 )) s"
  print_memory
  log "KUBECONFIG=$KUBECONFIG_FILE  (env: $CLUSTER_DIR/env)"
}

main "$@"
