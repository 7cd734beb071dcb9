#!/usr/bin/env bash
# Builds Terraform from the Go module proxy into a cache directory outside the
# repository, keyed by version, for machines that have no terraform binary.
#
#   build-terraform.sh CACHE_ROOT [VERSION]   prints the path of the binary
#
# The proxy serves github.com/hashicorp/terraform@vX, but `go install mod@v`
# cannot build it: its go.mod replaces nine internal modules with ./internal/...
# directories that are separate modules (so they are missing from the module
# zip), and Go >= 1.26 rejects its `godebug tlskyber=0` line. So we copy the
# module source, fetch each internal module at the release commit (the proxy
# serves them as pseudo-versions) into the directory the replace line names,
# drop the tlskyber line and build from the copy.
set -euo pipefail

cache_root=${1:?usage: build-terraform.sh CACHE_ROOT [VERSION]}
version=${2:-v1.11.4}
out=$cache_root/terraform-$version/terraform
if [ -x "$out" ]; then echo "$out"; exit 0; fi

mod=github.com/hashicorp/terraform
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod GOWORK=off GO111MODULE=on

src=$(cd "$work" && go mod download -json "$mod@$version" | jq -r .Dir)
# The internal modules are fetched at the release commit. The proxy names
# that commit in .Origin when it knows it; otherwise (a proxy or mirror that
# serves no origin, and refuses queries by commit hash) each internal module's
# pseudo-version of the release commit carries the release's commit time.
commit=$(cd "$work" && go list -m -json "$mod@$version" | jq -r '.Origin.Hash // empty')
released=$(cd "$work" && go list -m -json "$mod@$version" | jq -r .Time)
stamp=$(date -u -d "$released" +%Y%m%d%H%M%S)
proxy=$(go env GOPROXY | tr ',|' '\n' | grep -E '^https?://' | head -1)
# at_release PATH: the version of internal module PATH at the release commit.
at_release() {
  if [ -n "$commit" ]; then echo "$commit"; return; fi
  [ -n "$proxy" ] && curl -fsS "$proxy/$1/@v/list" | grep -E -- "-$stamp-[0-9a-f]{12}\$" | head -1
}

cp -r "$src" "$work/src"
chmod -R u+w "$work/src"
sed -i '/^godebug tlskyber/d' "$work/src/go.mod"
cd "$work/src"

# Every `replace X => ./internal/...`: fetch X at the release commit into place.
grep -E '^replace .* => \./' go.mod | while read -r _ path _ dir; do
  v=$(at_release "$path")
  [ -n "$v" ] || { echo "no version of $path at the $version release ($released)" >&2; exit 1; }
  d=$(cd "$work" && go mod download -json "$path@$v" | jq -r .Dir)
  [ -d "$d" ] || { echo "cannot download $path@$v" >&2; exit 1; }
  mkdir -p "$dir"
  cp -r "$d/." "$dir/"
  chmod -R u+w "$dir"
done

mkdir -p "$(dirname "$out")"
# version.dev=no: report "v1.11.4" like a release build, not "v1.11.4-dev".
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/hashicorp/terraform/version.dev=no" -o "$out.tmp" .
mv "$out.tmp" "$out"
echo "$out"
