#!/usr/bin/env bash
# `make deploy`: builds the operator image, imports it into the local cluster and runs
# `helm upgrade --install kennel charts/kennel` into kennel-system, with the cluster's
# DNS and address ranges from e2e/.cluster/env. Extra arguments go to Helm, e.g.
#   charts/deploy-local.sh --set replicaCount=2 --set watchNamespace=my-team
set -euo pipefail
cd "$(dirname "$0")/.."
source e2e/cluster/lib.sh

RELEASE="${KENNEL_RELEASE:-kennel}"
NAMESPACE="${KENNEL_NAMESPACE:-kennel-system}"
[[ -f "$CLUSTER_DIR/env" ]] || die "the local cluster is not up (make cluster-up)"
source "$CLUSTER_DIR/env"
export KUBECONFIG
helm=(e2e/tools/helm/helm.sh)

image="$(e2e/images/operator.sh)"
log "deploy: image $image"

values=(
  --set image.repository="${image%:*}" --set image.tag="${image##*:}"
  --set image.pullPolicy=Never
  --set "config.dns.podLabels.${DNS_POD_LABEL%%=*}=${DNS_POD_LABEL#*=}"
  --set config.dns.port="$DNS_POD_PORT"
  --set "config.cluster.podCidrs[0]=$POD_CIDR"
  --set "config.cluster.serviceCidrs[0]=$SERVICE_CIDR"
  --set "config.cluster.apiServerCidrs[0]=${API_SERVER_ENDPOINT%:*}/32"
  --set logFormat=text
)

# Objects applied earlier with kubectl (the e2e tests apply the CRDs, admission policies
# and tenant roles) become the release's: Helm adopts an existing object only when it
# carries the release's ownership metadata.
manifest="$(mktemp /tmp/kennel-deploy.XXXXXX.yaml)"
trap 'rm -f "$manifest"' EXIT
"${helm[@]}" template "$RELEASE" charts/kennel --namespace "$NAMESPACE" "${values[@]}" "$@" >"$manifest"
for object in $("$KUBECTL" get -f "$manifest" -o name --ignore-not-found 2>/dev/null); do
  "$KUBECTL" label --overwrite "$object" app.kubernetes.io/managed-by=Helm >/dev/null
  "$KUBECTL" annotate --overwrite "$object" "meta.helm.sh/release-name=$RELEASE" \
    "meta.helm.sh/release-namespace=$NAMESPACE" >/dev/null
done

# --force-conflicts: the adopted objects' fields belong to kubectl's field managers until
# Helm's server-side apply takes them over.
"${helm[@]}" upgrade --install "$RELEASE" charts/kennel --force-conflicts \
  --namespace "$NAMESPACE" --create-namespace "${values[@]}" "$@"
deployment="$RELEASE"; [[ "$RELEASE" == *kennel* ]] || deployment="$RELEASE-kennel"
"$KUBECTL" -n "$NAMESPACE" rollout status "deployment/$deployment" --timeout=180s
log "deploy: $RELEASE is Ready in $NAMESPACE; try: $KUBECTL apply -f examples/sandbox.yaml"
