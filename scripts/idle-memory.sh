#!/usr/bin/env bash
# Measures each netd of a 4-node lab at idle and prints one line per node:
#
#   overlay node VmRSS_MiB RssAnon_MiB RssFile_MiB GoHeapInUse_MiB
#
# Usage: scripts/idle-memory.sh [emulated|tailscale] [netd binary]
#
# The lab is named hmem<pid> with its state under /tmp/hmem-state (its own
# namespaces only) and is taken down on exit, also on failure. The
# tailscale overlay runs headscale and a tailscaled per node
# ($TAILSCALED, $TAILSCALE, $HEADSCALE; see scripts/tailscale-tools.sh), so
# netd runs with --tailscale-socket there. netd is measured once its
# VmRSS has been steady (within 64 KiB over 5 s) after its start-up trim
# (30 s after readiness), or after 90 s. NETD_TRIM=0 in the environment
# keeps the pages start-up touched (the "before" of that step). The
# --kubeconfig case needs a real API server: NETD_MEASURE=1 go test -run
# TestIdleMemory ./e2e.
set -euo pipefail

overlay=${1:-emulated}
netd=${2:-}
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "$netd" ]; then
  netd=$(mktemp -d /tmp/hmem-bin.XXXXXX)/netd
  (cd "$root" && go build -o "$netd" ./netd)
fi
name=hmem$$
state=/tmp/hmem-state/$name
mkdir -p /tmp/hmem-state
down() { "$netd" lab down --name "$name" --state-dir "$state" >/dev/null 2>&1 || true; }
trap down EXIT
"$netd" lab up --name "$name" --state-dir "$state" --overlay "$overlay" >/dev/null 2>&1

sleep_until_steady() { # pid
  local last=() deadline=$((SECONDS + 60)) v
  while [ $SECONDS -lt $deadline ]; do
    v=$(awk '/^VmRSS/{print $2}' "/proc/$1/status")
    last+=("$v")
    local n=${#last[@]}
    if [ "$n" -ge 5 ]; then
      local lo hi
      lo=$(printf '%s\n' "${last[@]:n-5}" | sort -n | head -1)
      hi=$(printf '%s\n' "${last[@]:n-5}" | sort -n | tail -1)
      [ $((hi - lo)) -lt 64 ] && return 0
    fi
    sleep 1
  done
}

sleep 32 # the second trim is 30 s after readiness
jq -r '.nodes[] | "\(.name) \(.ns) \(.netd.pid)"' "$state/lab.json" | while read -r node ns pid; do
  sleep_until_steady "$pid"
  read -r rss anon file < <(awk '/^VmRSS/{r=$2} /^RssAnon/{a=$2} /^RssFile/{f=$2} END{print r, a, f}' "/proc/$pid/status")
  heap=$(ip netns exec "$ns" curl -sf "http://127.0.0.1:9180/metrics" | awk '/^go_memstats_heap_inuse_bytes /{print $2}')
  awk -v o="$overlay" -v n="$node" -v r="$rss" -v a="$anon" -v f="$file" -v h="${heap:-0}" \
    'BEGIN{printf "%s %s %.1f %.1f %.1f %.1f\n", o, n, r/1024, a/1024, f/1024, h/1048576}'
done
