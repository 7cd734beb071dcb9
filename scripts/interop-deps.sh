#!/usr/bin/env bash
# Installs the BGP daemons the interop and fault e2e tests run against
# (BIRD 2, FRR with bfdd, the gobgp CLI), once: a package already installed
# is not asked for again. The packages' system services are never used: the
# tests start bird, zebra/bgpd/bfdd and gobgpd themselves inside test
# namespaces with their own config, socket and pid files, and end them by
# pid. Safe to run again.
set -euo pipefail

pkgs=(bird2 frr gobgpd)
missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg -s "$p" >/dev/null 2>&1; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d 101: do not let the packages start their services.
rcd=/usr/sbin/policy-rc.d
made_rcd=0
if [ ! -e "$rcd" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$rcd"
  chmod 755 "$rcd"
  made_rcd=1
fi
trap '[ "$made_rcd" = 1 ] && rm -f "$rcd"' EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
