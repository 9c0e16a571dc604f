# Writes the configuration files of containerd, gVisor, CNI, kubelet and kube-proxy.
# Sourced by up.sh after lib.sh; every path and address comes from lib.sh.
# shellcheck shell=bash

write_containerd_config() {
  mkdir -p "$CONFIG_DIR" "$STATE_DIR/containerd" "$RUN_DIR/containerd" "$LOG_DIR/runsc"
  cat >"$CONFIG_DIR/runsc.toml" <<EOF
# containerd-shim-runsc-v1 options: which runsc to run and the flags it gets.
binary_name = "$(gvisor_dir)/runsc"
root = "$RUN_DIR/runsc"
[runsc_config]
  platform = "systrap"
EOF
  cat >"$CONFIG_DIR/containerd.toml" <<EOF
# containerd for the local cluster: its own root, state and socket, so it never meets a
# containerd the host may run.
version = 2
root = "$STATE_DIR/containerd"
state = "$RUN_DIR/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$CONTAINERD_SOCK"

[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE_DIR/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # The machine lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj below its own.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  enable_selinux = false

  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    snapshotter = "overlayfs"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$RUN_DIR/runc"
        SystemdCgroup = false

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runsc]
      runtime_type = "io.containerd.runsc.v1"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runsc.options]
        TypeUrl = "io.containerd.runsc.v1.options"
        ConfigPath = "$CONFIG_DIR/runsc.toml"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$CNI_CONF_DIR"
    max_conf_num = 1
EOF
}

write_cni_config() {
  mkdir -p "$CNI_CONF_DIR"
  # No ipMasq: pods talk only to the node and each other, and the host's NAT table
  # stays untouched. hairpinMode lets a pod reach itself through a Service.
  cat >"$CNI_CONF_DIR/10-kennel.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "kennel",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE_DIR/cni/ipam",
        "ranges": [[{ "subnet": "$POD_CIDR", "gateway": "$NODE_IP" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
}

write_kubelet_config() {
  cat >"$CONFIG_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: true }
  x509: { clientCAFile: $PKI_DIR/ca.crt }
authorization: { mode: Webhook }
tlsCertFile: $PKI_DIR/kubelet-server.crt
tlsPrivateKeyFile: $PKI_DIR/kubelet-server.key
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
# The host mixes cgroup v1 and v2; kubelet 1.36 needs to be told that v1 is acceptable.
cgroupDriver: cgroupfs
failCgroupV1: false
# Without CAP_SYS_RESOURCE the kubelet cannot lower its own oom_score_adj.
oomScoreAdj: 0
clusterDomain: $CLUSTER_DOMAIN
clusterDNS: [$DNS_SERVICE_IP]
podLogsDir: $STATE_DIR/pod-logs
failSwapOn: false
serializeImagePulls: false
# Images are imported, never pulled: garbage-collecting them would break later pods.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: { memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%" }
maxPods: 110
EOF
}

write_kube_proxy_config() {
  cat >"$CONFIG_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: { kubeconfig: $CONFIG_DIR/kube-proxy.kubeconfig }
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# NodePorts only on the bridge, never on loopback: loopback NodePorts would need the
# host-wide route_localnet sysctl.
nodePortAddresses: ["$NODE_IP/32"]
iptables: { localhostNodePorts: false }
# Leave the host's conntrack sysctls as they are.
conntrack: { maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s }
EOF
}
