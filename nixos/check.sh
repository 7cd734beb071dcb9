#!/usr/bin/env bash
# nixos/check.sh: every check of nixos/ that runs without nixpkgs and
# without network (here and in CI, as root on Debian). See nixos/README.md.
#
#   nixos/check.sh              run the checks
#   nixos/check.sh --update     rewrite the golden files, the vendorHash and
#                               netd/lab/nixos_units.json
#   nixos/check.sh --only pki   only the PKI sub-check (the script's own
#                               test runs it with a planted failure)
#
# The NixOS module system is nixpkgs' own: the real nixpkgs `lib`, found
# at $NIXPKGS_LIB, else <repo>/../shared/nixpkgs-lib, else
# /work/shared/nixpkgs-lib (a directory holding lib/, or lib/ itself).
#
# Prints "ok - ..." / "not ok - ..." per check and, last, the line
#   nixos: N passed, N failed
# Exits non-zero when any check failed.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
nixdir=$root/nixos
# nix needs a home for its caches (CI may run with a bare environment).
: "${HOME:=$(getent passwd "$(id -u)" | cut -d: -f6)}"
export HOME
update=0
only=""
while [ $# -gt 0 ]; do
  case $1 in
    --update) update=1 ;;
    --only) only=${2:?--only needs a section}; shift ;;
    *) echo "usage: nixos/check.sh [--update] [--only pki]" >&2; exit 2 ;;
  esac
  shift
done

# shellcheck source=tests/tap.sh
. "$nixdir/tests/tap.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
started=$SECONDS

# --- the cluster PKI (also alone: --only pki) ----------------------------------
# NIXOS_CHECK_PKI_CMD replaces the sub-check (the script's own test plants
# a failing one there).
pki_check() {
  subcheck "PKI sub-check" "${NIXOS_CHECK_PKI_CMD:-$nixdir/pki/test-mkpki.sh}"
}
if [ "$only" = pki ]; then
  pki_check
  finish
elif [ -n "$only" ]; then
  echo "nixos/check.sh: unknown section $only (pki)" >&2
  exit 2
fi

# --- tools -------------------------------------------------------------------
apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >"$tmp/apt.log" 2>&1 ||
    { apt-get update -q >>"$tmp/apt.log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >>"$tmp/apt.log" 2>&1; }
}
if ! command -v nix-instantiate >/dev/null 2>&1; then
  echo "installing Debian's nix-bin (once)"
  apt_install nix-bin || { notok "install nix-bin" "$(tail -5 "$tmp/apt.log")"; finish; }
fi
for t in systemd-analyze openssl go git python3; do
  command -v "$t" >/dev/null 2>&1 || notok "tool $t is installed"
done
export NIX_CONFIG="experimental-features = nix-command flakes"

# The real nixpkgs lib.
nixpkgs_lib=""
for d in ${NIXPKGS_LIB:+"$NIXPKGS_LIB"} "$root/../shared/nixpkgs-lib" /work/shared/nixpkgs-lib; do
  for l in "$d/lib" "$d"; do
    if [ -f "$l/default.nix" ] && [ -f "$l/modules.nix" ] && [ -f "$l/types.nix" ]; then
      nixpkgs_lib=$(cd "$l" && pwd)
      break 2
    fi
  done
done
if [ -z "$nixpkgs_lib" ]; then
  notok "the nixpkgs lib is found (set NIXPKGS_LIB to a copy of nixpkgs' lib, e.g. the nix-community/nixpkgs.lib mirror; looked in ${NIXPKGS_LIB:-\$NIXPKGS_LIB unset}, $root/../shared/nixpkgs-lib, /work/shared/nixpkgs-lib)"
  finish
fi
libversion=$(nix-instantiate --eval --raw -E "(import $nixpkgs_lib).version" 2>/dev/null || nix-instantiate --eval -E "(import $nixpkgs_lib).version" 2>&1)
echo "# $(nix --version), $(systemd-analyze --version | head -1), $(go version | cut -d' ' -f3), nixpkgs lib $libversion at $nixpkgs_lib"

# Evaluation with the store writable (paths such as the policy file are
# copied into it, as NixOS does).
eval_json() { nix-instantiate --read-write-mode --eval --strict --json "$@"; }
eval_raw() { nix-instantiate --read-write-mode --eval --strict "$@" | python3 -c 'import json,sys; sys.stdout.write(json.load(sys.stdin))'; }
libarg=(--arg nixpkgsLib "$nixpkgs_lib")
cases="$nixdir/tests/eval/cases.nix"
golden="$nixdir/tests/golden"
threshold=$(cat "$nixdir/tests/eval/security-threshold")
# outputs ROOT EXPR: EXPR over `o`, the flake's outputs of the tree at ROOT.
outputs() {
  eval_json -E "let o = import $nixdir/tests/eval/outputs.nix { nixpkgsLib = $nixpkgs_lib; root = $1; }; in $2"
}
names() { python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)))'; }

# --- 1. every .nix file parses -----------------------------------------------
while IFS= read -r f; do
  run "parses: ${f#"$root"/}" nix-instantiate --parse "$f"
done < <(find "$root" -name '*.nix' -not -path '*/.git/*' -not -path '*/node_modules/*' | sort)

