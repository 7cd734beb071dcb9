#!/usr/bin/env bash
# Builds the pinned helper tools into a cache outside the repository, keyed
# by version, and prints nothing but errors. Source it, then use the
# variables it sets. A warm cache makes this a no-op.
set -euo pipefail

TOOLS_CACHE=${TOOLS_CACHE:-/var/cache/ducksnest}
GOLANGCI_VERSION=v2.15.0

GOLANGCI_LINT=$TOOLS_CACHE/golangci-$GOLANGCI_VERSION/golangci-lint
if [ ! -x "$GOLANGCI_LINT" ]; then
  echo "building golangci-lint $GOLANGCI_VERSION into $TOOLS_CACHE (once)" >&2
  GOBIN=$(dirname "$GOLANGCI_LINT") GOFLAGS=-buildvcs=false \
    go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_VERSION"
fi
export GOLANGCI_LINT
