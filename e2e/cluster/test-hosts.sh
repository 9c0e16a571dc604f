#!/usr/bin/env bash
# Test hosts for the end-to-end tests: an interface `kennel-test0` on this machine
# with two addresses outside the pod, service and API-server ranges, which pods reach
# through the bridge like any outside host. Tests listen on them to prove an allowlist
# opens one address (TEST_HOST_ALLOWED) and not the other (TEST_HOST_DENIED). No traffic
# ever leaves the machine: the addresses are local, so the kernel delivers to them.
# The interface is a dummy where the kernel has that driver, else a bridge with no ports
# (this VM's kernel has no dummy driver); either only holds addresses.
#
# Usage: test-hosts.sh up|down   (both idempotent)
set -euo pipefail

IFACE="kennel-test0"
ADDRESSES=(10.250.0.1/32 10.250.0.2/32)

up() {
  if ! ip link show "$IFACE" >/dev/null 2>&1; then
    ip link add "$IFACE" type dummy 2>/dev/null || ip link add "$IFACE" type bridge
  fi
  local a
  for a in "${ADDRESSES[@]}"; do
    ip -4 addr show dev "$IFACE" | grep -q "inet ${a%/*}/" || ip addr add "$a" dev "$IFACE"
  done
  ip link set "$IFACE" up
}

down() {
  ip link delete "$IFACE" 2>/dev/null || true
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
