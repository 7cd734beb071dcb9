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
commit=$(cd "$work" && go list -m -json "$mod@$version" | jq -r .Origin.Hash)
if [ -z "$commit" ] || [ "$commit" = null ]; then
  echo "no commit for $mod@$version" >&2
  exit 1
fi

cp -r "$src" "$work/src"
chmod -R u+w "$work/src"
sed -i '/^godebug tlskyber/d' "$work/src/go.mod"
cd "$work/src"

# Every `replace X => ./internal/...`: fetch X at the release commit into place.
grep -E '^replace .* => \./' go.mod | while read -r _ path _ dir; do
  d=$(cd "$work" && go mod download -json "$path@$commit" | jq -r .Dir)
  [ -d "$d" ] || { echo "cannot download $path@$commit" >&2; exit 1; }
  mkdir -p "$dir"
  cp -r "$d/." "$dir/"
  chmod -R u+w "$dir"
done

mkdir -p "$(dirname "$out")"
# version.dev=no: report "v1.11.4" like a release build, not "v1.11.4-dev".
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/hashicorp/terraform/version.dev=no" -o "$out.tmp" .
mv "$out.tmp" "$out"
echo "$out"
