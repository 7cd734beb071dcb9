#!/usr/bin/env bash
# Offline checks of terraform/ and .github/workflows/: formatting, schema
# validation, terraform test with mocked providers, tflint, actionlint and a
# few static checks. Runs as root on a fresh Debian machine with Go, the Go
# module proxy and apt; never downloads a Terraform provider and never talks
# to AWS or Tailscale. Exits non-zero on any failure and ends with one line:
#
#   terraform: N passed, N failed
#
# counting every terraform test run block and every other check step.
#
# Environment: TF_TOOLS_CACHE (default /var/cache/ducksnest) holds the built
# tools; AWS_FULL_SCHEMA is the full AWS schema data (default
# /work/shared/terraform/aws-provider-schema.json.gz; the "schema extract is
# current" step is skipped where it does not exist, as on GitHub runners).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

# Never let the AWS SDK probe the instance-metadata address, never phone home.
export AWS_EC2_METADATA_DISABLED=true CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1 TF_INPUT=0
unset TF_CLI_CONFIG_FILE TF_CLI_ARGS TF_CLI_ARGS_validate TF_CLI_ARGS_test TF_PLUGIN_CACHE_DIR TF_WORKSPACE TF_LOG

passed=0
failed=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

summary() {
  echo
  echo "terraform: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

# step NAME CMD...: run one check, count it, show its output only on failure.
step() {
  local name=$1 start rc
  shift
  start=$SECONDS
  "$@" >"$work/step.log" 2>&1
  rc=$?
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    printf 'ok    %s (%ds)\n' "$name" $((SECONDS - start))
  else
    failed=$((failed + 1))
    printf 'FAIL  %s (%ds, exit %d)\n' "$name" $((SECONDS - start)) "$rc"
    grep -v -E '^(│ )?$' "$work/step.log" | sed 's/^/      /'
  fi
}

tf() { # terraform without the dev_overrides warning on success
  "$TERRAFORM" "$@" -no-color
}

# ------------------------------------------------------------------ tools

start=$SECONDS
# shellcheck source-path=SCRIPTDIR source=tools/tools.sh
source "$here/tools/tools.sh"
if ! tools_all; then
  failed=$((failed + 1))
  echo "FAIL  tools (could not build or find terraform, tflint, actionlint, shellcheck or the schema providers)"
  summary
  exit 1
fi
echo "tools ready in $((SECONDS - start))s: $("$TERRAFORM" version | head -1), tflint $TFLINT_VERSION, actionlint $ACTIONLINT_VERSION, providers in $TFSCHEMA_DIR"

# The schema-only providers replace the real ones; the filesystem mirror is
# empty, so any other provider fails instead of being downloaded.
mkdir -p "$work/no-providers"
cat >"$work/terraformrc" <<EOF
provider_installation {
  dev_overrides {
    "registry.terraform.io/hashicorp/aws"       = "$TFSCHEMA_DIR"
    "registry.terraform.io/tailscale/tailscale" = "$TFSCHEMA_DIR"
  }
  filesystem_mirror {
    path = "$work/no-providers"
  }
}
EOF
export TF_CLI_CONFIG_FILE=$work/terraformrc
export SCHEMAPROVIDER_CALL_LOG=$work/provider-calls.log

# ------------------------------------------------------------------ checks

step "terraform fmt -check -recursive" tf fmt -check -recursive -diff "$here"

full_schema=${AWS_FULL_SCHEMA:-/work/shared/terraform/aws-provider-schema.json.gz}
check_extract() {
  "$here/tools/extract-aws-schema.sh" "$full_schema" "$work/aws.json.gz" || return 1
  if ! cmp <(gzip -dc "$work/aws.json.gz") <(gzip -dc "$here/tools/schemaprovider/schemas/aws.json.gz"); then
    echo "schemas/aws.json.gz is stale: run terraform/tools/extract-aws-schema.sh"
    return 1
  fi
}
if [ -f "$full_schema" ]; then
  step "aws schema extract is current" check_extract
else
  echo "skip  aws schema extract is current ($full_schema not here)"
fi

step "schemaprovider go vet + go test" \
  env -C "$here/tools/schemaprovider" GOWORK=off GOFLAGS=-buildvcs=false sh -c 'go vet ./... && go test -count=1 ./...'

# No Terraform code may manage the tailnet policy: netd's policy tooling is
# its one writer. The grep is tried on a planted file first, so it cannot
# pass by matching nothing.
acl_grep() {
  grep -rnE --include='*.tf' --include='*.tf.json' --include='*.tftest.hcl' --include='*.hcl' \
    -e '(resource|data|import|removed)[[:space:]]*"?tailscale_acl"?' -e '"tailscale_acl"[[:space:]]*:' -e 'tailscale_acl\.' "$@"
}
check_no_acl() {
  mkdir -p "$work/acl-canary"
  printf 'resource "tailscale_acl" "x" {\n  acl = "{}"\n}\n' >"$work/acl-canary/main.tf"
  acl_grep "$work/acl-canary" >/dev/null || { echo "the tailscale_acl grep misses a planted resource"; return 1; }
  if acl_grep --exclude-dir=.git --exclude-dir=.terraform "$root"; then
    echo "tailscale_acl found above: the tailnet policy belongs to netd policy apply, not Terraform"
    return 1
  fi
}
step "no tailscale_acl anywhere in the repository" check_no_acl

# The security group's rule set, statically: exactly one inbound rule
# resource, no aws_security_group_rule, no inline ingress/egress, nothing
# on port 22 and no all-protocol rule (the tests check the values).
check_sg_static() {
  local tf_files n
  mapfile -t tf_files < <(find "$here" -name '*.tf' -not -path '*/.terraform/*')
  n=$(cat "${tf_files[@]}" | grep -cE '^[[:space:]]*resource[[:space:]]+"aws_vpc_security_group_ingress_rule"')
  [ "$n" -eq 1 ] || { echo "want exactly 1 aws_vpc_security_group_ingress_rule, found $n"; return 1; }
  ! grep -nE 'resource[[:space:]]+"aws_security_group_rule"|^[[:space:]]*(ingress|egress)[[:space:]]*(\{|=)' "${tf_files[@]}" ||
    { echo "inline or legacy security group rules found"; return 1; }
  ! grep -nE '(from_port|to_port|port)[[:space:]]*=[[:space:]]*"?22"?([^0-9]|$)|ip_protocol[[:space:]]*=[[:space:]]*"-1"' "${tf_files[@]}" ||
    { echo "port 22 or an all-protocol rule found"; return 1; }
  grep -A8 -E 'resource[[:space:]]+"aws_vpc_security_group_ingress_rule"' "${tf_files[@]}" | grep -qE '(count|for_each)[[:space:]]*=' &&
    { echo "the ingress rule must be a single resource (no count/for_each)"; return 1; }
  return 0
}
step "security group: one inbound rule, no port 22 (static)" check_sg_static

# The user-data template is a bash script: render its placeholders with
# harmless values and run bash -n and shellcheck on it.
check_user_data() {
  sed -E 's/\$\{[a-z_]+\}/PLACEHOLDER/g' "$here/modules/control-plane/templates/user-data.sh.tftpl" >"$work/user-data.sh"
  bash -n "$work/user-data.sh" && "$SHELLCHECK" -s bash "$work/user-data.sh"
}
step "user data template: bash -n + shellcheck" check_user_data
step "shellcheck terraform/*.sh terraform/tools/*.sh" "$SHELLCHECK" -s bash -x "$here/check.sh" "$here"/tools/*.sh

# terraform validate + terraform test, each in its own data dir outside the
# repository. Every run block counts as one check.
run_tests() { # dir
  local dir=$1 out rc p f
  out=$work/test-$(basename "$dir").log
  (cd "$dir" && tf test) >"$out" 2>&1
  rc=$?
  p=$(grep -cE '^[[:space:]]+run "[^"]+"\.\.\. pass$' "$out")
  f=$(grep -cE '^[[:space:]]+run "[^"]+"\.\.\. (fail|skip|error)$' "$out")
  grep -E '^[[:space:]]+run "[^"]+"\.\.\. ' "$out" | sed -E "s#^[[:space:]]+run \"([^\"]+)\"\.\.\. (.*)#\2 \1#" |
    while read -r status name; do
      if [ "$status" = pass ]; then printf 'ok    test %s/%s\n' "${dir#"$here"/}" "$name"; else printf 'FAIL  test %s/%s (%s)\n' "${dir#"$here"/}" "$name" "$status"; fi
    done
  passed=$((passed + p))
  failed=$((failed + f))
  if { [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; } || [ $((p + f)) -eq 0 ]; then
    failed=$((failed + 1))
    echo "FAIL  terraform test in ${dir#"$here"/} (exit $rc, $p runs passed)"
  fi
  if [ "$rc" -ne 0 ]; then
    grep -v -E '^(│ )?$' "$out" | grep -v -E 'dev_overrides|development overrides|tfschema-|behavior may|applying changes|releases\.$' | sed 's/^/      /'
  fi
}

for dir in "$here/modules/control-plane" "$here/examples/ducksnest"; do
  rel=${dir#"$here"/}
  export TF_DATA_DIR=$work/data-${rel//\//-}
  step "terraform get $rel" env -C "$dir" "$TERRAFORM" get -no-color
  step "terraform validate $rel" env -C "$dir" "$TERRAFORM" validate -no-color
  run_tests "$dir"
  unset TF_DATA_DIR
done

# With mock_provider, Terraform must only ask our binaries for schemas and
# config validation; anything else (plan, apply, read, import) means a check
# reached for the real provider.
check_provider_calls() {
  [ -s "$SCHEMAPROVIDER_CALL_LOG" ] || { echo "the schema providers were never called"; return 1; }
  if ! grep -q '^aws GetProviderSchema' "$SCHEMAPROVIDER_CALL_LOG" || ! grep -q '^tailscale GetProviderSchema' "$SCHEMAPROVIDER_CALL_LOG"; then
    echo "a schema provider was not asked for its schema"
    return 1
  fi
  grep -q 'ValidateResourceConfig aws_instance' "$SCHEMAPROVIDER_CALL_LOG" || { echo "aws_instance was never validated by the provider"; return 1; }
  ! grep -vE ' (GetProviderSchema|GetMetadata|GetResourceIdentitySchemas|GetFunctions|ValidateProviderConfig|ValidateResourceConfig|ValidateDataResourceConfig|ValidateEphemeralResourceConfig|StopProvider) ' \
    "$SCHEMAPROVIDER_CALL_LOG" || { echo "calls above reached the schema-only providers"; return 1; }
}
step "mocked tests never called the providers' plan/apply/read" check_provider_calls

for dir in modules/control-plane examples/ducksnest; do
  step "tflint $dir" "$TFLINT" --config="$here/.tflint.hcl" --chdir="$here/$dir" --minimum-failure-severity=notice -f compact
done

check_actionlint() {
  ls "$root"/.github/workflows/*.yml >/dev/null 2>&1 || { echo "no workflows in .github/workflows"; return 1; }
  (cd "$root" && "$ACTIONLINT" -no-color -shellcheck="$SHELLCHECK")
}
step "actionlint .github/workflows (with shellcheck)" check_actionlint

summary
