#!/usr/bin/env bash
# Test hosts for the end-to-end tests: an interface `kennel-test0` on this machine
# with two addresses outside the pod, service and API-server ranges, which pods reach
# through the bridge like any outside host. Tests listen on them to prove an allowlist
# opens one address (TEST_HOST_ALLOWED) and not the other (TEST_HOST_DENIED). No traffic
# ever leaves the machine: the addresses are local, so the kernel delivers to them.
# The interface is a dummy where the kernel has that driver, else a bridge with no ports
# (this VM's kernel has no dummy driver); either only holds addresses.
#
# The cloud metadata address (169.254.169.254) is local too, but for pods only: a policy
# routing rule sends traffic from the pod range to it into a table where it is a local
# route, so a test's server (bound with IP_FREEBIND) answers there and a Pod without a
# fence reaches it. The machine's own traffic to that address keeps its usual route: a
# metadata service this VM may use is never shadowed.
#
# Usage: test-hosts.sh up|down   (both idempotent)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

IFACE="kennel-test0"
ADDRESSES=(10.250.0.1/32 10.250.0.2/32)
METADATA="169.254.169.254"
METADATA_TABLE=169        # routing table and rule priority, both otherwise unused here

up() {
  if ! ip link show "$IFACE" >/dev/null 2>&1; then
    ip link add "$IFACE" type dummy 2>/dev/null || ip link add "$IFACE" type bridge
  fi
  local a
  for a in "${ADDRESSES[@]}"; do
    ip -4 addr show dev "$IFACE" | grep -q "inet ${a%/*}/" || ip addr add "$a" dev "$IFACE"
  done
  ip link set "$IFACE" up
  ip route replace local "$METADATA/32" dev "$IFACE" table "$METADATA_TABLE"
  ip rule show priority "$METADATA_TABLE" | grep -q "lookup $METADATA_TABLE" \
    || ip rule add priority "$METADATA_TABLE" from "$POD_CIDR" to "$METADATA/32" \
      lookup "$METADATA_TABLE"
}

down() {
  while ip rule del priority "$METADATA_TABLE" 2>/dev/null; do :; done
  ip route flush table "$METADATA_TABLE" 2>/dev/null || true
  ip link delete "$IFACE" 2>/dev/null || true
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
