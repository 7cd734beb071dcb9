# TAP-style counting for nixos/check.sh (sourced). Every check ends in
# exactly one `ok` or `notok`, in the shell of the script itself (never in
# a pipeline's subshell, where the counts would be lost), and `finish`
# exits non-zero when any failed.

pass=0
fail=0

ok() {
  echo "ok - $1"
  pass=$((pass + 1))
}
notok() {
  echo "not ok - $1"
  fail=$((fail + 1))
  if [ -n "${2:-}" ]; then printf '%s\n' "$2" | head -n 25 | sed 's/^/    /'; fi
}
# run NAME CMD...: ok when CMD exits 0.
run() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then ok "$name"; else notok "$name" "$out"; fi
}
# count_tap < FILE: count the "ok - " / "not ok - " lines of a sub-check;
# returns how many it saw. Use a redirect, not a pipe.
count_tap() {
  local line n=0
  while IFS= read -r line; do
    case $line in
      "ok - "*) ok "${line#ok - }"; n=$((n + 1)) ;;
      "not ok - "*) notok "${line#not ok - }"; n=$((n + 1)) ;;
      *) [ -n "$line" ] && echo "    $line" ;;
    esac
  done
  tap_seen=$n
}
# subcheck NAME CMD...: run a sub-check that prints TAP lines and exits
# non-zero on failure; count its lines, and count its exit status and an
# empty report as failures too.
subcheck() {
  local name=$1 out rc
  shift
  out=$(mktemp)
  "$@" >"$out" 2>&1
  rc=$?
  count_tap <"$out"
  rm -f "$out"
  if [ "$rc" != 0 ]; then notok "$name exits 0 (exit status $rc)"; fi
  if [ "$tap_seen" = 0 ]; then notok "$name reports its checks (it printed no ok/not ok line)"; fi
}
finish() {
  echo "nixos: $pass passed, $fail failed"
  if [ "$fail" = 0 ] && [ "$pass" -gt 0 ]; then exit 0; fi
  exit 1
}
