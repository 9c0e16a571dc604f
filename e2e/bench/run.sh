#!/usr/bin/env bash
# `make bench`: builds kwok (cached), the release operator and the benchmark, writes
# kwok's stage configuration, then runs the benchmark against the local cluster
# (`make cluster-up` first; the Makefile target does that).
#
# Settings (environment): BENCH_N sandboxes in the burst (1000), BENCH_CONCURRENCY
# client requests in flight (32), BENCH_IDLE_SECS idle window (60), BENCH_GVISOR_N
# sandboxes on the real node under gVisor (20; 0 skips). Figures go to docs/bench/ and
# the table in docs/benchmarks.md.
set -euo pipefail
source "$(dirname "$0")/../cluster/lib.sh"
cd "$REPO_DIR"

kwok_bin="$("$E2E_DIR/bench/kwok.sh")"

# kwok's own stage definitions, taken from the pinned module rather than copied: nodes
# become Ready and keep a heartbeat; Pods become Running at once and vanish once deleted.
stages_dir="$(cd "$TOOLS_DIR/kwok" && go mod download -json sigs.k8s.io/kwok \
  | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')/kustomize/stage"
stages="$CLUSTER_DIR/bench/kwok-stages.yaml"
mkdir -p "$CLUSTER_DIR/bench"
: >"$stages"
for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml \
         pod/fast/pod-ready.yaml pod/fast/pod-delete.yaml; do
  [[ -f "$stages_dir/$f" ]] || die "kwok's module has no $f"
  { echo "---"; cat "$stages_dir/$f"; } >>"$stages"
done

log "building the release operator and the benchmark (log: $LOG_DIR/build-bench.log)"
if ! cargo build --release -p kennel-operator -p kennel-e2e --bin kennel-operator --bin bench \
     >"$LOG_DIR/build-bench.log" 2>&1; then
  tail -30 "$LOG_DIR/build-bench.log" >&2
  die "cargo build failed"
fi

export KWOK_BIN="$kwok_bin" KWOK_STAGES="$stages" KWOK_VERSION="$(pinned_version kwok sigs.k8s.io/kwok)"
export OPERATOR_BIN="$REPO_DIR/target/release/kennel-operator"
export KUBERNETES_VERSION="$(pinned_version kubernetes k8s.io/kubernetes)"
export GVISOR_VERSION="$(pinned_version gvisor gvisor.dev/gvisor)"
exec "$REPO_DIR/target/release/bench"
