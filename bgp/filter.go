package bgp

import (
	"net/netip"
	"slices"

	"github.com/ducksnest/netd/policy/desired"
)

// Reasons a learned path is rejected; the values of the reason label of
// netd_bgp_prefixes_rejected_total.
const (
	ReasonOutsidePodCIDR = "outside_pod_cidr"
	ReasonNotOwned       = "not_owned"
	ReasonNotAllowed     = "not_allowed"
	ReasonMaxPrefixes    = "max_prefixes"
)

// importRanges returns the ranges a peer's paths must fall in: the peer's
// Import.Ranges and, for a cluster node, only their part inside podCIDR.
// GoBGP's import policy is built from exactly these ranges, and classify
// uses them too, so enforcement and counting cannot disagree.
func importRanges(p desired.Peer, podCIDR netip.Prefix) []desired.PrefixRange {
	var out []desired.PrefixRange
	for _, r := range p.Import.Ranges {
		r.Prefix = r.Prefix.Masked()
		if r.MinLen < r.Prefix.Bits() {
			r.MinLen = r.Prefix.Bits()
		}
		if p.Kind != desired.PeerExternal && podCIDR.IsValid() {
			switch {
			case podCIDR.Bits() <= r.Prefix.Bits() && podCIDR.Contains(r.Prefix.Addr()):
				// inside the pod CIDR: as is
			case r.Prefix.Bits() <= podCIDR.Bits() && r.Prefix.Contains(podCIDR.Addr()):
				// wider than the pod CIDR: clip to it
				r.Prefix = podCIDR.Masked()
				r.MinLen = max(r.MinLen, podCIDR.Bits())
			default:
				continue
			}
		}
		if r.MinLen > r.MaxLen {
			continue
		}
		out = append(out, r)
	}
	return out
}

// classify tells why a path for prefix received from peer p is rejected by
// the import filter ("" if it is allowed). MaxPrefixes is not considered
// here; see limitPrefixes.
func classify(p desired.Peer, ranges []desired.PrefixRange, podCIDR netip.Prefix, pfx netip.Prefix) string {
	for _, r := range ranges {
		if r.Contains(pfx) {
			return ""
		}
	}
	if p.Kind != desired.PeerExternal && podCIDR.IsValid() {
		if !(podCIDR.Bits() <= pfx.Bits() && podCIDR.Contains(pfx.Addr())) {
			return ReasonOutsidePodCIDR
		}
		// Inside an owned block but of a length the peer may not send
		// (a more-specific, say): not allowed; anywhere else in the pod
		// CIDR: a block the peer does not own.
		for _, r := range ranges {
			if r.Prefix.Bits() <= pfx.Bits() && r.Prefix.Contains(pfx.Addr()) {
				return ReasonNotAllowed
			}
		}
		return ReasonNotOwned
	}
	return ReasonNotAllowed
}

// limitPrefixes splits the allowed prefixes of a peer into those accepted
// and those over the peer's MaxPrefixes (0: no limit). The choice is
// deterministic (the lowest prefixes win) so that it survives restarts and
// does not depend on arrival order.
func limitPrefixes(allowed []netip.Prefix, maxPrefixes int) (accepted, over []netip.Prefix) {
	if maxPrefixes <= 0 || len(allowed) <= maxPrefixes {
		return allowed, nil
	}
	s := slices.Clone(allowed)
	slices.SortFunc(s, comparePrefix)
	return s[:maxPrefixes], s[maxPrefixes:]
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
