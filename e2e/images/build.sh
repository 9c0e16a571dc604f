#!/usr/bin/env bash
# Builds the local cluster's images as OCI archives, without a daemon or a registry:
# buildah with the vfs storage driver and chroot isolation, in a throwaway store.
#
#   pause    kennel.local/pause:1.0    the pod sandbox: a shell that waits for SIGTERM
#   busybox  kennel.local/busybox:1.0  Debian's busybox-static: sh, wget, nc, dmesg, ...
#   coredns  kennel.local/coredns:1.0  the pinned CoreDNS binary alone
#
# Usage: build.sh NAME...   Prints the path of each archive, one a line. Archives are
# cached under ${XDG_CACHE_HOME:-~/.cache}/kennel/images/ by a hash of their inputs.
set -euo pipefail
source "$(dirname "$0")/../cluster/lib.sh"

IMAGE_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/kennel/images"
STORE="$(mktemp -d /tmp/kennel-buildah.XXXXXX)"
trap 'buildah_ rm --all >/dev/null 2>&1 || true; rm -rf "$STORE"' EXIT

buildah_() {
  buildah --storage-driver vfs --root "$STORE/root" --runroot "$STORE/run" "$@"
}

# A root filesystem holding busybox-static and a link for each of its applets.
busybox_rootfs() {
  local root="$1"
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root"
  chmod 1777 "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  local applet
  for applet in $(/bin/busybox --list); do
    [[ "$applet" == busybox ]] || ln -sf busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' \
    >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
}

# new_image NAME REF ARCHIVE FILL_FN CONFIG_ARGS...: builds from scratch.
new_image() {
  local ref="$1" archive="$2" fill="$3"; shift 3
  local ctr mnt
  ctr="$(buildah_ from scratch)"
  mnt="$(buildah_ mount "$ctr")"
  "$fill" "$mnt"
  buildah_ umount "$ctr" >/dev/null
  buildah_ config "$@" "$ctr"
  buildah_ commit --quiet "$ctr" "oci-archive:$archive.tmp:$ref" >/dev/null
  mv "$archive.tmp" "$archive"
}

fill_busybox() { busybox_rootfs "$1"; }

fill_coredns() {
  mkdir -p "$1/etc/coredns"
  cp "$(coredns_bin)" "$1/coredns"
}

# The archive path for an image: a hash of this script and its inputs names it.
archive_path() {
  local name="$1" extra="$2" hash
  hash="$({ cat "$0"; /bin/busybox | head -1; printf '%s' "$extra"; } | sha256sum | cut -c1-10)"
  printf '%s/%s-%s.tar\n' "$IMAGE_CACHE" "$name" "$hash"
}

build_one() {
  local name="$1" archive
  case "$name" in
    pause)
      archive="$(archive_path pause "")"
      [[ -f "$archive" ]] || new_image "$PAUSE_IMAGE" "$archive" fill_busybox \
        --entrypoint '["/bin/sh","-c","trap \"exit 0\" TERM INT; while :; do sleep 3600 & wait $!; done"]' \
        --cmd '[]'
      ;;
    busybox)
      archive="$(archive_path busybox "")"
      [[ -f "$archive" ]] || new_image "$BUSYBOX_IMAGE" "$archive" fill_busybox \
        --cmd '["/bin/sh"]' --env PATH=/bin
      ;;
    coredns)
      archive="$(archive_path coredns "$(coredns_bin)")"
      [[ -f "$archive" ]] || new_image "$COREDNS_IMAGE" "$archive" fill_coredns \
        --entrypoint '["/coredns"]' --cmd '["-conf","/etc/coredns/Corefile"]'
      ;;
    *) die "unknown image: $name" ;;
  esac
  echo "$archive"
}

main() {
  [[ $# -gt 0 ]] || die "usage: $0 NAME..."
  mkdir -p "$IMAGE_CACHE"
  local name
  for name in "$@"; do build_one "$name"; done
}

main "$@"
