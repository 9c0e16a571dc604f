#!/usr/bin/env bash
# Everything `make test` (and so CI) runs, in order: unit tests, then the local cluster
# and the end-to-end tests against it. The cluster is always taken down on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== unit tests"
cargo test --workspace --lib --bins

echo "== local cluster"
trap 'echo "== cluster down"; e2e/cluster/down.sh' EXIT
e2e/cluster/up.sh

echo "== cluster end-to-end tests"
cargo test -p kennel-e2e --test cluster -- --test-threads=2