# --- 2. the stand-ins for nixpkgs outside lib, listed --------------------------
if out=$(eval_json "$nixdir/tests/eval/standins.nix" "${libarg[@]}" 2>&1); then
  printf '%s' "$out" >"$tmp/standins.json"
  if python3 - "$tmp/standins.json" "$nixdir/tests/standin" >"$tmp/standins.txt" <<'EOF'; then
import json, sys
decls, d = json.load(open(sys.argv[1])), sys.argv[2]
total, bad = 0, []
for f in sorted(decls):
    first = open(f"{d}/{f}").readline()
    if not first.startswith("# nixpkgs: "):
        bad.append(f)
        continue
    opts = decls[f]
    total += len(opts)
    print(f"#   standin/{f} ({len(opts)}) mirrors {first[len('# nixpkgs: '):].strip()}")
    print(f"#     {', '.join(sorted(opts))}")
if bad or total == 0:
    sys.exit(f"stand-ins without a '# nixpkgs: <files>' first line: {bad}")
print(f"{total} {len(decls)}")
EOF
    read -r n nf < <(tail -1 "$tmp/standins.txt")
    head -n -1 "$tmp/standins.txt"
    ok "stand-ins: $n NixOS option declarations in $nf files, each naming the nixpkgs module it mirrors"
  else
    notok "stand-ins are listed" "$(cat "$tmp/standins.txt")"
  fi
else
  notok "stand-ins evaluate" "$out"
fi

# --- 3. the module: golden files ---------------------------------------------
norm() { python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin), indent=2, sort_keys=True))'; }
good_cases=$(eval_json -E "builtins.attrNames (import $nixdir/tests/eval/settings.nix).good" | names)
[ -n "$good_cases" ] || notok "module cases are listed (settings.nix)"
for c in $good_cases; do
  if ! out=$(eval_json "$cases" "${libarg[@]}" -A "good.$c" 2>&1); then
    notok "module evaluates: $c" "$out"
    continue
  fi
  printf '%s' "$out" | norm >"$tmp/$c.json" || { notok "module result is JSON: $c"; continue; }
  if [ "$update" = 1 ]; then
    cp "$tmp/$c.json" "$golden/$c.json"
    ok "golden updated: $c"
  elif d=$(diff -u "$golden/$c.json" "$tmp/$c.json" 2>&1); then
    ok "module evaluates and matches golden: $c"
  else
    notok "module evaluates and matches golden: $c (nixos/check.sh --update if intended)" "$d"
  fi
done

# --- 4. hardening requirements -------------------------------------------------
enabled_cases=$(eval_json "$cases" "${libarg[@]}" -A enabled | python3 -c 'import json,sys; print(" ".join(k for k,v in json.load(sys.stdin).items() if v))')
[ -n "$enabled_cases" ] || notok "enabled module cases are listed"
for c in $enabled_cases; do
  v=$(eval_json "$cases" "${libarg[@]}" -A "hardening.$c" 2>&1)
  if [ "$v" = "[]" ]; then ok "hardening requirements hold: $c"; else notok "hardening requirements hold: $c" "$v"; fi
done

# --- 5. wrong settings are rejected, with the right error ----------------------
eval_json -E "builtins.mapAttrs (_: c: c.error) (import $nixdir/tests/eval/settings.nix).bad" |
  python3 -c 'import json,sys; [print(k+"\t"+v) for k,v in json.load(sys.stdin).items()]' >"$tmp/bad.tsv"
[ -s "$tmp/bad.tsv" ] || notok "bad module cases are listed (settings.nix)"
while IFS=$'\t' read -r name want; do
  if out=$(eval_json "$cases" "${libarg[@]}" -A "bad.$name" 2>&1); then
    notok "rejected: $name (it evaluated)"
  elif grep -qF -- "$want" <<<"$out"; then
    ok "rejected with the right error: $name"
  else
    notok "rejected with the right error: $name (want: $want)" "$out"
  fi
done <"$tmp/bad.tsv"

