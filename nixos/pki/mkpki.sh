#!/usr/bin/env bash
# mkpki.sh: create the ducksnest cluster CA and issue every certificate the
# cluster needs, offline, with openssl only. See nixos/README.md ("Cluster
# PKI") for the procedure.
#
#   nixos/pki/mkpki.sh [-o OUTDIR] [-f]
#
# Writes, under OUTDIR (default nixos/pki/out, which is git-ignored):
#   ca/ca.pem ca/ca-key.pem           the CA; the key stays on this machine
#   hosts/<host>/...                  exactly what goes to that host's
#                                     /var/lib/secrets/kubernetes/ (0600)
#   admin/admin.kubeconfig            for kubectl (system:masters)
#   hosts/<host>/netd.kubeconfig      netd's identity on that host:
#                                     CN=ducksnest:netd:<host>, O=ducksnest:netd
# The topology comes from the environment, defaulting to the lab's policy
# (examples/ducksnest/policy.yaml; nixos/check.sh verifies they agree):
#   CONTROL_PLANE=control-plane       name of the API server / etcd node
#   NODES="control-plane=100.64.0.4 firebat=100.64.0.1 ultra=100.64.0.2 old=100.64.0.3"
#   API_SERVICE_IP=10.96.0.1          first address of the service CIDR
#   CLUSTER_DOMAIN=cluster.local
#   TAILNET_DOMAIN=                   MagicDNS suffix, if used (adds
#                                     <control-plane>.<suffix> to the SANs)
#   CA_DAYS=3650 CERT_DAYS=825
# Existing files are kept (re-running issues only what is missing); -f
# re-issues the leaf certificates (never the CA: delete ca/ to start over).
set -euo pipefail

out=""
force=0
while getopts "o:f" opt; do
  case $opt in
    o) out=$OPTARG ;;
    f) force=1 ;;
    *) echo "usage: $0 [-o OUTDIR] [-f]" >&2; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)
out=${out:-$here/out}

CONTROL_PLANE=${CONTROL_PLANE:-control-plane}
NODES=${NODES:-"control-plane=100.64.0.4 firebat=100.64.0.1 ultra=100.64.0.2 old=100.64.0.3"}
API_SERVICE_IP=${API_SERVICE_IP:-10.96.0.1}
CLUSTER_DOMAIN=${CLUSTER_DOMAIN:-cluster.local}
TAILNET_DOMAIN=${TAILNET_DOMAIN:-}
CA_DAYS=${CA_DAYS:-3650}
CERT_DAYS=${CERT_DAYS:-825}

die() { echo "mkpki: $*" >&2; exit 1; }
command -v openssl >/dev/null || die "openssl not found"

