# Starting, watching and stopping the cluster's processes. Sourced after lib.sh.
# Each component runs detached (setsid), logs to e2e/.cluster/logs/NAME.log and has its
# pid in /run/kennel/pids/NAME.pid.
# shellcheck shell=bash

kubectl_() { "$(k8s_bin kubectl)" --kubeconfig "$CLUSTER_DIR/kubeconfig" "$@"; }

component_pid() { cat "$PID_DIR/$1.pid" 2>/dev/null; }

component_alive() {
  local pid; pid="$(component_pid "$1")" || return 1
  [[ -n "$pid" ]] && pid_running "$pid"
}

# start_component NAME COMMAND...: runs COMMAND detached, with an extra PATH entry from
# $COMPONENT_PATH when set (containerd finds its shims through PATH).
start_component() {
  local name="$1"; shift
  mkdir -p "$PID_DIR" "$LOG_DIR"
  # 9>&-: the component must not inherit the cluster lock (lib.sh, cluster_lock).
  PATH="${COMPONENT_PATH:+$COMPONENT_PATH:}$PATH" setsid "$@" \
    </dev/null >>"$LOG_DIR/$name.log" 2>&1 9>&- &
  echo $! >"$PID_DIR/$name.pid"
}

# wait_until DESCRIPTION SECONDS COMMAND...: polls COMMAND every 0.2 s.
wait_until() {
  local what="$1" timeout="$2"; shift 2
  local deadline=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    if (( $(date +%s) >= deadline )); then
      die "timed out after ${timeout}s waiting for $what (logs: $LOG_DIR)"
    fi
    sleep 0.2
  done
}

# True while PID exists and is not a zombie (a detached component's zombie lingers
# until its adopting parent reaps it, which can take a while).
pid_running() {
  local state
  state="$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null)"
  [[ -n "$state" && "$state" != Z ]]
}

# stop_components NAME...: SIGTERM to each one's process group (setsid made it the
# leader, so socat's per-connection children go too), SIGKILL to whatever still runs
# after 10 s; removes the pid files.
stop_components() {
  local name pid pids=() i
  for name in "$@"; do
    pid="$(component_pid "$name")" || continue
    [[ -n "$pid" ]] && pid_running "$pid" || continue
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    pids+=("$pid")
  done
  for i in $(seq 100); do
    local alive=0
    for pid in "${pids[@]}"; do pid_running "$pid" && alive=1; done
    [[ $alive -eq 1 ]] || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  for name in "$@"; do rm -f "$PID_DIR/$name.pid"; done
}

stop_component() { stop_components "$1"; }

etcd_healthy() {
  curl -sf --cacert "$PKI_DIR/ca.crt" --cert "$PKI_DIR/etcd.crt" --key "$PKI_DIR/etcd.key" \
    "https://127.0.0.1:$ETCD_CLIENT_PORT/health" | grep -q '"health":"true"'
}

start_etcd() {
  start_component etcd etcd --name kennel --data-dir "$STATE_DIR/etcd" \
    --listen-client-urls "https://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls "https://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "kennel=http://127.0.0.1:$ETCD_PEER_PORT" \
    --cert-file "$PKI_DIR/etcd.crt" --key-file "$PKI_DIR/etcd.key" \
    --trusted-ca-file "$PKI_DIR/ca.crt" --client-cert-auth
  wait_until etcd 30 etcd_healthy
}

# The API server listens on the bridge address, because the `kubernetes` Service's
# endpoint may not be a loopback address; socat makes it reachable on 127.0.0.1 too.
start_apiserver() {
  local p="$PKI_DIR"
  start_component kube-apiserver "$(k8s_bin kube-apiserver)" \
    --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port="$API_PORT" \
    --etcd-servers="https://127.0.0.1:$ETCD_CLIENT_PORT" --etcd-cafile="$p/ca.crt" \
    --etcd-certfile="$p/apiserver-etcd-client.crt" --etcd-keyfile="$p/apiserver-etcd-client.key" \
    --client-ca-file="$p/ca.crt" --tls-cert-file="$p/apiserver.crt" \
    --tls-private-key-file="$p/apiserver.key" \
    --kubelet-client-certificate="$p/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$p/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$p/ca.crt" --kubelet-preferred-address-types=InternalIP \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --service-account-issuer="https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
    --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true --profiling=false --v=1
  start_component apiserver-proxy socat \
    "TCP-LISTEN:$API_PORT,bind=127.0.0.1,reuseaddr,fork" "TCP:$NODE_IP:$API_PORT"
  wait_until kube-apiserver 60 kubectl_ get --raw /readyz
}