# --- 6. mutation tests of the module -------------------------------------------
# A dropped hardening setting still evaluates, and both the hardening
# requirements and the golden file catch it.
mutate() { # NAME SED-EXPR
  local name=$1 expr=$2 m="$tmp/mut-$1.nix" v out
  sed -e "$expr" "$nixdir/modules/netd.nix" >"$m"
  if cmp -s "$m" "$nixdir/modules/netd.nix"; then notok "mutation $name applies (sed changed nothing)"; return; fi
  if ! out=$(eval_json "$cases" "${libarg[@]}" --arg module "$m" -A good.defaults 2>&1); then
    notok "mutation $name still evaluates" "$out"
    return
  fi
  v=$(eval_json "$cases" "${libarg[@]}" --arg module "$m" -A hardening.defaults 2>&1)
  printf '%s' "$out" | norm >"$m.json"
  if [ "$v" != "[]" ] && ! cmp -s "$m.json" "$golden/defaults.json"; then
    ok "mutation caught ($name): $(printf '%s' "$v" | head -c 120)"
  else
    notok "mutation caught ($name)" "violations: $v"
  fi
}
mutate no-nonewprivileges '/NoNewPrivileges = true;/d'
mutate no-protectsystem '/ProtectSystem = "strict";/d'
mutate protectsystem-full 's/ProtectSystem = "strict";/ProtectSystem = "full";/'
mutate cap-sys-admin 's/CapabilityBoundingSet = \[ "CAP_NET_ADMIN"/CapabilityBoundingSet = [ "CAP_SYS_ADMIN" "CAP_NET_ADMIN"/'
mutate no-syscallfilter '/SystemCallFilter = /d'
mutate af-packet 's/"AF_NETLINK" \];/"AF_NETLINK" "AF_PACKET" ];/'
mutate type-simple 's/Type = "notify";/Type = "simple";/'
mutate no-protecthome '/ProtectHome = true;/d'
mutate no-kernel-tunables '/ProtectKernelTunables = true;/d'
mutate no-watchdog '/WatchdogSec = /d'
mutate no-tailscaled-order 's/"network-online.target" "tailscaled.service" \];/"network-online.target" ];/g'
# A unit setting NixOS itself rejects (systemd-unit-options.nix' types)
# fails evaluation.
rejects() { # NAME SED-EXPR EXPECTED-REGEX (grep -E)
  local name=$1 expr=$2 want=$3 m="$tmp/rej-$1.nix" out
  sed -e "$expr" "$nixdir/modules/netd.nix" >"$m"
  if cmp -s "$m" "$nixdir/modules/netd.nix"; then notok "mutation $name applies (sed changed nothing)"; return; fi
  if out=$(eval_json "$cases" "${libarg[@]}" --arg module "$m" -A units.defaults 2>&1); then
    notok "mutation rejected by NixOS' unit types ($name): it evaluated"
  elif grep -qE -- "$want" <<<"$out"; then
    ok "mutation rejected by NixOS' unit types ($name)"
  else
    notok "mutation rejected by NixOS' unit types ($name; want: $want)" "$out"
  fi
}
rejects type-misspelt 's/Type = "notify";/Type = "notfiy";/' "Systemd Service field .Type' cannot have value .notfiy'"
rejects restart-misspelt 's/Restart = "always";/Restart = "allways";/' "Systemd Service field .Restart' cannot have value .allways'"
rejects unit-name-no-suffix 's/after = \[ "network-online.target" "tailscaled.service" \];/after = [ "network-online.target" "tailscaled" ];/' \
  'option .systemd\.services\.netd\.after\."\[definition [0-9]+-entry 2\]"'"'"' is not of type .string matching the pattern'
rejects misspelt-unit-option 's/reloadTriggers = /reloadTrigger = /' "The option .systemd\.services\.netd\.reloadTrigger' does not exist"

# --- 7. the real netd binary ---------------------------------------------------
netd_out="$tmp/netd"
mkdir -p "$netd_out/bin"
if out=$(cd "$root" && GOFLAGS=-buildvcs=false nice go build -o "$netd_out/bin/netd" ./netd 2>&1); then
  ok "netd builds (go build ./netd)"
  netd_real=1
else
  notok "netd builds (go build ./netd); verifying the units against /bin/true instead" "$out"
  ln -sf /bin/true "$netd_out/bin/netd"
  netd_real=0
fi
coreutils_out="$tmp/coreutils"
mkdir -p "$coreutils_out/bin"
ln -sf "$(type -P kill)" "$coreutils_out/bin/kill"
# The flags `netd run` accepts (the Flags: section of its -h output).
"$netd_out/bin/netd" run -h >"$tmp/run-help.txt" 2>&1
sed -En '/^Flags:/,$ s/^ +(-[a-zA-Z], )?--([a-z][a-z0-9-]*).*/\2/p' "$tmp/run-help.txt" | sort -u >"$tmp/run-flags.txt"
# flags_known NAME UNIT-FILE: every --flag of ExecStart is one `netd run` has.
flags_known() {
  local unknown
  if [ "$netd_real" != 1 ] || [ ! -s "$tmp/run-flags.txt" ]; then notok "flags of $1 checked against netd run -h (netd did not build)"; return; fi
  if ! unknown=$(python3 - "$2" "$tmp/run-flags.txt" 2>&1 <<'EOF'
import shlex, sys
unit, known = open(sys.argv[1]).read(), set(open(sys.argv[2]).read().split())
execs = [l for l in unit.splitlines() if l.startswith("ExecStart=")]
if len(execs) != 1:
    sys.exit(f"{len(execs)} ExecStart lines")
argv = shlex.split(execs[0][len("ExecStart="):])
if len(argv) < 2 or argv[1] != "run":
    sys.exit(f"ExecStart is not netd run: {argv}")
print(" ".join(a for a in (x.lstrip("-").split("=")[0] for x in argv[2:]) if a not in known))
EOF
  ); then
    notok "every flag of ExecStart is one of netd run -h: $1 (ExecStart not found)" "$unknown"
  elif [ -z "$unknown" ]; then ok "every flag of ExecStart is one of netd run -h: $1"; else notok "every flag of ExecStart is one of netd run -h: $1 (unknown: $unknown)"; fi
}

