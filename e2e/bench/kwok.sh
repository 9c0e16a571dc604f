#!/usr/bin/env bash
# Builds kwok from its pinned go.mod (e2e/tools/kwok) into the same version-keyed cache
# as the cluster's other Go tools, and prints the binary's path. A cached build is reused.
#
# Usage: e2e/bench/kwok.sh   (build output goes to e2e/.cluster/logs/build-kwok.log)
set -euo pipefail
source "$(dirname "$0")/../cluster/lib.sh"

version="$(pinned_version kwok sigs.k8s.io/kwok)"
dest="$(tool_cache_dir kwok "$version")"
if [[ ! -f "$dest/.complete" ]]; then
  mkdir -p "$LOG_DIR" "$CACHE_BIN"
  logfile="$LOG_DIR/build-kwok.log" tmp="$dest.tmp" start="$(now_ms)"
  log "kwok $version: building (log: $logfile)"
  rm -rf "$tmp" && mkdir -p "$tmp"
  # Two cores on the reference machine: keep the build to them and out of everyone's way.
  if ! (cd "$TOOLS_DIR/kwok" && GOFLAGS="-buildvcs=false -trimpath" CGO_ENABLED=0 GOMAXPROCS=2 \
        nice go build -p 2 -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$version" \
        -o "$tmp/kwok" sigs.k8s.io/kwok/cmd/kwok) >>"$logfile" 2>&1; then
    tail -20 "$logfile" >&2
    die "kwok: build failed (see $logfile)"
  fi
  touch "$tmp/.complete"
  rm -rf "$dest" && mv "$tmp" "$dest"
  log "kwok $version: built in $(( ($(now_ms) - start) / 1000 )) s"
fi
printf '%s/kwok\n' "$dest"
