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
	// ReasonReserved: an external peer's path reaches a reserved range
	// (the pod, service or overlay range, a LAN, the default route) or a
	// node's pod block or address.
	ReasonReserved = "reserved"
	// ReasonNextHop: an external peer's path names a next hop other than
	// the peer itself.
	ReasonNextHop = "next_hop"
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

// rule matches a path whose prefix lies in one of ranges or reaches one of
// reaches (desired.ReservedRange.Reaches), and, if nextHop is valid, whose
// next hop is nextHop.
type rule struct {
	ranges  []desired.PrefixRange
	reaches []desired.ReservedRange
	nextHop netip.Addr
	reason  string // "" accepts; otherwise the path is rejected for it
}

// matches reports whether the rule matches a path, and what it reaches
// (the name of a reserved range, if that is how it matched).
func (r rule) matches(pfx netip.Prefix, nh netip.Addr) (bool, string) {
	if r.nextHop.IsValid() && nh != r.nextHop {
		return false, ""
	}
	for _, pr := range r.ranges {
		if pr.Contains(pfx) {
			return true, ""
		}
	}
	for _, rr := range r.reaches {
		if rr.Reaches(pfx) {
			return true, rr.Name
		}
	}
	return false, ""
}

// importFilterFor builds the import filter of peer p of a node whose own
// blocks are own.
//
// A cluster node may send only the blocks it owns (its Import.Ranges,
// clipped to the pod CIDR); a more-specific of them is not allowed,
// another block of the pod CIDR is not owned, anything else is outside the
// pod CIDR.
//
// An external peer's routes go to netd's table, which is looked up before
// the main table, so they may never reach what belongs to the cluster: a
// path that reaches a node's pod block or address, or the peer's own
// address, is rejected whatever the policy says; one that reaches a
// reserved range (cfg.Reserved: the pod, service and overlay ranges, the
// LANs, the default route) unless it is one of the peer's exact
// Import.Exceptions. The rest is accepted as its Import.Ranges allow, and
// only with the peer itself as next hop (a third-party next hop could
// point into the cluster, at a node, or loop).
func importFilterFor(cfg desired.Speaker, own []netip.Prefix, p desired.Peer) importFilter {
	podCIDR := cfg.PodCIDR.Masked()
	if p.Kind == desired.PeerExternal {
		nh := p.Address
		var rules []rule
		rules = append(rules, rule{reaches: clusterTargets(cfg, own, p), reason: ReasonReserved})
		exc := make([]desired.PrefixRange, 0, len(p.Import.Exceptions))
		for _, e := range p.Import.Exceptions {
			e = e.Masked()
			exc = append(exc, desired.PrefixRange{Prefix: e, MinLen: e.Bits(), MaxLen: e.Bits()})
		}
		if len(exc) > 0 {
			rules = append(rules, rule{ranges: exc, nextHop: nh}, rule{ranges: exc, reason: ReasonNextHop})
		}
		reserved := cfg.Reserved
		if len(reserved) == 0 {
			reserved = desired.Networks{Pods: podCIDR}.Reserved()
		}
		rules = append(rules, rule{reaches: reserved, reason: ReasonReserved})
		accept := acceptEach(p.Import.Ranges, netip.Prefix{})
		var all []desired.PrefixRange
		for _, r := range accept {
			r.nextHop = nh
			rules = append(rules, r)
			all = append(all, r.ranges...)
		}
		if len(all) > 0 {
			rules = append(rules, rule{ranges: all, reason: ReasonNextHop})
		}
		return importFilter{rules: rules, fallback: ReasonNotAllowed}
	}
	if !podCIDR.IsValid() {
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

// clusterTargets is what no external peer may reach, exceptions or not:
// this node's blocks and address, each node peer's blocks and addresses,
// and the peer's own address.
func clusterTargets(cfg desired.Speaker, own []netip.Prefix, ext desired.Peer) []desired.ReservedRange {
	var out []desired.ReservedRange
	host := func(name string, a netip.Addr) {
		if a.IsValid() {
			out = append(out, desired.ReservedRange{Name: name, Prefix: netip.PrefixFrom(a, a.BitLen())})
		}
	}
	for _, b := range own {
		out = append(out, desired.ReservedRange{Name: "own pod block", Prefix: b.Masked()})
	}
	host("own address", cfg.ListenAddr)
	for _, p := range cfg.Peers {
		if p.Kind == desired.PeerExternal {
			continue
		}
		for _, r := range p.Import.Ranges {
			out = append(out, desired.ReservedRange{Name: "pod block of " + p.Name, Prefix: r.Prefix.Masked()})
		}
		host("address of "+p.Name, p.Address)
		host("address of "+p.Name, p.LANAddr)
	}
	host("the peer's own address", ext.Address)
	return out
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

// classify tells why the filter rejects a path for pfx with next hop nh
// ("" if it accepts it) and, for a reserved range, which one it reaches.
func (f importFilter) classify(pfx netip.Prefix, nh netip.Addr) (reason, what string) {
	for _, r := range f.rules {
		if ok, what := r.matches(pfx, nh); ok {
			return r.reason, what
		}
	}
	return f.fallback, ""
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