# --- 8. systemd-analyze verify and security ------------------------------------
# concrete UNIT OUT: the normalized unit with @netd@ and @coreutils@ mapped
# to the real binary and kill (the other store paths stay placeholders).
concrete() { sed -e "s#@netd@#$netd_out#g" -e "s#@coreutils@#$coreutils_out#g" "$1" >"$2"; }
analyze() { # NAME NORMALIZED-UNIT
  local name=$1 d="$tmp/units/$1" out rc score
  mkdir -p "$d"
  concrete "$2" "$d/netd.service"
  out=$(cd "$d" && systemd-analyze verify ./netd.service 2>&1)
  rc=$?
  if [ $rc = 0 ] && [ -z "$out" ]; then ok "systemd-analyze verify, no output: $name"; else notok "systemd-analyze verify, no output: $name (rc $rc)" "$out"; fi
  score=$(systemd-analyze security --offline=yes "$d/netd.service" 2>&1 | sed -n 's/.*Overall exposure level for netd.service: \([0-9.]*\).*/\1/p')
  if out=$(systemd-analyze security --offline=yes --threshold="$threshold" "$d/netd.service" 2>&1); then
    ok "systemd-analyze security: $name exposure $score <= threshold $threshold/10"
  else
    notok "systemd-analyze security: $name exposure $score <= threshold $threshold/10" "$(grep '✗' <<<"$out")"
  fi
}
for c in $enabled_cases; do
  if eval_raw "$cases" "${libarg[@]}" -A "units.$c" >"$tmp/unit-$c" 2>"$tmp/unit-$c.err"; then
    analyze "case $c" "$tmp/unit-$c"
    flags_known "case $c" "$tmp/unit-$c"
  else
    notok "unit renders: $c" "$(cat "$tmp/unit-$c.err")"
  fi
done
# The flag check is not vacuous: a misspelt flag in the module is caught.
m="$tmp/mut-flag.nix"
sed -e 's/"--bfd-multiplier=/"--bfd-multiplyer=/' "$nixdir/modules/netd.nix" >"$m"
if ! cmp -s "$m" "$nixdir/modules/netd.nix" &&
  eval_raw "$cases" "${libarg[@]}" --arg module "$m" -A units.defaults >"$tmp/unit-flag" 2>/dev/null &&
  out=$(flags_known "mutated" "$tmp/unit-flag") && grep -q '^not ok.*unknown: bfd-multiplyer' <<<"$out"; then
  ok "a flag netd does not know (--bfd-multiplyer) is caught"
else
  notok "a flag netd does not know (--bfd-multiplyer) is caught" "${out:-}"
fi
# The threshold is tight enough to matter: dropping the filesystem and
# kernel protections pushes the unit over it.
m="$tmp/mut-weak.nix"
sed -e '/ProtectSystem = /d' -e '/ProtectHome = /d' -e '/ProtectKernelTunables = /d' -e '/PrivateDevices = /d' \
  "$nixdir/modules/netd.nix" >"$m"
mkdir -p "$tmp/units/weak"
if eval_raw "$cases" "${libarg[@]}" --arg module "$m" -A units.defaults >"$tmp/unit-weak" 2>/dev/null &&
  concrete "$tmp/unit-weak" "$tmp/units/weak/netd.service" &&
  ! systemd-analyze security --offline=yes --threshold="$threshold" "$tmp/units/weak/netd.service" >/dev/null 2>&1; then
  ok "systemd-analyze security fails a weakened unit (threshold $threshold is not vacuous)"
else
  notok "systemd-analyze security fails a weakened unit"
fi

# --- 9. the flake, through the flake machinery -----------------------------------
# Flakes in a git tree see only tracked files; copy what git would track
# (tracked + untracked-but-not-ignored) so uncommitted work is checked too,
# and never the ignored PKI output. nixpkgs is the stand-in flake
# (nixos/tests/standin/flake.nix) with the real lib copied next to it.
src="$tmp/src"
mkdir -p "$src" "$tmp/nixpkgs"
(cd "$root" && { git ls-files -z; git ls-files -z --others --exclude-standard; } |
  sort -zu | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' | tar --null -cf - -T -) | tar -xf - -C "$src"
cp -r "$nixdir/tests/standin/." "$tmp/nixpkgs/"
cp -r "$nixpkgs_lib" "$tmp/nixpkgs/lib"
flake=(--override-input nixpkgs "path:$tmp/nixpkgs" --no-write-lock-file)
if out=$(nix flake show --json "${flake[@]}" "path:$src" 2>"$tmp/show.err"); then
  ok "nix flake show (nixpkgs = stand-in)"
  printf '%s' "$out" >"$tmp/show.json"
  run "flake has every output" python3 - "$tmp/show.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
want = [
    ("packages", "x86_64-linux", "netd"), ("packages", "x86_64-linux", "default"),
    ("nixosModules", "netd"), ("overlays", "default"),
    ("nixosConfigurations", "firebat"), ("nixosConfigurations", "ultra"),
    ("nixosConfigurations", "old"), ("nixosConfigurations", "control-plane"),
    ("checks", "x86_64-linux", "vm-netd"), ("checks", "x86_64-linux", "module-eval"),
    ("checks", "x86_64-linux", "netd"), ("checks", "x86_64-linux", "host-old"),
    ("devShells", "x86_64-linux", "default"),
]
missing = []
for path in want:
    d = s
    for p in path:
        if not isinstance(d, dict) or p not in d:
            missing.append("/".join(path)); break
        d = d[p]
if missing:
    sys.exit("missing outputs: " + ", ".join(missing))
EOF
else
  notok "nix flake show (nixpkgs = stand-in)" "$(cat "$tmp/show.err")"
fi
fe() { nix eval "${flake[@]}" "$@" 2>"$tmp/fe.err"; }
if v=$(fe --raw "path:$src#packages.x86_64-linux.netd.version"); then
  case $v in 0.1.0+*) ok "package version from git: $v" ;; *) notok "package version from git ($v)" ;; esac
