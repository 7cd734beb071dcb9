#!/usr/bin/env bash
# Tests nixos/pki/mkpki.sh in a temporary directory: the CA and every
# certificate must verify with `openssl verify`, carry the right names,
# SANs and key usages, match their keys, and the keys must be private
# (0600) and never handed to a host that does not need them. Prints one
# "ok - ..." or "not ok - ..." line per assertion (nixos/check.sh counts
# them) and exits non-zero if any failed.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0

ok() { echo "ok - pki: $1"; }
bad() { echo "not ok - pki: $1"; failed=1; }
expect() { # NAME COMMAND...
  local name=$1; shift
  if "$@" >/dev/null 2>&1; then ok "$name"; else bad "$name"; fi
}

# The topology the test issues for: the lab's, read from the policy by the
# caller (nixos/check.sh) or these defaults.
CP_IP=${CP_IP:-100.64.0.4}
NODES=${NODES:-"control-plane=$CP_IP firebat=100.64.0.1 ultra=100.64.0.2 old=100.64.0.3"}
export NODES CONTROL_PLANE=control-plane API_SERVICE_IP=10.96.0.1 TAILNET_DOMAIN=tail.example

if ! "$here/mkpki.sh" -o "$tmp/out" >"$tmp/log" 2>&1; then
  cat "$tmp/log" >&2
  bad "mkpki.sh runs"
  exit 1
fi
ok "mkpki.sh runs"
o=$tmp/out
ca=$o/ca/ca.pem

san() { openssl x509 -in "$1" -noout -ext subjectAltName 2>/dev/null | tail -n +2 | tr -d ' '; }
eku() { openssl x509 -in "$1" -noout -ext extendedKeyUsage 2>/dev/null | tail -n +2 | sed 's/^ *//'; }
subj() { openssl x509 -in "$1" -noout -subject -nameopt RFC2253 | sed 's/^subject=//'; }
pub() { openssl pkey -in "$1" -pubout 2>/dev/null; }
certpub() { openssl x509 -in "$1" -noout -pubkey; }
has() { grep -q -- "$2" <<<"$1"; }

expect "CA is self-signed and verifies" openssl verify -CAfile "$ca" "$ca"
expect "CA is a CA" bash -c "openssl x509 -in '$ca' -noout -ext basicConstraints | grep -q 'CA:TRUE'"

leaves=(apiserver apiserver-kubelet-client apiserver-etcd-client etcd controller-manager scheduler kube-proxy admin calico-cni)
for n in $NODES; do leaves+=("kubelet-${n%%=*}"); done
for n in $NODES; do leaves+=("netd-${n%%=*}"); done
for l in "${leaves[@]}"; do
  c=$o/issued/$l.pem k=$o/issued/$l-key.pem
  expect "$l verifies against the CA" openssl verify -CAfile "$ca" "$c"
  if [ "$(pub "$k")" = "$(certpub "$c")" ]; then ok "$l key matches certificate"; else bad "$l key matches certificate"; fi
  if [ "$(stat -c %a "$k")" = 600 ]; then ok "$l key is 0600"; else bad "$l key is 0600 (is $(stat -c %a "$k"))"; fi
  expect "$l is not a CA" bash -c "openssl x509 -in '$c' -noout -ext basicConstraints | grep -q 'CA:FALSE'"
done

# A certificate from another CA must not verify: the check is not vacuous.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/other-key.pem" \
  -out "$tmp/other.pem" -subj /CN=other -days 1 >/dev/null 2>&1
if openssl verify -CAfile "$ca" "$tmp/other.pem" >/dev/null 2>&1; then bad "a foreign certificate is rejected"; else ok "a foreign certificate is rejected"; fi

a=$(san "$o/issued/apiserver.pem")
for want in DNS:kubernetes DNS:kubernetes.default DNS:kubernetes.default.svc DNS:kubernetes.default.svc.cluster.local \
  DNS:control-plane DNS:control-plane.tail.example IPAddress:10.96.0.1 "IPAddress:$CP_IP" IPAddress:127.0.0.1; do
  if has "$a" "$want\(,\|$\)"; then ok "apiserver SAN $want"; else bad "apiserver SAN $want (have $a)"; fi
done
has "$(eku "$o/issued/apiserver.pem")" "TLS Web Server Authentication" && ok "apiserver EKU serverAuth" || bad "apiserver EKU serverAuth"