# Private keys must never reach the Nix store or git.
case "$out" in /nix/store/*) die "refusing to write keys into the Nix store ($out)" ;; esac
mkdir -p "$out"
out=$(cd "$out" && pwd)
if git -C "$out" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  probe="$out/ca/ca-key.pem"
  if ! git -C "$out" check-ignore -q "$probe"; then
    die "$out is inside a git work tree and not ignored: keys would be committable (see nixos/pki/.gitignore)"
  fi
fi
umask 077

overlay_of() { # name -> overlay address from NODES
  local n
  for n in $NODES; do [ "${n%%=*}" = "$1" ] && { echo "${n#*=}"; return; }; done
  die "node $1 not in NODES"
}
cp_ip=$(overlay_of "$CONTROL_PLANE")

mkdir -p "$out/ca" "$out/issued" "$out/hosts" "$out/admin"
ca="$out/ca/ca.pem"
cakey="$out/ca/ca-key.pem"

if [ ! -f "$ca" ]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$cakey" 2>/dev/null
  openssl req -x509 -new -key "$cakey" -sha256 -days "$CA_DAYS" -subj "/CN=ducksnest-cluster-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" -out "$ca"
  echo "created CA $ca"
fi

# issue NAME SUBJECT EKU [SAN]: a P-256 key and a certificate signed by the CA.
issue() {
  local name=$1 subj=$2 eku=$3 san=${4:-}
  local crt="$out/issued/$name.pem" key="$out/issued/$name-key.pem" ext
  if [ -f "$crt" ] && [ "$force" = 0 ]; then return; fi
  ext=$(mktemp)
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    echo "authorityKeyIdentifier=keyid"
    [ -n "$san" ] && echo "subjectAltName=$san"
  } >"$ext"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$key" 2>/dev/null
  openssl req -new -key "$key" -subj "$subj" -out "$out/issued/$name.csr"
  openssl x509 -req -in "$out/issued/$name.csr" -CA "$ca" -CAkey "$cakey" -CAcreateserial \
    -sha256 -days "$CERT_DAYS" -extfile "$ext" -out "$crt" 2>/dev/null
  rm -f "$ext" "$out/issued/$name.csr"
  echo "issued $name ($subj)"
}

api_san="DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN"
api_san+=",DNS:$CONTROL_PLANE,DNS:localhost,IP:$API_SERVICE_IP,IP:$cp_ip,IP:127.0.0.1"
[ -n "$TAILNET_DOMAIN" ] && api_san+=",DNS:$CONTROL_PLANE.$TAILNET_DOMAIN"

issue apiserver "/CN=kube-apiserver" serverAuth "$api_san"
issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
issue apiserver-etcd-client "/CN=kube-apiserver-etcd-client" clientAuth
issue etcd "/CN=etcd" "serverAuth,clientAuth" "DNS:$CONTROL_PLANE,DNS:localhost,IP:$cp_ip,IP:127.0.0.1"
issue controller-manager "/CN=system:kube-controller-manager" clientAuth
issue scheduler "/CN=system:kube-scheduler" clientAuth
issue kube-proxy "/CN=system:kube-proxy" clientAuth
issue admin "/O=system:masters/CN=admin" clientAuth
issue calico-cni "/CN=calico-cni" clientAuth
for n in $NODES; do
  name=${n%%=*} ip=${n#*=}
  issue "kubelet-$name" "/O=system:nodes/CN=system:node:$name" "serverAuth,clientAuth" "DNS:$name,IP:$ip"
  # netd: one identity per node (the API server's audit log and the
  # Lease's holder name the node), all in the group deploy/rbac/netd.json
  # binds.
  issue "netd-$name" "/O=ducksnest:netd/CN=ducksnest:netd:$name" clientAuth
done

# The service-account token signing key pair (not a certificate).
if [ ! -f "$out/issued/service-account-key.pem" ]; then
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$out/issued/service-account-key.pem" 2>/dev/null
  openssl pkey -in "$out/issued/service-account-key.pem" -pubout -out "$out/issued/service-account.pem"
  echo "created service-account key pair"
fi

# kubeconfig NAME USER SERVER: certificates embedded, so that a service
# reading it through LoadCredential (netd's dynamic user) needs no other file.
kubeconfig() {
  local cert=$1 user=$2 server=$3 dest=$4
  cat >"$dest" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ducksnest
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 "$ca")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$out/issued/$cert.pem")
    client-key-data: $(base64 -w0 "$out/issued/$cert-key.pem")
contexts:
- name: ducksnest
  context: {cluster: ducksnest, user: $user}
current-context: ducksnest
EOF
}
server="https://$cp_ip:6443"

# What each host gets: the CA certificate (never its key) and its own files.
for n in $NODES; do
  name=${n%%=*}
  d="$out/hosts/$name"
  mkdir -p "$d"
  files=(kubelet-"$name" kube-proxy)
  if [ "$name" = "$CONTROL_PLANE" ]; then
    files+=(apiserver apiserver-kubelet-client apiserver-etcd-client etcd controller-manager scheduler)
    cp "$out/issued/service-account.pem" "$out/issued/service-account-key.pem" "$d/"
  fi
  cp "$ca" "$d/ca.pem"
  for f in "${files[@]}"; do cp "$out/issued/$f.pem" "$out/issued/$f-key.pem" "$d/"; done
  kubeconfig "netd-$name" "ducksnest:netd:$name" "$server" "$d/netd.kubeconfig"
  kubeconfig calico-cni calico-cni "$server" "$d/calico-cni.kubeconfig"
  chmod 0600 "$d"/*
done
kubeconfig admin admin "$server" "$out/admin/admin.kubeconfig"

echo "done: copy $out/hosts/<host>/ to <host>:/var/lib/secrets/kubernetes/ (root, 0700 dir, 0600 files); keep $out/ca/ offline"