else notok "package evaluates" "$(cat "$tmp/fe.err")"; fi
if v=$(fe --json "path:$src#packages.x86_64-linux.netd.subPackages"); then
  [ "$v" = '["netd"]' ] && ok "package builds subPackages [netd]" || notok "package builds subPackages [netd] ($v)"
else notok "package subPackages" "$(cat "$tmp/fe.err")"; fi

# --- 10. the hosts ---------------------------------------------------------------
hosts=$(outputs "$root" 'builtins.attrNames o.nixosConfigurations' | names)
[ -n "$hosts" ] || notok "host configurations are listed"
for h in $hosts; do
  # Every option a module defines, with its type, and the assertions.
  if out=$(outputs "$root" "o.nixosConfigurations.\"$h\".config.system.build.toplevel.drvPath" 2>&1); then
    ok "$h: the configuration evaluates strictly (every defined option, assertions)"
  else
    notok "$h: the configuration evaluates strictly (every defined option, assertions)" "$out"
  fi
  if outputs "$root" "(import $nixdir/tests/eval/common.nix { nixpkgsLib = $nixpkgs_lib; }).unitText o.nixosConfigurations.\"$h\".config \"netd\"" 2>"$tmp/h.err" |
    python3 -c 'import json,sys; sys.stdout.write(json.load(sys.stdin))' >"$tmp/unit-host-$h"; then
    analyze "host $h" "$tmp/unit-host-$h"
    flags_known "host $h" "$tmp/unit-host-$h"
  else
    notok "$h: netd unit renders" "$(cat "$tmp/h.err")"
  fi
done
# Assertions per host (nixos/tests/eval/hosts.nix).
if out=$(outputs "$root" "import $nixdir/tests/eval/hosts.nix o.nixosConfigurations" 2>&1); then
  printf '%s' "$out" | python3 -c 'import json,sys; [print(l) for h in json.load(sys.stdin).values() for l in h]' >"$tmp/hosts.tap"
  count_tap <"$tmp/hosts.tap"
  [ "$tap_seen" -gt 0 ] || notok "host assertions report their checks"
else
  notok "host assertions evaluate" "$out"
fi

# --- 11. the VM test's nodes ---------------------------------------------------------
vm=o.checks.x86_64-linux.vm-netd
if v=$(outputs "$root" "builtins.mapAttrs (n: c: builtins.seq c.system.build.toplevel.drvPath (if n == \"headscale\" then c.services.headscale.enable else c.services.netd.enable && (import $nixdir/tests/eval/hardening.nix c.systemd.services.netd) == [])) $vm.nodes" 2>&1); then
  [ "$v" = '{"headscale":true,"n1":true,"n2":true,"n3":true}' ] &&
    ok "VM test nodes evaluate strictly (headscale, n1-n3 with hardened netd)" || notok "VM test nodes evaluate" "$v"
else notok "VM test nodes evaluate strictly" "$v"; fi
if outputs "$root" "$vm.testScript" 2>"$tmp/ts.err" | python3 -c 'import json,sys; sys.stdout.write(json.load(sys.stdin))' >"$tmp/testscript.py"; then
  run "VM test script is valid Python" python3 -c 'import ast,sys; ast.parse(open(sys.argv[1]).read())' "$tmp/testscript.py"
  # The VM test and the systemd lab (e2e/systemd_test.go through
  # tests/labdriver.py) run one scenario: the script execs the store copy
  # of tests/netd_scenario.py and calls its run_scenario.
  run "the VM test and the systemd lab run the same scenario (tests/netd_scenario.py)" python3 - "$tmp/testscript.py" "$nixdir/tests" <<'PY'
import ast, re, sys
script, tests = open(sys.argv[1]).read(), sys.argv[2]
m = re.search(r'exec\(open\("(/nix/store/[^"]+-netd_scenario\.py)"\)\.read\(\)\)', script)
assert m, "the VM test script does not exec netd_scenario.py"
assert open(m.group(1)).read() == open(f"{tests}/netd_scenario.py").read(), "its store copy differs from tests/netd_scenario.py"
assert "run_scenario(" in script, "the VM test script does not call run_scenario"
for f in ("netd_scenario.py", "labdriver.py"):
    ast.parse(open(f"{tests}/{f}").read())
assert '"netd_scenario.py"' in open(f"{tests}/labdriver.py").read(), "labdriver.py does not load netd_scenario.py"
PY
else notok "VM test script evaluates" "$(cat "$tmp/ts.err")"; fi

