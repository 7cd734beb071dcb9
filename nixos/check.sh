#!/usr/bin/env bash
# nixos/check.sh: every check of nixos/ that can run without nixpkgs and
# without network (here and in CI, as root on Debian). See nixos/README.md.
#
#   nixos/check.sh            run the checks
#   nixos/check.sh --update   rewrite the golden files and the vendorHash
#
# Prints "ok - ..." / "not ok - ..." per check and, last, the line
#   nixos: N passed, N failed
# Exits non-zero when any check failed.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# nix needs a home for its caches (CI may run with a bare environment).
: "${HOME:=$(getent passwd "$(id -u)" | cut -d: -f6)}"
export HOME
nixdir=$root/nixos
update=0
[ "${1:-}" = "--update" ] && update=1

pass=0
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ok() { echo "ok - $1"; pass=$((pass + 1)); }
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
# count_tap NAME-PREFIX < lines: count "ok - " / "not ok - " lines of a sub-check.
count_tap() {
  local line
  while IFS= read -r line; do
    case $line in
      "ok - "*) ok "${line#ok - }" ;;
      "not ok - "*) notok "${line#not ok - }" ;;
      *) [ -n "$line" ] && echo "    $line" ;;
    esac
  done
}
finish() {
  echo "nixos: $pass passed, $fail failed"
  [ "$fail" = 0 ]
  exit $?
}

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
nixv=$(nix --version)
echo "# $nixv, $(systemd-analyze --version | head -1), $(go version | cut -d' ' -f3)"

eval_json() { nix-instantiate --eval --strict --json "$@"; }
cases="$nixdir/tests/eval/cases.nix"
golden="$nixdir/tests/golden"
threshold=$(cat "$nixdir/tests/eval/security-threshold")

# --- 1. every .nix file parses -----------------------------------------------
while IFS= read -r f; do
  run "parses: ${f#"$root"/}" nix-instantiate --parse "$f"
done < <(find "$root" -name '*.nix' -not -path '*/.git/*' -not -path '*/node_modules/*' | sort)

# --- 2. the module against the stub: golden units ------------------------------
norm() { python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin), indent=2, sort_keys=True))'; }
good_cases=$(eval_json -E "builtins.attrNames (import $nixdir/tests/eval/settings.nix).good" | python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)))')
for c in $good_cases; do
  if ! out=$(eval_json "$cases" -A "$c.result" 2>&1); then
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

# --- 3. hardening requirements -------------------------------------------------
enabled_cases=""
for c in $good_cases; do
  [ "$(eval_json "$cases" -A "$c.result.settings.enable" 2>/dev/null)" = true ] && enabled_cases+=" $c"
done
for c in $enabled_cases; do
  v=$(eval_json "$cases" -A "$c.hardeningViolations" 2>&1)
  if [ "$v" = "[]" ]; then ok "hardening requirements hold: $c"; else notok "hardening requirements hold: $c" "$v"; fi
done

# --- 4. wrong settings are rejected, with the right error ----------------------
eval_json -E "builtins.mapAttrs (_: c: c.error) (import $nixdir/tests/eval/settings.nix).bad" |
  python3 -c 'import json,sys; [print(k+"\t"+v) for k,v in json.load(sys.stdin).items()]' >"$tmp/bad.tsv"
while IFS=$'\t' read -r name want; do
  if out=$(eval_json "$cases" -A "bad.$name.result" 2>&1); then
    notok "rejected: $name (it evaluated)"
  elif grep -qF -- "$want" <<<"$out"; then
    ok "rejected with the right error: $name"
  else
    notok "rejected with the right error: $name (want: $want)" "$out"
  fi
done <"$tmp/bad.tsv"