start_control_plane() {
  local c="$CONFIG_DIR"
  write_kubeconfig "$c/controller-manager.kubeconfig" "https://127.0.0.1:$API_PORT" controller-manager
  write_kubeconfig "$c/scheduler.kubeconfig" "https://127.0.0.1:$API_PORT" scheduler
  start_etcd
  start_apiserver
  start_component kube-controller-manager "$(k8s_bin kube-controller-manager)" \
    --kubeconfig="$c/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$c/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$c/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI_DIR/sa.key" --root-ca-file="$PKI_DIR/ca.crt" \
    --cluster-signing-cert-file="$PKI_DIR/ca.crt" --cluster-signing-key-file="$PKI_DIR/ca.key" \
    --allocate-node-cidrs=true --cluster-cidr="${POD_CIDR%.*/*}.0/16" --node-cidr-mask-size=24 \
    --service-cluster-ip-range="$SERVICE_CIDR" --v=1
  start_component kube-scheduler "$(k8s_bin kube-scheduler)" \
    --kubeconfig="$c/scheduler.kubeconfig" --authentication-kubeconfig="$c/scheduler.kubeconfig" \
    --authorization-kubeconfig="$c/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --v=1
}

# Debian's containerd 1.6 reads a shim's `start` output as a bare socket address, while
# gVisor's current shim prints containerd 2's JSON bootstrap parameters (for task API v2,
# which 1.6 speaks). This wrapper hands 1.6 the address from that JSON and passes every
# other shim command through untouched.
write_runsc_shim_wrapper() {
  mkdir -p "$RUN_DIR/bin"
  cat >"$RUN_DIR/bin/containerd-shim-runsc-v1" <<WRAPPER
#!/bin/sh
real="$(gvisor_dir)/containerd-shim-runsc-v1"
for last; do :; done
[ "\$last" = start ] || exec "\$real" "\$@"
out="\$("\$real" "\$@")" || exit \$?
address="\$(printf '%s' "\$out" | sed -n 's/.*"address":"\\([^"]*\\)".*/\\1/p')"
printf '%s' "\${address:-\$out}"
WRAPPER
  chmod +x "$RUN_DIR/bin/containerd-shim-runsc-v1"
}

start_containerd() {
  write_runsc_shim_wrapper
  # containerd finds containerd-shim-runsc-v1 through PATH.
  COMPONENT_PATH="$RUN_DIR/bin" start_component containerd containerd \
    --config "$CONFIG_DIR/containerd.toml"
  wait_until containerd 30 ctr --address "$CONTAINERD_SOCK" version
}

start_node() {
  local c="$CONFIG_DIR"
  write_kubeconfig "$c/kubelet.kubeconfig" "https://127.0.0.1:$API_PORT" kubelet
  write_kubeconfig "$c/kube-proxy.kubeconfig" "https://127.0.0.1:$API_PORT" kube-proxy
  start_component kubelet "$(k8s_bin kubelet)" --config="$c/kubelet.yaml" \
    --kubeconfig="$c/kubelet.kubeconfig" --hostname-override="$NODE_NAME" \
    --node-ip="$NODE_IP" --root-dir="$STATE_DIR/kubelet" --v=1
  start_component kube-proxy "$(k8s_bin kube-proxy)" --config="$c/kube-proxy.yaml" --v=1
}

start_kube_router() {
  write_kubeconfig "$CONFIG_DIR/kube-router.kubeconfig" "https://127.0.0.1:$API_PORT" kube-router
  start_component kube-router "$(kube_router_bin)" \
    --kubeconfig="$CONFIG_DIR/kube-router.kubeconfig" --hostname-override="$NODE_NAME" \
    --run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false \
    --health-port=0 --metrics-port=0 --v=1
}

# Resident memory of each component, and of the pod shims and sandboxes together.
print_memory() {
  local c pid rss total=0
  log "resident memory (MiB):"
  for c in "${COMPONENTS[@]}"; do
    pid="$(component_pid "$c")" || continue
    rss="$(awk '/^VmRSS/ {print int($2/1024)}' "/proc/$pid/status" 2>/dev/null || echo 0)"
    total=$((total + rss))
    printf '  %-24s %5s\n' "$c" "$rss" >&2
  done
  rss="$(pods_rss_mib)"
  printf '  %-24s %5s\n' "pods (shims, sandboxes)" "$rss" >&2
  printf '  %-24s %5s\n' total "$((total + rss))" >&2
}

# Every process whose command line names our containerd socket or our runsc root, plus
# their descendants: the shims, gVisor sandboxes and the containers' processes.
pod_pids() {
  local roots
  roots="$(pgrep -f -- "$CONTAINERD_SOCK|$RUN_DIR/runsc" || true)"
  [[ -n "$roots" ]] || return 0
  local pid all="$roots" frontier="$roots" next
  while [[ -n "$frontier" ]]; do
    next=""
    for pid in $frontier; do next+=" $(pgrep -P "$pid" || true)"; done
    frontier="$(echo $next)"
    all+=" $frontier"
  done
  printf '%s\n' $all | sort -u
}

pods_rss_mib() {
  local pid sum=0 kb
  for pid in $(pod_pids); do
    kb="$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)"
    sum=$((sum + ${kb:-0}))
  done
  echo $((sum / 1024))
}
