// Package crds embeds the Calico CustomResourceDefinitions
// (crd.projectcalico.org/v1) netd reads and writes: IPPool, IPAMBlock,
// IPAMHandle, BlockAffinity, IPAMConfig, FelixConfiguration and
// BGPConfiguration. They are generated from the pinned
// github.com/projectcalico/api module (Calico v3.31.0) by ./gen, a separate
// tool module so that controller-gen stays out of netd's dependencies.
package crds

import "embed"

//go:generate sh -c "cd gen && GOFLAGS=-mod=mod GONOSUMDB=github.com/projectcalico go run . .."

// FS holds the CRD manifests, one per file.
//
//go:embed *.yaml v3/*.yaml
var FS embed.FS