# --- 5. a dropped hardening setting fails the checks (mutation tests) ----------
# Each mutation edits a copy of the module; the copy must still evaluate,
# and both the hardening requirements and the golden file must catch it.
mutate() { # NAME SED-EXPR
  local name=$1 expr=$2 m="$tmp/mut-$1.nix" v out
  sed -e "$expr" "$nixdir/modules/netd.nix" >"$m"
  if cmp -s "$m" "$nixdir/modules/netd.nix"; then notok "mutation $name applies (sed changed nothing)"; return; fi
  if ! out=$(eval_json "$cases" --arg module "$m" -A defaults.result 2>&1); then
    notok "mutation $name still evaluates" "$out"
    return
  fi
  v=$(eval_json "$cases" --arg module "$m" -A defaults.hardeningViolations 2>&1)
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

# --- 6. the real netd binary, for systemd-analyze -------------------------------
netd_out="$tmp/netd"
mkdir -p "$netd_out/bin"
if out=$(cd "$root" && GOFLAGS=-buildvcs=false nice go build -o "$netd_out/bin/netd" ./netd 2>&1); then
  ok "netd builds (go build ./netd)"
else
  notok "netd builds (go build ./netd); verifying the units against /bin/true instead" "$out"
  ln -sf /bin/true "$netd_out/bin/netd"
fi
coreutils_out="$tmp/coreutils"
mkdir -p "$coreutils_out/bin"
ln -sf "$(type -P kill)" "$coreutils_out/bin/kill"

# --- 7. systemd-analyze verify and security ------------------------------------
render() { # CASE DEST [MODULE]
  nix eval --raw -f "$cases" --argstr netdOut "$netd_out" --argstr coreutilsOut "$coreutils_out" \
    ${3:+--arg module "$3"} "$1.unitText" >"$2"
}
for c in $enabled_cases; do
  mkdir -p "$tmp/units/$c"
  u="$tmp/units/$c/netd.service"
  if ! out=$(render "$c" "$u" 2>&1); then notok "unit renders: $c" "$out"; continue; fi
  out=$(cd "$tmp/units/$c" && systemd-analyze verify ./netd.service 2>&1)
  rc=$?
  if [ $rc = 0 ] && [ -z "$out" ]; then ok "systemd-analyze verify, no output: $c"; else notok "systemd-analyze verify, no output: $c (rc $rc)" "$out"; fi
  score=$(systemd-analyze security --offline=yes "$u" 2>&1 | sed -n 's/.*Overall exposure level for netd.service: \([0-9.]*\).*/\1/p')
  if out=$(systemd-analyze security --offline=yes --threshold="$threshold" "$u" 2>&1); then
    ok "systemd-analyze security: $c exposure $score <= threshold $threshold/10"
  else
    notok "systemd-analyze security: $c exposure $score <= threshold $threshold/10" "$(grep '✗' <<<"$out")"
  fi
done
# The threshold is tight enough to matter: dropping the filesystem and
# kernel protections pushes the unit over it.
m="$tmp/mut-weak.nix"
sed -e '/ProtectSystem = /d' -e '/ProtectHome = /d' -e '/ProtectKernelTunables = /d' -e '/PrivateDevices = /d' \
  "$nixdir/modules/netd.nix" >"$m"
mkdir -p "$tmp/units/weak"
if render defaults "$tmp/units/weak/netd.service" "$m" >/dev/null 2>&1 &&
  ! systemd-analyze security --offline=yes --threshold="$threshold" "$tmp/units/weak/netd.service" >/dev/null 2>&1; then
  ok "systemd-analyze security fails a weakened unit (threshold $threshold is not vacuous)"
else
  notok "systemd-analyze security fails a weakened unit"
fi

# --- 8. the flake's outputs evaluate with nixpkgs = nixos/stub ------------------
# Flakes in a git tree see only tracked files; copy what git would track
# (tracked + untracked-but-not-ignored) so uncommitted work is checked too,
# and never the ignored PKI output.
src="$tmp/src"
mkdir -p "$src"
(cd "$root" && { git ls-files -z; git ls-files -z --others --exclude-standard; } |
  sort -zu | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' | tar --null -cf - -T -) | tar -xf - -C "$src"
flake=(--override-input nixpkgs "path:$src/nixos/stub" --no-write-lock-file)
if out=$(nix flake show --json "${flake[@]}" "path:$src" 2>"$tmp/show.err"); then
  ok "nix flake show (nixpkgs = stub)"
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
  notok "nix flake show (nixpkgs = stub)" "$(cat "$tmp/show.err")"
fi
fe() { nix eval "${flake[@]}" "$@" 2>"$tmp/fe.err"; }
if v=$(fe --raw "path:$src#packages.x86_64-linux.netd.version"); then
  case $v in 0.1.0+*) ok "package version from git: $v" ;; *) notok "package version from git ($v)" ;; esac
else notok "package evaluates" "$(cat "$tmp/fe.err")"; fi
if v=$(fe --json "path:$src#packages.x86_64-linux.netd.subPackages"); then
  [ "$v" = '["netd"]' ] && ok "package builds subPackages [netd]" || notok "package builds subPackages [netd] ($v)"
else notok "package subPackages" "$(cat "$tmp/fe.err")"; fi

# Host configurations: assertions per host (nixos/tests/eval/hosts.nix).
if out=$(fe --json --impure "path:$src#nixosConfigurations" --apply "import $src/nixos/tests/eval/hosts.nix"); then
  printf '%s' "$out" | python3 -c 'import json,sys; [print(l) for h in json.load(sys.stdin).values() for l in h]' >"$tmp/hosts.tap"
  count_tap <"$tmp/hosts.tap"
else
  notok "host configurations evaluate" "$(cat "$tmp/fe.err")"
fi

# The VM test: its nodes evaluate with the module, its script is Python.
if v=$(fe --json --impure "path:$src#checks.x86_64-linux.vm-netd.nodes" --apply \
  'ns: builtins.mapAttrs (n: c: if n == "headscale" then c.services.headscale.enable else c.services.netd.enable && (import '"$src"'/nixos/tests/eval/hardening.nix c.systemd.services.netd) == []) ns'); then
  [ "$v" = '{"headscale":true,"n1":true,"n2":true,"n3":true}' ] && ok "VM test nodes evaluate (headscale, n1-n3 with hardened netd)" ||
    notok "VM test nodes evaluate" "$v"
else notok "VM test nodes evaluate" "$(cat "$tmp/fe.err")"; fi
if fe --raw "path:$src#checks.x86_64-linux.vm-netd.testScript" >"$tmp/testscript.py"; then
  run "VM test script is valid Python" python3 -c 'import ast,sys; ast.parse(open(sys.argv[1]).read())' "$tmp/testscript.py"
else notok "VM test script evaluates" "$(cat "$tmp/fe.err")"; fi

# --- 9. lab.nix agrees with the compiled policy; the VM test policy is valid ---
# The policy compiler is the authority (`netd policy render --state`, the
# desired state every reconciler uses): lab.nix must carry the same node
# names, roles, sites, addresses, BGP port and pod MTU.
netd_real=0
[ -x "$netd_out/bin/netd" ] && [ "$(readlink "$netd_out/bin/netd")" != /bin/true ] && netd_real=1
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

# --- 10. vendorHash is current ------------------------------------------------
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

# --- 11. the cluster PKI --------------------------------------------------------
"$nixdir/pki/test-mkpki.sh" 2>&1 | count_tap

finish
