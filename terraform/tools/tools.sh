#!/usr/bin/env bash
# Source this (from terraform/check.sh): builds or finds every tool the
# Terraform and workflow checks need, in a cache outside the repository keyed
# by version (or, for our own provider stubs, by a hash of their source), and
# exports their paths. A warm cache makes it a no-op. Needs Go and the Go
# module proxy; apt only for shellcheck.
#
#   TERRAFORM  ACTIONLINT  TFLINT  SHELLCHECK  TFSCHEMA_DIR (holds
#   terraform-provider-aws and terraform-provider-tailscale)

TF_TOOLS_CACHE=${TF_TOOLS_CACHE:-/var/cache/ducksnest}
TERRAFORM_VERSION=v1.11.4
TFLINT_VERSION=v0.61.0
ACTIONLINT_VERSION=v1.7.12
_tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

_go_install() { # dir module@version
  echo "building $2 into $1 (once)" >&2
  GOBIN=$1 GOFLAGS=-buildvcs=false GOWORK=off nice go install "$2" >&2
}

tools_terraform() {
  if [ -n "${TERRAFORM:-}" ] && [ -x "$TERRAFORM" ]; then return 0; fi
  local have
  if have=$(command -v terraform) && "$have" version -json 2>/dev/null | grep -q '"terraform_version": *"1\.1[1-9]\.'; then
    TERRAFORM=$have
  else
    [ -x "$TF_TOOLS_CACHE/terraform-$TERRAFORM_VERSION/terraform" ] ||
      echo "no terraform >= 1.11 on PATH: building $TERRAFORM_VERSION from the Go module proxy (slow, once)" >&2
    TERRAFORM=$(nice "$_tools_dir/build-terraform.sh" "$TF_TOOLS_CACHE" "$TERRAFORM_VERSION") || return 1
  fi
}

tools_tflint() {
  TFLINT=$TF_TOOLS_CACHE/tflint-$TFLINT_VERSION/tflint
  [ -x "$TFLINT" ] || _go_install "$(dirname "$TFLINT")" "github.com/terraform-linters/tflint@$TFLINT_VERSION"
}

tools_actionlint() {
  ACTIONLINT=$TF_TOOLS_CACHE/actionlint-$ACTIONLINT_VERSION/actionlint
  [ -x "$ACTIONLINT" ] || _go_install "$(dirname "$ACTIONLINT")" "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
}

# actionlint runs shellcheck on every run: block only when it finds one.
tools_shellcheck() {
  if ! SHELLCHECK=$(command -v shellcheck); then
    echo "installing Debian's shellcheck (once)" >&2
    local sudo=
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    { $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null; } >&2 || return 1
    SHELLCHECK=$(command -v shellcheck) || return 1
  fi
}

# The schema-only providers, keyed by a hash of their source and of the Go
# version, so an edit (or a regenerated schema) rebuilds them.
tools_schemaprovider() {
  local src=$_tools_dir/schemaprovider hash
  hash=$( (cd "$src" && go version && find . -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' -o -path './schemas/*' \) -print0 |
    LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16)
  TFSCHEMA_DIR=$TF_TOOLS_CACHE/tfschema-$hash
  if [ ! -x "$TFSCHEMA_DIR/terraform-provider-tailscale" ]; then
    echo "building the schema-only providers into $TFSCHEMA_DIR (once per source change)" >&2
    local tmp
    tmp=$(mktemp -d "$TF_TOOLS_CACHE/.tfschema-XXXXXX") || return 1
    (cd "$src" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOWORK=off nice go build -trimpath -o "$tmp/terraform-provider-aws" .) >&2 || { rm -rf "$tmp"; return 1; }
    cp "$tmp/terraform-provider-aws" "$tmp/terraform-provider-tailscale"
    chmod 0755 "$tmp"
    rm -rf "$TFSCHEMA_DIR"
    mv "$tmp" "$TFSCHEMA_DIR"
  fi
}

tools_all() {
  mkdir -p "$TF_TOOLS_CACHE" &&
    tools_terraform && tools_tflint && tools_actionlint && tools_shellcheck && tools_schemaprovider &&
    export TERRAFORM TFLINT ACTIONLINT SHELLCHECK TFSCHEMA_DIR
}