# --- 12. mutation tests of the hosts: strict evaluation ------------------------------
# Each edits one file of a copy of the tree; the configuration must then
# fail to evaluate with the error NixOS would give.
mroot="$tmp/mroot"
mkdir -p "$mroot"
mkdir -p "$mroot/deploy" && cp -r "$root/flake.nix" "$nixdir" "$root/examples" "$mroot/" && cp -r "$root/deploy/rbac" "$root/deploy/monitoring" "$mroot/deploy/"
host_mutation() { # NAME FILE SED-EXPR TARGET EXPECTED-REGEX (grep -E)
  local name=$1 file=$2 expr=$3 target=$4 want=$5 m="$tmp/hmut-$1" out
  rm -rf "$m" && cp -r "$mroot" "$m"
  sed -i -e "$expr" "$m/$file"
  if cmp -s "$m/$file" "$root/$file"; then notok "host mutation $name applies (sed changed nothing)"; return; fi
  if out=$(outputs "$m" "$target" 2>&1); then
    notok "host mutation caught ($name): it evaluated"
  elif grep -qE -- "$want" <<<"$out"; then
    ok "host mutation caught ($name): $(grep -oE -- "$want" <<<"$out" | head -1)"
  else
    notok "host mutation caught ($name; want: $want)" "$out"
  fi
}
top() { echo "o.nixosConfigurations.$1.config.system.build.toplevel.drvPath"; }
vmtop=("builtins.mapAttrs (n: c: c.system.build.toplevel.drvPath) o.checks.x86_64-linux.vm-netd.nodes")
host_mutation misspelt-kubernetes-option nixos/profiles/kubernetes.nix 's/clusterCidr = lab.podCidr;/clusterCIDR = lab.podCidr;/' "$(top firebat)" \
  "The option .services\.kubernetes\.clusterCIDR' does not exist"
host_mutation misspelt-kubelet-option nixos/profiles/kubernetes.nix 's/nodeIp = node.overlayAddress;/nodeIP = node.overlayAddress;/' "$(top ultra)" \
  "The option .services\.kubernetes\.kubelet\.nodeIP' does not exist"
host_mutation misspelt-systemd-option nixos/hosts/old.nix 's/^  networking.hostName = "old";/  networking.hostName = "old";\n  systemd.services.netd.restartIfChange = false;/' "$(top old)" \
  "The option .systemd\.services\.netd\.restartIfChange' does not exist"
host_mutation misspelt-systemd-option-vm nixos/tests/vm-netd.nix 's/systemd.services.netd.wantedBy = /systemd.services.netd.wantedby = /' "${vmtop[0]}" \
  "The option .systemd\.services\.netd\.wantedby' does not exist"
host_mutation misspelt-firewall-option nixos/profiles/common.nix 's/checkReversePath = "loose";/checkReversePaths = "loose";/' "$(top firebat)" \
  "The option .networking\.firewall\.checkReversePaths' does not exist"
host_mutation misspelt-netd-option nixos/profiles/netd.nix 's/openFirewall = true;/openFirewal = true;/' "$(top control-plane)" \
  "The option .services\.netd\.openFirewal' does not exist"
host_mutation tailscale-enum nixos/profiles/tailscale.nix 's/useRoutingFeatures = "both";/useRoutingFeatures = "all";/' "$(top firebat)" \
  "option .services\.tailscale\.useRoutingFeatures' is not of type .one of \"none\", \"client\", \"server\", \"both\"'"
host_mutation tailscale-relative-keyfile nixos/profiles/tailscale.nix 's#authKeyFile = "/var/lib/#authKeyFile = "var/lib/#' "$(top old)" \
  "option .services\.tailscale\.authKeyFile' is not of type .null or absolute path'"
host_mutation firewall-port-string nixos/profiles/netd.nix 's/allowedTCPPorts = \[ 9180 \];/allowedTCPPorts = [ "9180" ];/' "$(top ultra)" \
  'option .networking\.firewall\.interfaces\.tailscale0\.allowedTCPPorts\."\[definition [0-9]+-entry 1\]"'"'"' is not of type .16 bit unsigned integer'
host_mutation kubelet-taint-effect nixos/profiles/k8s-control-plane.nix 's/effect = "NoSchedule";/effect = "NoSchedul";/' "$(top control-plane)" \
  "option .services\.kubernetes\.kubelet\.taints\.control-plane\.effect' is not of type"
host_mutation kubelet-clusterdns-string nixos/profiles/kubernetes.nix 's/clusterDns = \[ lab.clusterDnsIP \];/clusterDns = lab.clusterDnsIP;/' "$(top firebat)" \
  "option .services\.kubernetes\.kubelet\.clusterDns' is not of type .list of string'"
host_mutation sysctl-defined-twice nixos/profiles/common.nix 's/"net.ipv4.ip_forward" = lib.mkDefault 1;/"net.ipv4.ip_forward" = 1;/' "$(top firebat)" \
  'option .boot\.kernel\.sysctl\."net\.ipv4\.ip_forward"'"'"' is defined multiple times'
host_mutation vm-node-overlay nixos/tests/vm-netd.nix 's#imports = \[ ../modules/netd.nix \];#imports = [ self.nixosModules.netd ];#' "${vmtop[0]}" \
  "nixpkgs\.overlays is set to read-only"
# The mirrored role logic matters: without `easyCerts = false` nixpkgs'
# kubernetes module turns easyCerts on, and the host check sees it.
m="$tmp/hmut-easycerts"
rm -rf "$m" && cp -r "$mroot" "$m"
sed -i '/easyCerts = false;/d' "$m/nixos/profiles/kubernetes.nix"
if out=$(outputs "$m" "import $nixdir/tests/eval/hosts.nix o.nixosConfigurations" 2>&1) &&
  grep -qF 'not ok - firebat: cluster PKI from the offline CA (no easyCerts)' <<<"$out"; then
  ok "host mutation caught (easycerts-default): nixpkgs' kubernetes roles turn easyCerts on"