e=$(san "$o/issued/etcd.pem")
for want in DNS:localhost IPAddress:127.0.0.1 "IPAddress:$CP_IP"; do
  if has "$e" "$want\(,\|$\)"; then ok "etcd SAN $want"; else bad "etcd SAN $want (have $e)"; fi
done
ee=$(eku "$o/issued/etcd.pem")
has "$ee" "Server Authentication" && has "$ee" "Client Authentication" && ok "etcd EKU server+client (peer)" || bad "etcd EKU server+client"

for n in $NODES; do
  name=${n%%=*} ip=${n#*=}
  c=$o/issued/kubelet-$name.pem
  s=$(subj "$c")
  if [ "$s" = "CN=system:node:$name,O=system:nodes" ]; then ok "kubelet-$name subject"; else bad "kubelet-$name subject ($s)"; fi
  k=$(san "$c")
  if has "$k" "DNS:$name,IPAddress:$ip$"; then ok "kubelet-$name SAN name+overlay IP"; else bad "kubelet-$name SAN ($k)"; fi
done
has "$(subj "$o/issued/apiserver-kubelet-client.pem")" "O=system:masters" && ok "apiserver-kubelet-client in system:masters" || bad "apiserver-kubelet-client group"
has "$(eku "$o/issued/netd-old.pem")" "Client Authentication" && ok "netd EKU clientAuth" || bad "netd EKU"

# Distribution: the CA key never leaves ca/; workers get no control-plane keys.
if find "$o/hosts" "$o/admin" -name 'ca-key.pem' | grep -q .; then bad "CA key only in ca/"; else ok "CA key only in ca/"; fi
for w in firebat ultra old; do
  if ls "$o/hosts/$w" | grep -qE '^(apiserver|etcd|service-account|controller-manager|scheduler)'; then
    bad "$w has no control-plane keys"
  else ok "$w has no control-plane keys"; fi
  expect "$w has its kubelet key" test -f "$o/hosts/$w/kubelet-$w-key.pem"
done
expect "control plane has the service-account key" test -f "$o/hosts/control-plane/service-account-key.pem"
bad_modes=$(find "$o/hosts" -type f ! -perm 0600 | wc -l)
[ "$bad_modes" = 0 ] && ok "every host file is 0600" || bad "every host file is 0600 ($bad_modes are not)"

# The embedded kubeconfig: its client certificate verifies and is netd's.
grep 'client-certificate-data' "$o/hosts/old/netd.kubeconfig" | awk '{print $2}' | base64 -d >"$tmp/kc.pem"
expect "netd.kubeconfig embeds a CA-signed cert" openssl verify -CAfile "$ca" "$tmp/kc.pem"
has "$(subj "$tmp/kc.pem")" "CN=ducksnest:netd:old" && ok "netd.kubeconfig user is ducksnest:netd:old" || bad "netd.kubeconfig user"
has "$(subj "$tmp/kc.pem")" "O=ducksnest:netd" && ok "netd.kubeconfig group is ducksnest:netd" || bad "netd.kubeconfig group"
has "$(cat "$o/hosts/old/netd.kubeconfig")" "server: https://$CP_IP:6443" && ok "kubeconfig server is the control plane's overlay address" || bad "kubeconfig server"

# Re-running keeps the CA and the issued certificates (idempotent).
before=$(sha256sum "$ca" "$o/issued/apiserver.pem")
"$here/mkpki.sh" -o "$o" >/dev/null 2>&1
[ "$before" = "$(sha256sum "$ca" "$o/issued/apiserver.pem")" ] && ok "re-run keeps CA and certificates" || bad "re-run keeps CA and certificates"

# Refuses to write keys where git would pick them up, or into the store.
git init -q "$tmp/repo"
if "$here/mkpki.sh" -o "$tmp/repo/keys" >/dev/null 2>&1; then bad "refuses an unignored dir in a git tree"; else ok "refuses an unignored dir in a git tree"; fi
printf 'keys/\n' >"$tmp/repo/.gitignore"
expect "accepts a git-ignored dir" "$here/mkpki.sh" -o "$tmp/repo/keys"
if "$here/mkpki.sh" -o /nix/store/x-keys >/dev/null 2>&1; then bad "refuses the Nix store"; else ok "refuses the Nix store"; fi
# The repository's own default output dir is ignored by nixos/pki/.gitignore.
if git -C "$here" rev-parse >/dev/null 2>&1; then
  expect "nixos/pki/out is git-ignored" git -C "$here" check-ignore -q "$here/out/ca/ca-key.pem"
fi

exit $failed
