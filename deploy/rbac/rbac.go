// Package rbac holds netd's Kubernetes RBAC rules (netd.json, a v1 List
// that `kubectl apply -f` takes): the group ducksnest:netd, to which every
// node's netd identity belongs (CN=ducksnest:netd:<node>, issued by
// nixos/pki/mkpki.sh), may
//
//   - list and watch BlockAffinities and list IPAMBlocks (pod blocks; the
//     drain check before a pool is deleted);
//   - get, list, create, update and delete IPPools (netd owns the pools of
//     the policy; RBAC cannot select by label, netd itself touches only
//     those labelled netd.ducksnest.dev/managed-by=netd);
//   - get and create the IPAM, Felix and BGP configurations, and update
//     only the ones named "default";
//   - create Leases in kube-system, and get and update only netd-calico and
//     netd-tailnet;
//   - create and patch Events in "default".
//
// Each Calico rule names both projectcalico.org (v3: native CRDs or the
// aggregated API server) and crd.projectcalico.org (v1), so the same rules
// serve whichever the cluster has. Nothing else: no Secrets, no Pods, no
// other Lease, no other Calico configuration. The control plane's NixOS
// configuration applies this file (nixos/profiles/k8s-control-plane.nix);
// the tests apply it to every API server they start and run netd as a
// node identity from mkpki.sh.
package rbac

import _ "embed"

// Manifest is netd.json.
//
//go:embed netd.json
var Manifest []byte
