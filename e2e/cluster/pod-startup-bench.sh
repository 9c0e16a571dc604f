#!/usr/bin/env bash
# Prints pod create-to-Running p50/p90 over COUNT pods (default 20) under runc and under
# gVisor, on the running local cluster (`make cluster-up` first).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec cargo run -q -p kennel-e2e --bin pod-startup-bench -- "${1:-20}"
