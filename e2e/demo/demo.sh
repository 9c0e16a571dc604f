#!/usr/bin/env bash
# `make demo`: the main job, end to end. Brings up the local cluster, installs the CRD,
# starts the operator, and runs a sandboxed "agent" that replays the `rm -rf ~/` incident
# and then tries to escape. Shows every attempt failing, the workspace (and only the
# workspace) gone, the read-only inputs and the host intact, and the sandbox expiring
# and leaving nothing behind. The cluster stays up afterwards (`make cluster-down`).
set -euo pipefail
cd "$(dirname "$0")/../.."

NS=kennel-demo
ALLOWED_HOST=10.250.0.1
DENIED_HOST=10.250.0.2
PIDS=()

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cleanup() { local p; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

step "local cluster (make cluster-up)"
e2e/cluster/up.sh
set -a; source e2e/.cluster/env; set +a
k() { "$KUBECTL" "$@"; }
e2e/cluster/test-hosts.sh up
LOGS=e2e/.cluster/logs
mkdir -p "$LOGS" e2e/.cluster/demo

step "operator: build, CRD, start (watching namespace $NS)"
cargo build -q -p kennel-operator
# The release image carries the fence gate, which holds the agent back until its Pod's
# NetworkPolicy is enforced (docs/security.md, "Policy before Pod").
GATE_IMAGE="$(e2e/images/operator.sh)"
k apply --server-side -f crds/ >/dev/null
if k get ns "$NS" >/dev/null 2>&1; then k delete ns "$NS" --wait=true >/dev/null; fi
k create ns "$NS" >/dev/null
cat >e2e/.cluster/demo/operator.yaml <<YAML
cluster:
  podCidrs: [$POD_CIDR]
  serviceCidrs: [$SERVICE_CIDR]
  apiServerCidrs: [${API_SERVER_ENDPOINT%:*}/32]
fenceGate:
  image: $GATE_IMAGE
YAML
target/debug/kennel-operator run --namespace "$NS" --config e2e/.cluster/demo/operator.yaml \
  --metrics-addr 127.0.0.1:18181 >"$LOGS/demo-operator.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do curl -sf 127.0.0.1:18181/readyz >/dev/null && break; sleep 0.2; done
echo "operator ready; log: $LOGS/demo-operator.log, metrics: http://127.0.0.1:18181/metrics"

step "two hosts outside the cluster: $ALLOWED_HOST (allowlisted) and $DENIED_HOST (not)"
for host in "$ALLOWED_HOST" "$DENIED_HOST"; do
  socat "TCP-LISTEN:8080,bind=$host,fork,reuseaddr" SYSTEM:"echo hello from $host" &
  PIDS+=($!)
done
canary=e2e/.cluster/demo/host-home/photos/2011-wedding.jpg
mkdir -p "$(dirname "$canary")" && echo "the node's own files" >"$canary"
before=$(sha256sum "$canary")
echo "a file on the node, outside any sandbox: $canary"

step "tenant: kubectl apply -f sandbox.yaml"
k -n "$NS" create configmap incident --from-file=agent.sh=e2e/demo/agent.sh >/dev/null
sed -e "s|@BUSYBOX_IMAGE@|$BUSYBOX_IMAGE|" -e "s|@API_SERVER_SERVICE_IP@|$API_SERVER_SERVICE_IP|" \
  -e "s|@API_SERVER_ENDPOINT@|$API_SERVER_ENDPOINT|" -e "s|@ALLOWED_HOST@|$ALLOWED_HOST|g" \
  -e "s|@DENIED_HOST@|$DENIED_HOST|" e2e/demo/sandbox.yaml | k -n "$NS" apply -f -
k -n "$NS" wait asb/cleanup-agent --for=jsonpath='{.status.phase}'=Running --timeout=90s
k -n "$NS" get asb,pods -o wide
echo "runtimeClassName: $(k -n "$NS" get pod cleanup-agent -o jsonpath='{.spec.runtimeClassName}')"
echo "kernel the agent sees: $(k -n "$NS" exec cleanup-agent -- dmesg 2>/dev/null | head -n 1)"
echo "kernel of the node:    $(uname -sr)"

step "what the agent did (kubectl logs)"
for _ in $(seq 60); do
  k -n "$NS" logs cleanup-agent 2>/dev/null | grep -q '== done' && break; sleep 1
done
k -n "$NS" logs cleanup-agent

step "afterwards"
echo "node's file intact: $([[ "$(sha256sum "$canary")" == "$before" ]] && echo yes || echo NO)"
echo "inputs intact in the sandbox: $(k -n "$NS" exec cleanup-agent -- cat /inputs/agent.sh \
  | cmp -s - e2e/demo/agent.sh && echo yes || echo NO)"
k -n "$NS" get networkpolicy cleanup-agent -o jsonpath='{range .spec.egress[*]}{.to}{" "}{.ports}{"\n"}{end}' \
  | sed 's/^/  egress allowed: /'

step "expiry"
expires=$(k -n "$NS" get asb cleanup-agent -o jsonpath='{.status.expiresAt}')
echo "status.expiresAt = $expires; waiting for the operator to remove everything"
while k -n "$NS" get asb cleanup-agent >/dev/null 2>&1; do sleep 0.5; done
gone=$(date -u +%s.%N)
awk -v g="$gone" -v e="$(date -ud "$expires" +%s)" 'BEGIN { printf "sandbox gone %.1f s after expiresAt\n", g - e }'
for _ in $(seq 30); do
  [[ -z "$(k -n "$NS" get pods,networkpolicies,pvc -o name 2>/dev/null)" ]] && break; sleep 1
done
echo "left in $NS: $(k -n "$NS" get asb,pods,networkpolicies,pvc -o name 2>/dev/null | wc -l) objects"
step "done (the cluster is still up: make cluster-down stops it)"
