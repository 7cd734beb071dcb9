#!/usr/bin/env bash
# Builds the pinned Tailscale tools used by the tailnet lab and e2e tests into
# a cache outside the repository, keyed by version, and prints their paths as
# shell assignments (TAILSCALED=..., TAILSCALE=..., HEADSCALE=...). A warm
# cache makes this a no-op. Use it as:
#
#   eval "$(bash scripts/tailscale-tools.sh)"
#
# tailscale and tailscaled come from the tailscale.com module. headscale
# refuses `go install ...@v0.26.1` (its go.mod has replace directives), so it
# is pinned with `go get -tool` in a module of its own under the cache and
# built from there.
set -euo pipefail

TOOLS_CACHE=${TOOLS_CACHE:-/var/cache/ducksnest}
TAILSCALE_VERSION=${TAILSCALE_VERSION:-v1.82.5}
HEADSCALE_VERSION=${HEADSCALE_VERSION:-v0.26.1}
export GOFLAGS=-buildvcs=false CGO_ENABLED=0

tsdir=$TOOLS_CACHE/tailscale-$TAILSCALE_VERSION
hsdir=$TOOLS_CACHE/headscale-$HEADSCALE_VERSION

if [ ! -x "$tsdir/tailscaled" ] || [ ! -x "$tsdir/tailscale" ]; then
  echo "building tailscale $TAILSCALE_VERSION into $tsdir (once)" >&2
  mkdir -p "$tsdir"
  GOBIN=$tsdir go install \
    "tailscale.com/cmd/tailscaled@$TAILSCALE_VERSION" \
    "tailscale.com/cmd/tailscale@$TAILSCALE_VERSION"
fi

if [ ! -x "$hsdir/headscale" ]; then
  echo "building headscale $HEADSCALE_VERSION into $hsdir (once)" >&2
  mod=$hsdir/mod
  mkdir -p "$mod"
  if [ ! -f "$mod/go.mod" ]; then
    (cd "$mod" && go mod init ducksnest.local/headscale-tool >/dev/null 2>&1)
  fi
  (cd "$mod" && go get -tool "github.com/juanfont/headscale/cmd/headscale@$HEADSCALE_VERSION" >&2 &&
    go build -o "$hsdir/headscale" github.com/juanfont/headscale/cmd/headscale)
fi

echo "TAILSCALED=$tsdir/tailscaled"
echo "TAILSCALE=$tsdir/tailscale"
echo "HEADSCALE=$hsdir/headscale"
