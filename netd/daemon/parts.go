package daemon

import (
	"context"
	"net/netip"

	"github.com/ducksnest/netd/netd/tailnetsync"
	"github.com/ducksnest/netd/policy/desired"
)

// part is an optional piece of netd (Calico, Tailscale, BFD, the tailnet
// policy writer). It is built
// only when configured and then added to Daemon.parts, which run beside the
// core loops until ctx is done. Each part gets its inputs (funcs returning
// the current value) and the triggers it pokes when it is built, and keeps
// no pointer to the Daemon.
type part interface {
	Run(ctx context.Context) error
}

// What an optional part adds to the core goes through the small interfaces
// below. The Daemon starts with their defaults, which keep netd working on
// the policy alone, and a configured part replaces them.
type (
	// blockSource gives this node's pod blocks, its speaker config with
	// the owners of the peers' blocks, and where both come from: Calico
	// IPAM (cluster) or the policy (policyBlocks).
	blockSource interface {
		blocks(self *desired.Node) (own []netip.Prefix, sp desired.Speaker, source string)
		// allBlocks gives every node's pod blocks, by node name (for the
		// tailnet policy writer's route approval check).
		allBlocks(st *desired.State) map[string][]netip.Prefix
	}
	// peerSource may replace the node peers of the speaker config: the
	// tailnet peers with the node tag (tailscalePart) or the policy's list
	// (policyPeers).
	peerSource interface {
		speaker(self *desired.Node, sp desired.Speaker) desired.Speaker
	}
	// overlayCheck returns, for one route run, why the overlay would not
	// carry a prefix to a next hop; nil means no check (noOverlayCheck).
	overlayCheck interface {
		check(overlay netip.Prefix) func(p netip.Prefix, nextHop netip.Addr) string
	}
	// peerWatcher follows the BGP peers' liveness (*bfd.Server, or
	// noPeerWatcher).
	peerWatcher interface {
		SetPeers(peers []netip.Addr)
	}
)

type (
	policyBlocks   struct{}
	policyPeers    struct{}
	noOverlayCheck struct{}
	noPeerWatcher  struct{}
)

func (policyBlocks) blocks(self *desired.Node) ([]netip.Prefix, desired.Speaker, string) {
	return ownBlocks(self), self.BGP, "policy"
}

func (policyBlocks) allBlocks(st *desired.State) map[string][]netip.Prefix {
	return tailnetsync.PolicyBlocks(st)
}

func (policyPeers) speaker(_ *desired.Node, sp desired.Speaker) desired.Speaker { return sp }

func (noOverlayCheck) check(netip.Prefix) func(netip.Prefix, netip.Addr) string { return nil }

func (noPeerWatcher) SetPeers([]netip.Addr) {}

// ownBlocks is the static pod CIDR source: the node's blocks from the policy.
func ownBlocks(self *desired.Node) []netip.Prefix {
	return append([]netip.Prefix(nil), self.PodCIDRs...)
}
