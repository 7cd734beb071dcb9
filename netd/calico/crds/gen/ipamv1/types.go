// Package v1 mirrors the Calico IPAM types that live only in libcalico-go
// (IPAMBlock, IPAMHandle, IPAMConfig) so that controller-gen can render
// their crd.projectcalico.org/v1 CRDs next to the ones generated from
// github.com/projectcalico/api. Field names and JSON tags follow
// libcalico-go/lib/apis/v3 of Calico v3.31.
//
// +groupName=crd.projectcalico.org
// +kubebuilder:object:generate=false
package v1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// IPAMBlock is one block of a pool, with its allocations.
//
// +kubebuilder:resource:scope=Cluster
type IPAMBlock struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              IPAMBlockSpec `json:"spec,omitempty"`
}

// IPAMBlockSpec is the block's content.
type IPAMBlockSpec struct {
	CIDR string `json:"cidr"`
	// Affinity is "host:<node>" when the block is affine to a node.
	Affinity          *string      `json:"affinity,omitempty"`
	AffinityClaimTime *metav1.Time `json:"affinityClaimTime,omitempty"`
	StrictAffinity    bool         `json:"strictAffinity"`
	// Allocations has one entry per address: the index of its attribute,
	// or null when free.
	Allocations                 []*int                `json:"allocations"`
	Unallocated                 []int                 `json:"unallocated"`
	Attributes                  []AllocationAttribute `json:"attributes"`
	SequenceNumber              uint64                `json:"sequenceNumber,omitempty"`
	SequenceNumberForAllocation map[string]uint64     `json:"sequenceNumberForAllocation,omitempty"`
	Deleted                     bool                  `json:"deleted,omitempty"`
}

// AllocationAttribute describes the owner of an allocation.
type AllocationAttribute struct {
	AttrPrimary   *string           `json:"handle_id,omitempty"`
	AttrSecondary map[string]string `json:"secondary,omitempty"`
	ReleasedAt    *metav1.Time      `json:"releasedAt,omitempty"`
}

// IPAMHandle groups the allocations of one owner.
//
// +kubebuilder:resource:scope=Cluster
type IPAMHandle struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              IPAMHandleSpec `json:"spec,omitempty"`
}

// IPAMHandleSpec maps blocks to allocation counts.
type IPAMHandleSpec struct {
	HandleID string         `json:"handleID"`
	Block    map[string]int `json:"block"`
	Deleted  bool           `json:"deleted,omitempty"`
}

// IPAMConfig is the cluster-wide IPAM configuration (one object, "default").
//
// +kubebuilder:resource:scope=Cluster
type IPAMConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              IPAMConfigSpec `json:"spec,omitempty"`
}

// IPAMConfigSpec are the IPAM settings.
type IPAMConfigSpec struct {
	StrictAffinity     bool `json:"strictAffinity"`
	AutoAllocateBlocks bool `json:"autoAllocateBlocks"`
	// +optional
	MaxBlocksPerHost int `json:"maxBlocksPerHost,omitempty"`
}
