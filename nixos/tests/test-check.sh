#!/usr/bin/env bash
# Tests that nixos/check.sh counts the checks of its sub-checks and exits
# non-zero on any failure: it runs `nixos/check.sh --only pki` with the
# PKI sub-check replaced by planted scripts (NIXOS_CHECK_PKI_CMD) and
# checks the exit status and the summary line. Prints one "ok - ..." or
# "not ok - ..." line per expectation and exits non-zero if any failed.
# nixos/check.sh runs it (section 16).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
check=$here/../check.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0

# expect NAME WANT-STATUS(zero|nonzero) WANT-SUMMARY SCRIPT
expect() {
  local name=$1 want=$2 summary=$3 body=$4 out rc
  printf '#!/usr/bin/env bash\n%s\n' "$body" >"$tmp/planted"
  chmod +x "$tmp/planted"
  out=$(NIXOS_CHECK_PKI_CMD=$tmp/planted "$check" --only pki 2>&1)
  rc=$?
  local got_status=zero
  [ "$rc" != 0 ] && got_status=nonzero
  if [ "$got_status" = "$want" ] && grep -qxF -- "$summary" <<<"$out"; then
    echo "ok - check.sh: $name (exit $rc, \"$summary\")"
  else
    echo "not ok - check.sh: $name (exit $rc, want $want and \"$summary\")"
    printf '%s\n' "$out" | sed 's/^/    /'
    failed=1
  fi
}

expect "a planted 'not ok' line fails the run" nonzero "nixos: 1 passed, 1 failed" \
  'echo "ok - pki: fine"; echo "not ok - pki: planted failure"; exit 0'
expect "a planted 'not ok' line with a failing exit counts both" nonzero "nixos: 1 passed, 2 failed" \
  'echo "ok - pki: fine"; echo "not ok - pki: planted failure"; exit 1'
expect "a sub-check that exits non-zero with only ok lines fails the run" nonzero "nixos: 2 passed, 1 failed" \
  'echo "ok - pki: a"; echo "ok - pki: b"; exit 3'
expect "a sub-check that reports nothing fails the run" nonzero "nixos: 0 passed, 1 failed" \
  'echo "openssl: not found" >&2; exit 0'
expect "a passing sub-check passes (the test is not vacuous)" zero "nixos: 2 passed, 0 failed" \
  'echo "ok - pki: a"; echo "ok - pki: b"'

exit $failed
