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

// importFilter is the one definition of what a node accepts from a peer:
// an ordered list of rules, the first rule that matches a path decides,
// and a path no rule matches is rejected for the fallback reason. GoBGP's
// import policy is rendered from it (gobgppolicy.go) and the rejection
// classifier evaluates it (classify), so enforcement and counting cannot
// disagree. A new import rule is one more entry in importFilterFor.
// MaxPrefixes is not part of it: see limitPrefixes.
type importFilter struct {
	rules    []rule
	fallback string
}

// rule matches a path whose prefix lies in one of ranges.
type rule struct {
	ranges []desired.PrefixRange
	reason string // "" accepts; otherwise the path is rejected for it
}

func (r rule) matches(pfx netip.Prefix) bool {
	for _, pr := range r.ranges {
		if pr.Contains(pfx) {
			return true
		}
	}
	return false
}

// importFilterFor builds the import filter of peer p.
//
// A cluster node may send only the blocks it owns (its Import.Ranges,
// clipped to the pod CIDR); a more-specific of them is not allowed,
// another block of the pod CIDR is not owned, anything else is outside the
// pod CIDR. An external peer may send what its Import.Ranges allow.
func importFilterFor(cfg desired.Speaker, p desired.Peer) importFilter {
	podCIDR := cfg.PodCIDR.Masked()
	if p.Kind == desired.PeerExternal || !podCIDR.IsValid() {
		return importFilter{rules: acceptEach(p.Import.Ranges, netip.Prefix{}), fallback: ReasonNotAllowed}
	}
	accept := acceptEach(p.Import.Ranges, podCIDR)
	var longer []desired.PrefixRange // the accepted prefixes at any length
	for _, r := range accept {
		longer = append(longer, anyLength(r.ranges[0].Prefix))
	}
	return importFilter{
		rules: append(accept,
			rule{ranges: longer, reason: ReasonNotAllowed},
			rule{ranges: []desired.PrefixRange{anyLength(podCIDR)}, reason: ReasonNotOwned}),
		fallback: ReasonOutsidePodCIDR,
	}
}

// acceptEach makes one accept rule per range, normalised and, if within
// is valid, clipped to it (a range wider than within becomes within;
// one outside it is dropped).
func acceptEach(ranges []desired.PrefixRange, within netip.Prefix) []rule {
	var out []rule
	for _, r := range ranges {
		r.Prefix = r.Prefix.Masked()
		r.MinLen = max(r.MinLen, r.Prefix.Bits())
		if within.IsValid() {
			switch {
			case within.Bits() <= r.Prefix.Bits() && within.Contains(r.Prefix.Addr()):
				// inside: as is
			case r.Prefix.Bits() <= within.Bits() && r.Prefix.Contains(within.Addr()):
				r.Prefix = within
				r.MinLen = max(r.MinLen, within.Bits())
			default:
				continue
			}
		}
		if r.MinLen > r.MaxLen {
			continue
		}
		out = append(out, rule{ranges: []desired.PrefixRange{r}})
	}
	return out
}

// anyLength is the range of every prefix inside p.
func anyLength(p netip.Prefix) desired.PrefixRange {
	return desired.PrefixRange{Prefix: p, MinLen: p.Bits(), MaxLen: 32}
}

// classify tells why the filter rejects a path for pfx ("" if it accepts
// it).
func (f importFilter) classify(pfx netip.Prefix) string {
	for _, r := range f.rules {
		if r.matches(pfx) {
			return r.reason
		}
	}
	return f.fallback
}

// enforced returns the rules GoBGP must be given: those up to the last
// accept rule. A reject after it changes only the reason, not the outcome
// (GoBGP's default action is reject), so it is left to classify.
func (f importFilter) enforced() []rule {
	last := -1
	for i, r := range f.rules {
		if r.reason == "" {
			last = i
		}
	}
	return f.rules[:last+1]
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