else
  notok "host mutation caught (easycerts-default)" "$out"
fi

# --- 13. the lab runs what the module deploys --------------------------------------
# Each lab node's netd unit, as NixOS renders it for that node's host with
# the lab's differences (nixos/lab-nodes.nix), written to
# netd/lab/nixos_units.json, which netd/lab embeds and runs (argv = the
# unit's ExecStart). The committed file must be current.
labunits="$root/netd/lab/nixos_units.json"
if out=$(eval_json "$nixdir/tests/eval/lab.nix" "${libarg[@]}" 2>&1); then
  printf '%s' "$out" >"$tmp/lab-units.json"
  if python3 "$nixdir/tests/lab-units.py" "$tmp/lab-units.json" "$tmp/nixos_units.json" >"$tmp/lab-gen.err" 2>&1; then
    if [ "$update" = 1 ]; then
      cp "$tmp/nixos_units.json" "$labunits"
      ok "netd/lab/nixos_units.json updated"
    elif d=$(diff -u "$labunits" "$tmp/nixos_units.json" 2>&1); then
      ok "netd/lab/nixos_units.json is current: the lab runs the units NixOS renders for its nodes"
    else
      notok "netd/lab/nixos_units.json is current (nixos/check.sh --update)" "$d"
    fi
    # The file follows the module: a changed ExecStart makes it stale.
    m="$tmp/hmut-labstale"
    rm -rf "$m" && cp -r "$mroot" "$m"
    sed -i 's/"--log-level=${cfg.logLevel}"/"--log-level=${cfg.logLevel}" "--resync=1m"/' "$m/nixos/modules/netd.nix"
    if eval_json "$nixdir/tests/eval/lab.nix" "${libarg[@]}" --arg root "$m" >"$tmp/lab-units-mut.json" 2>/dev/null &&
      python3 "$nixdir/tests/lab-units.py" "$tmp/lab-units-mut.json" "$tmp/nixos_units-mut.json" &&
      ! cmp -s "$tmp/nixos_units-mut.json" "$tmp/nixos_units.json" && grep -q -- '"--resync=1m"' "$tmp/nixos_units-mut.json"; then
      ok "a change to the module's ExecStart makes netd/lab/nixos_units.json stale"
    else
      notok "a change to the module's ExecStart makes netd/lab/nixos_units.json stale"
    fi
    # A lab node whose unit passes the kubeconfig in Environment= (which the
    # lab, without systemd, would not apply) is refused.
    m="$tmp/hmut-labenv"
    rm -rf "$m" && cp -r "$mroot" "$m"
    sed -i '/services.netd.kubeconfig = lib.mkForce null;/d' "$m/nixos/lab-nodes.nix"
    if eval_json "$nixdir/tests/eval/lab.nix" "${libarg[@]}" --arg root "$m" >"$tmp/lab-units-env.json" 2>/dev/null &&
      ! out=$(python3 "$nixdir/tests/lab-units.py" "$tmp/lab-units-env.json" "$tmp/nixos_units-env.json" 2>&1) &&
      grep -q 'Environment=KUBECONFIG would not reach' <<<"$out"; then
      ok "a lab unit with an Environment= the lab would not apply (KUBECONFIG) is refused"
    else
      notok "a lab unit with an Environment= the lab would not apply (KUBECONFIG) is refused" "${out:-}"
    fi
    # Every lab unit: its flags are the ones netd run takes.
    # (Node names are read line by line: the template's name is "*".)
    i=0
    while IFS=$'\t' read -r o n; do
      i=$((i + 1))
      python3 -c 'import json,sys; sys.stdout.write(json.load(open(sys.argv[1]))["nodes"][sys.argv[2]][sys.argv[3]]["unit"])' \
        "$tmp/nixos_units.json" "$o" "$n" >"$tmp/unit-lab-$i"
      flags_known "lab $o $n" "$tmp/unit-lab-$i"
    done < <(python3 -c 'import json,sys; [print(o + "\t" + n) for o, ns in json.load(open(sys.argv[1]))["nodes"].items() for n in ns]' "$tmp/nixos_units.json")
  else
    notok "lab units are usable by netd/lab" "$(cat "$tmp/lab-gen.err")"
  fi
else
  notok "lab nodes evaluate (nixos/lab-nodes.nix)" "$out"
fi

# --- 14. lab.nix agrees with the compiled policy; the VM test policy is valid ---
# The policy compiler is the authority (`netd policy render --state`, the
# desired state every reconciler uses): lab.nix must carry the same node
# names, roles, sites, addresses, BGP port, BFD and pod MTU.
if [ "$netd_real" = 1 ] && "$netd_out/bin/netd" policy render "$root/examples/ducksnest/policy.yaml" --state >"$tmp/state.json" 2>"$tmp/render.err"; then
  run "nixos/lab.nix agrees with the compiled examples/ducksnest/policy.yaml" python3 - "$root" "$tmp/state.json" <<'PY'
import json, subprocess, sys
root, state = sys.argv[1], json.load(open(sys.argv[2]))
lab = json.loads(subprocess.check_output(
    ["nix-instantiate", "--eval", "--strict", "--json", "-E",
     f"removeAttrs (import {root}/nixos/lab.nix) [\"policyFile\"]"]))
