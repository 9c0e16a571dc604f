#!/usr/bin/env bash
# Imports an OCI archive into the local cluster's containerd (namespace k8s.io), where
# the kubelet finds it. Pods then use the image with `imagePullPolicy: Never`.
#
# Usage: import-image.sh ARCHIVE NAME   e.g. import-image.sh operator.tar kennel.local/operator:dev
# NAME is the reference the image gets in the cluster (the archive's own name is
# replaced), so any OCI archive can be imported under any name.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

[[ $# -eq 2 ]] || die "usage: $0 ARCHIVE NAME"
archive="$1" name="$2"
[[ -f "$archive" ]] || die "no such archive: $archive"
[[ -S "$CONTAINERD_SOCK" ]] || die "containerd is not running (make cluster-up first)"

ctr_() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

# `ctr images import` names an image after the archive's ref annotation; import into a
# unique name first, then tag it as NAME, so the caller chooses the name.
tmp_name="import.kennel.local/tmp:$$"
imported="$(ctr_ images import --all-platforms --index-name "$tmp_name" "$archive" 2>&1)" \
  || die "import of $archive failed: $imported"
# Drop whatever other names the archive carried, keeping only NAME.
ctr_ images tag --force "$tmp_name" "$name" >/dev/null
for ref in $(printf '%s\n' "$imported" | awk '/^unpacking /{print $2}'); do
  [[ "$ref" == "$name" ]] || ctr_ images rm "$ref" >/dev/null 2>&1 || true
done
ctr_ images rm "$tmp_name" >/dev/null 2>&1 || true
log "imported $archive as $name"
