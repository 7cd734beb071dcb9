#!/usr/bin/env bash
# Builds kube-apiserver (k8s.io/kubernetes, staging modules replaced by their
# published versions) and etcd (go.etcd.io/etcd/server/v3) from the Go module
# proxy into a cache outside the repository, keyed by version, and prints
#
#   KUBE_APISERVER=/var/cache/ducksnest/kube-v1.37.2/kube-apiserver
#   ETCD=/var/cache/ducksnest/kube-v1.37.2/etcd-v3.7.3
#
# so that `eval "$(scripts/kube-tools.sh)"` exports them for the tests
# (internal/kubetest reads both variables). The first run takes ~10 minutes
# on two cores; a warm cache makes it a no-op. Needs only Go and the module
# proxy. Progress goes to stderr.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}
TOOLS_CACHE=${TOOLS_CACHE:-/var/cache/ducksnest}
STAGING_VERSION=v0.${KUBE_VERSION#v1.} # v1.37.2 -> v0.37.2

dir=$TOOLS_CACHE/kube-$KUBE_VERSION
apiserver=$dir/kube-apiserver
etcd=$dir/etcd-$ETCD_VERSION
mkdir -p "$dir"

# One builder at a time; a second caller waits, then finds the cache warm.
exec 9>"$dir/.lock"
flock 9

export GOFLAGS="-mod=mod -buildvcs=false -trimpath" CGO_ENABLED=0

# build MODULE VERSION PACKAGE OUT REPLACES [LDFLAGS]: builds PACKAGE in a
# throwaway module that requires MODULE@VERSION with the given replace block.
build() {
  local mod=$1 version=$2 pkg=$3 out=$4 replaces=$5 ldflags="-s -w ${6:-}" tmp
  tmp=$(mktemp -d)
  {
    echo "module ducksnest.dev/kubetools"
    echo
    echo "go 1.26.0"
    echo
    echo "require $mod $version"
    if [ -n "$replaces" ]; then
      echo
      echo "replace ("
      printf '%s\n' "$replaces"
      echo ")"
    fi
  } >"$tmp/go.mod"
  echo "building $pkg@$version into $out (once)" >&2
  (cd "$tmp" && nice go build -ldflags="$ldflags" -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
  rm -rf "$tmp"
}

if [ ! -x "$apiserver" ]; then
  gomod=$(cd /tmp && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  # Every staging module the kubernetes go.mod requires at v0.0.0 (and
  # replaces with ./staging/...) gets its published version instead.
  replaces=$(sed -n 's/^[[:space:]]*\(k8s\.io\/[a-z0-9-]*\) v0\.0\.0$/\t\1 => \1 '"$STAGING_VERSION"'/p' "$gomod")
  # /version reports the real version, as the release build's ldflags do.
  v=k8s.io/component-base/version
  minor=${KUBE_VERSION#v1.}
  minor=${minor%%.*}
  build k8s.io/kubernetes "$KUBE_VERSION" k8s.io/kubernetes/cmd/kube-apiserver "$apiserver" "$replaces" \
    "-X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
fi

if [ ! -x "$etcd" ]; then
  # server/v3's go.mod replaces its sibling modules with ../ paths; pin
  # them to the same published version.
  replaces=""
  for m in go.etcd.io/etcd/api/v3 go.etcd.io/etcd/client/pkg/v3 go.etcd.io/etcd/client/v3 go.etcd.io/etcd/pkg/v3; do
    replaces+=$'\t'"$m => $m $ETCD_VERSION"$'\n'
  done
  build go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3 "$etcd" "${replaces%$'\n'}"
fi

echo "KUBE_APISERVER=$apiserver"
echo "ETCD=$etcd"