errs = []
def eq(what, a, b):
    if a != b: errs.append(f"{what}: lab.nix {a!r} != compiled policy {b!r}")
eq("pods", lab["podCidr"], state["networks"]["pods"])
eq("services", lab["serviceCidr"], state["networks"]["services"])
eq("overlay interface", lab["overlayInterface"], state["overlay"]["interface"])
eq("pod MTU (Calico vethMTU / CNI mtu)", lab["podMtu"], state["podMTU"])
nodes = {n["name"]: n for n in state["nodes"]}
eq("node names", sorted(lab["nodes"]), sorted(nodes))
for name, n in lab["nodes"].items():
    pn = nodes.get(name, {})
    eq(f"{name} role", n["role"], pn.get("role"))
    eq(f"{name} site", n["site"], pn.get("site"))
    eq(f"{name} overlayAddress", n["overlayAddress"], pn.get("overlayAddr"))
    eq(f"{name} lanAddress", n.get("lanAddress"), pn.get("lanAddr"))
    eq(f"{name} BGP port", lab["bgpPort"], pn.get("bgp", {}).get("listenPort"))
    eq(f"{name} BFD (services.netd.bfd.enable vs spec.bgp.bfd.enabled)", lab["bfd"], pn.get("bgp", {}).get("bfd"))
eq("control plane", [lab["controlPlane"]], [n for n, v in nodes.items() if v["role"] == "control-plane"])
if errs: sys.exit("\n".join(errs))
PY
else
  notok "nixos/lab.nix agrees with the compiled policy (netd policy render --state)" "$(cat "$tmp/render.err" 2>/dev/null || echo 'netd did not build')"
fi
# The PKI defaults (mkpki.sh) are the policy's too.
run "nixos/pki/mkpki.sh defaults agree with lab.nix" python3 - "$root" <<'EOF'
import json, re, subprocess, sys
root = sys.argv[1]
lab = json.loads(subprocess.check_output(["nix-instantiate", "--eval", "--strict", "--json", "-E",
    f"removeAttrs (import {root}/nixos/lab.nix) [\"policyFile\"]"]))
sh = open(f"{root}/nixos/pki/mkpki.sh").read()
nodes = re.search(r'NODES=\$\{NODES:-"([^"]*)"\}', sh).group(1)
got = dict(x.split("=") for x in nodes.split())
want = {n: v["overlayAddress"] for n, v in lab["nodes"].items()}
if got != want: sys.exit(f"mkpki NODES {got} != lab {want}")
if f'API_SERVICE_IP:-{lab["apiServiceIP"]}' not in sh: sys.exit("API_SERVICE_IP default differs")
if f'CONTROL_PLANE:-{lab["controlPlane"]}' not in sh: sys.exit("CONTROL_PLANE default differs")
EOF
if [ "$netd_real" = 1 ]; then
  sed -e 's/@N1_OVERLAY@/100.64.0.1/; s/@N2_OVERLAY@/100.64.0.2/; s/@N3_OVERLAY@/100.64.0.3/' \
    -e 's/@N1_LAN@/192.168.1.2/; s/@N2_LAN@/192.168.1.3/' "$nixdir/tests/vm-policy.yaml.in" >"$tmp/vm-policy.yaml"
  sed 's#@N2_BLOCK@#10.244.2.0/24#' "$tmp/vm-policy.yaml" >"$tmp/vm-policy-a.yaml"
  sed 's#@N2_BLOCK@#10.244.20.0/24#' "$tmp/vm-policy.yaml" >"$tmp/vm-policy-b.yaml"
  run "VM test policy is valid (netd policy check)" "$netd_out/bin/netd" policy check "$tmp/vm-policy-a.yaml"
  run "VM test changed policy is valid (netd policy check)" "$netd_out/bin/netd" policy check "$tmp/vm-policy-b.yaml"
else
  notok "VM test policies checked with netd policy check (netd did not build)"
fi

# --- 15. vendorHash is current ------------------------------------------------
if out=$(cd "$root" && GOFLAGS=-mod=mod go mod vendor -o "$tmp/vendor" 2>&1) &&
  h=$(nix hash path "$tmp/vendor" 2>&1); then
  cur=$(sed -n 's/^ *vendorHash = "\(.*\)";/\1/p' "$nixdir/package.nix")
  if [ "$update" = 1 ] && [ "$cur" != "$h" ]; then
    sed -i "s|vendorHash = \"$cur\";|vendorHash = \"$h\";|" "$nixdir/package.nix"
    ok "vendorHash updated to $h"
  elif [ "$cur" = "$h" ]; then
    ok "vendorHash is current ($h)"
  else
    notok "vendorHash is current (package.nix has $cur, go mod vendor gives $h; nixos/check.sh --update)"
  fi
else
  notok "go mod vendor + nix hash path" "$out"
fi

# --- 16. the cluster PKI --------------------------------------------------------
pki_check

# --- 17. this script counts every failure ---------------------------------------
# Runs itself on the PKI section with planted sub-checks: a "not ok" line,
# a non-zero exit with only "ok" lines, and silence must each make it exit
# non-zero and report a failure; a passing sub-check must not.
subcheck "check.sh self-test" "$nixdir/tests/test-check.sh"

echo "# took $((SECONDS - started))s"
finish
