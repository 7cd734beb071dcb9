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
// Which Calico API the cluster serves is asked at start (Discover):
// Calico's public projectcalico.org/v3, from native CRDs (Calico 3.32+,
// no API server) or from the aggregated calico-apiserver, and
// crd.projectcalico.org/v1 (Calico's storage CRDs) only where no v3 is
// served. The aggregated API server serves no IPAMBlocks: those are read
// from v1 there. The specs are built from the github.com/projectcalico/api
// types and written through the dynamic client as unstructured objects
// (netd/kube): no typed clientset, no scheme.
package calico
