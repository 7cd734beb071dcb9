#!/usr/bin/env bash
# Builds the Debian root file system that `netd lab up --systemd` boots in
# every lab node (systemd-nspawn), once, into a cache outside the
# repository, and prints
#
#   NETD_LAB_ROOTFS=/var/cache/ducksnest/rootfs-bookworm-<key>/rootfs
#
# so that `eval "$(bash scripts/systemd-rootfs.sh)"` exports it for the lab
# and the e2e tests. The key is a hash of what decides the content: the
# release, the variant, the package list and debootstrap's version. The
# versions actually installed are written next to the tree (packages.txt),
# and the time the build took (build-seconds). A warm cache makes this a
# no-op; a second caller waits on a lock and then finds it warm.
#
# Needs root and Debian's debootstrap (installed here with apt if missing);
# the packages come from the Debian mirror apt already uses on this
# machine (apt-get indextargets), or $DEBIAN_MIRROR. This build step is the
# only part that uses the host's network; the containers themselves live
# in the lab's namespaces and reach nothing outside them.
#
# The list: systemd and dbus (the init the unit runs under), iproute2 and
# iputils-ping (the scenario's `ip` and `ping`), procps (`kill`, the
# unit's ExecReload), libnss-systemd (resolves DynamicUser names with
# getent, as on NixOS, so tailscaled can find its operator "netd"),
# curl and jq (the scenario reads netd's status socket and metrics).
set -euo pipefail

TOOLS_CACHE=${TOOLS_CACHE:-/var/cache/ducksnest}
RELEASE=${ROOTFS_RELEASE:-bookworm}
VARIANT=minbase
INCLUDE=systemd,systemd-sysv,dbus,iproute2,iputils-ping,procps,libnss-systemd,curl,jq

if [ "$(id -u)" != 0 ]; then
  echo "systemd-rootfs.sh: needs root (debootstrap)" >&2
  exit 1
fi
missing=()
for p in debootstrap systemd-container; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (apt)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
fi

mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(apt-get indextargets --format '$(SITE) $(RELEASE) $(IDENTIFIER)' 2>/dev/null |
    awk -v r="$RELEASE" '$2 == r && $3 == "Packages" { print $1; exit }')
fi
if [ -z "$mirror" ]; then
  echo "systemd-rootfs.sh: apt knows no mirror for $RELEASE; set DEBIAN_MIRROR" >&2
  exit 1
fi

dbver=$(dpkg-query -W -f '${Version}' debootstrap)
key=$(printf '%s\n' "$RELEASE" "$VARIANT" "$INCLUDE" "$dbver" | sha256sum | cut -c1-12)
dir=$TOOLS_CACHE/rootfs-$RELEASE-$key
rootfs=$dir/rootfs
mkdir -p "$dir"

exec 9>"$dir/.lock"
flock 9

if [ ! -x "$rootfs/lib/systemd/systemd" ]; then
  echo "building the $RELEASE rootfs for the systemd lab into $dir (once, from $mirror)" >&2
  tmp=$dir/rootfs.tmp
  rm -rf "$tmp"
  start=$(date +%s)
  nice debootstrap --variant="$VARIANT" --include="$INCLUDE" "$RELEASE" "$tmp" "$mirror" >"$dir/debootstrap.log" 2>&1 ||
    { tail -20 "$dir/debootstrap.log" >&2; exit 1; }
  # What every lab container shares: no getty on the console, no units
  # that wait for hardware or the network that a lab node does not have,
  # a machine-id made at each boot, an empty resolv.conf (nothing to
  # resolve in the lab), and a volatile journal kept small.
  chroot "$tmp" systemctl mask console-getty.service getty@tty1.service \
    systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
    e2scrub_all.timer fstrim.timer >/dev/null 2>&1
  : >"$tmp/etc/machine-id"
  rm -f "$tmp/etc/resolv.conf" && : >"$tmp/etc/resolv.conf"
  mkdir -p "$tmp/etc/systemd/journald.conf.d"
  printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\n' >"$tmp/etc/systemd/journald.conf.d/lab.conf"
  rm -rf "$tmp/var/cache/apt/archives/"*.deb "$tmp/var/lib/apt/lists/"*
  chroot "$tmp" dpkg-query -W -f '${Package} ${Version}\n' >"$dir/packages.txt"
  echo $(($(date +%s) - start)) >"$dir/build-seconds"
  mv "$tmp" "$rootfs"
  echo "rootfs built in $(cat "$dir/build-seconds")s ($(du -sh "$rootfs" | cut -f1))" >&2
fi

echo "NETD_LAB_ROOTFS=$rootfs"
