// Package calico keeps the cluster's Calico objects equal to the compiled
// policy and reads the node's pod blocks from Calico IPAM.
//
// The Reconciler (run on the Lease holder only, see RunLeader, or from the
// CLI) creates and updates the IPPools, the default IPAMConfig and the
// default FelixConfiguration and BGPConfiguration that Manifests maps from
// desired.Calico. Every object it writes carries OwnerLabel and the field
// manager "netd"; objects without the label are never modified or deleted,
// only reported. Writes carry the resourceVersion that was read, so a
// concurrent edit is detected and not overwritten. IPPool cidr and
// blockSize are immutable: a change becomes a new pool, and the old one is
// disabled and deleted only when no IPAMBlock of it remains.
//
// The AffinitySource (run on every node) watches BlockAffinity objects
// (state confirmed) and reports each node's affine blocks: this node's are
// what netd advertises, everybody's feed the BGP import filter.
//
// Calico's CRDs are crd.projectcalico.org/v1, while the typed Go API
// (github.com/projectcalico/api) is projectcalico.org/v3, served only by
// the Calico API server. The CRDs carry the same spec fields, so this
// package talks to them with the dynamic client and unstructured objects:
// no dependency on the Calico module, and no conversion layer.
package calico
