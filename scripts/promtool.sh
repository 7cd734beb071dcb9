#!/usr/bin/env bash
# Puts Prometheus' promtool (for `promtool check rules` and `promtool test
# rules` on deploy/monitoring/) into a cache outside the repository, keyed
# by the Debian package's version, and prints
#
#   PROMTOOL=/var/cache/ducksnest/promtool-<version>/promtool
#
# for `eval "$(scripts/promtool.sh)"`. It takes only /usr/bin/promtool out
# of Debian's `prometheus` package (apt-get download + dpkg-deb -x): the
# package is never installed, so no prometheus user, no service started and
# none of the web UI's dependencies. A few seconds cold; a warm cache is a
# no-op (apt is not asked). Progress goes to stderr.
set -euo pipefail

TOOLS_CACHE=${TOOLS_CACHE:-/var/cache/ducksnest}
mkdir -p "$TOOLS_CACHE"

# A cached promtool of any version is used as it is: the rules need nothing
# newer than bookworm's 2.42.
for p in "$TOOLS_CACHE"/promtool-*/promtool; do
  if [ -x "$p" ]; then
    echo "PROMTOOL=$p"
    exit 0
  fi
done

exec 9>"$TOOLS_CACHE/.promtool.lock"
flock 9

version() { apt-cache policy prometheus 2>/dev/null | sed -n 's/^ *Candidate: //p'; }
ver=$(version)
if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
  echo "promtool.sh: apt-get update (no candidate for prometheus yet)" >&2
  apt-get update -qq >&2
  ver=$(version)
fi
if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
  echo "promtool.sh: apt has no prometheus package" >&2
  exit 1
fi
dir=$TOOLS_CACHE/promtool-${ver//[^A-Za-z0-9.+-]/_}
if [ ! -x "$dir/promtool" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "promtool.sh: taking promtool out of Debian's prometheus $ver (once)" >&2
  # As root, apt drops to _apt to download: let it write there.
  chmod 777 "$tmp"
  (cd "$tmp" && apt-get download -qq "prometheus=$ver" >&2)
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root"
  mkdir -p "$dir"
  install -m 755 "$tmp/root/usr/bin/promtool" "$dir/promtool.tmp"
  "$dir/promtool.tmp" --version >&2
  mv "$dir/promtool.tmp" "$dir/promtool"
fi
echo "PROMTOOL=$dir/promtool"
