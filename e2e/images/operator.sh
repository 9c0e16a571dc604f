#!/usr/bin/env bash
# Builds the operator's image without a daemon or a registry and imports it into the
# local cluster: `cargo build --release`, then buildah (vfs storage, chroot isolation,
# a throwaway store) packs the binary with only the shared libraries `ldd` lists, on
# an empty base, running as user 65532 with no shell. The tag is a hash of the binary,
# so a changed operator gets a new tag and `helm upgrade` rolls the Deployment.
#
# Usage: operator.sh [--no-import]   Prints the image reference (kennel.local/operator:TAG)
# on stdout. The archive is cached under ${XDG_CACHE_HOME:-~/.cache}/kennel/images/.
set -euo pipefail
source "$(dirname "$0")/../cluster/lib.sh"

REPO="kennel.local/operator"
IMAGE_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/kennel/images"
BINARY="$REPO_DIR/target/release/kennel-operator"
import=true
[[ "${1:-}" == --no-import ]] && import=false

build_binary() {
  log "operator: cargo build --release"
  (cd "$REPO_DIR" && cargo build --release --locked -p kennel-operator) >&2 \
    || die "cargo build --release -p kennel-operator failed"
}

# The shared libraries the binary loads, the dynamic loader included, as absolute paths.
needed_libs() {
  ldd "$BINARY" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
}

fill_operator() {
  local root="$1" lib
  mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp"
  chmod 1777 "$root/tmp"
  cp "$BINARY" "$root/usr/local/bin/kennel-operator"
  for lib in $(needed_libs); do
    # Copy the file a symlink points to, under the name the loader asks for.
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  printf 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'nonroot:x:65532:\n' >"$root/etc/group"
}

build_archive() {
  local archive="$1" ref="$2" store ctr mnt
  store="$(mktemp -d /tmp/kennel-buildah.XXXXXX)"
  buildah_() { buildah --storage-driver vfs --root "$store/root" --runroot "$store/run" "$@"; }
  ctr="$(buildah_ from scratch)"
  mnt="$(buildah_ mount "$ctr")"
  fill_operator "$mnt"
  buildah_ umount "$ctr" >/dev/null
  buildah_ config --user 65532:65532 --entrypoint '["/usr/local/bin/kennel-operator"]' \
    --cmd '["run"]' --env RUST_BACKTRACE=0 --port 8080 \
    --label org.opencontainers.image.title=kennel-operator "$ctr"
  buildah_ commit --quiet "$ctr" "oci-archive:$archive.tmp:$ref" >/dev/null
  buildah_ rm --all >/dev/null 2>&1 || true
  rm -rf "$store"
  mv "$archive.tmp" "$archive"
}

main() {
  [[ "${KENNEL_SKIP_CARGO:-}" == 1 ]] || build_binary
  [[ -x "$BINARY" ]] || die "no operator binary at $BINARY"
  local tag archive ref
  tag="$({ cat "$0"; cat "$BINARY"; } | sha256sum | cut -c1-12)"
  ref="$REPO:$tag"
  archive="$IMAGE_CACHE/operator-$tag.tar"
  mkdir -p "$IMAGE_CACHE"
  if [[ ! -f "$archive" ]]; then
    log "operator: packing $ref ($(needed_libs | wc -l) shared libraries)"
    build_archive "$archive" "$ref"
  fi
  if $import; then
    "$E2E_DIR/cluster/import-image.sh" "$archive" "$ref"
  fi
  echo "$ref"
}

main "$@"
