package daemon

import (
	"net/netip"
	"slices"

	"github.com/ducksnest/netd/netd/routes"
	"github.com/ducksnest/netd/policy/desired"
)

// Learned is a best path as the planner needs it: a prefix and the
// addresses of the peers that announced it (several for ECMP).
type Learned struct {
	Prefix   netip.Prefix
	NextHops []netip.Addr
}

// PathKind names how traffic to a peer's blocks leaves this node.
type PathKind string

// Path kinds.
const (
	PathLAN      PathKind = "lan"      // directly over the site LAN, LAN MTU
	PathOverlay  PathKind = "overlay"  // over the overlay (tailscale0), overlay MTU
	PathExternal PathKind = "external" // an external peer's route, via its address
)

// PlannedRoute is one kernel route with the reasons for it.
type PlannedRoute struct {
	routes.Route
	Paths []PathKind `json:"paths"`
	Peers []string   `json:"peers"`
}

// Unroutable is a learned prefix netd cannot install, and why.
type Unroutable struct {
	Prefix netip.Prefix `json:"prefix"`
	Reason string       `json:"reason"`
}

// planInput is everything Plan needs; it does no I/O.
type planInput struct {
	State   *desired.State
	Self    *desired.Node
	LANDev  string // device holding Self.LANAddr ("" if none found)
	LANUp   func(netip.Addr) bool
	Learned []Learned
	// Check, if set, says why the overlay would not carry a prefix to a
	// next hop ("" if it would): Tailscale forwards only destinations
	// inside a subnet route the peer carries.
	Check func(p netip.Prefix, nextHop netip.Addr) string
}

// Plan turns learned best paths into kernel routes. A next hop that is a
// node of the same site with a LAN address (and a LAN path that answers
// probes) is reached over the LAN with the LAN MTU; any other node over the
// overlay device with `onlink` (Tailscale gives /32 addresses) and the
// overlay MTU; an external peer through the LAN it sits on. Several next
// hops make an ECMP route whose MTU is the smallest of its paths.
func Plan(in planInput) ([]PlannedRoute, []Unroutable) {
	var out []PlannedRoute
	var bad []Unroutable
	lanMTU := 0
	var lanPrefix netip.Prefix
	for _, l := range in.State.Networks.LANs {
		if l.Name == in.Self.LAN {
			lanMTU, lanPrefix = l.MTU, l.Prefix
		}
	}
	ov := in.State.Overlay
	for _, l := range in.Learned {
		pr := PlannedRoute{Route: routes.Route{Dst: l.Prefix}}
		mtu := 0
		reason := ""
		for _, nh := range l.NextHops {
			hop, kind, hopMTU, name, why := planHop(in, l.Prefix, nh, ov, lanMTU, lanPrefix)
			if why != "" {
				reason = why
				continue
			}
			pr.NextHops = append(pr.NextHops, hop)
			pr.Paths = append(pr.Paths, kind)
			pr.Peers = append(pr.Peers, name)
			if mtu == 0 || hopMTU < mtu {
				mtu = hopMTU
			}
		}
		if len(pr.NextHops) == 0 {
			bad = append(bad, Unroutable{Prefix: l.Prefix, Reason: reason})
			continue
		}
		pr.MTU, pr.AdvMSS = mtu, desired.AdvMSS(mtu)
		out = append(out, pr)
	}
	slices.SortFunc(out, func(a, b PlannedRoute) int { return comparePrefix(a.Dst, b.Dst) })
	return out, bad
}

func planHop(in planInput, p netip.Prefix, nh netip.Addr, ov desired.Link, lanMTU int, lanPrefix netip.Prefix) (routes.NextHop, PathKind, int, string, string) {
	if n, ok := in.State.NodeByOverlay(nh); ok {
		if n.Name == in.Self.Name {
			return routes.NextHop{}, "", 0, "", "next hop is this node"
		}
		if n.Site == in.Self.Site && n.LANAddr.IsValid() && in.Self.LANAddr.IsValid() &&
			in.LANDev != "" && lanMTU > 0 && lanPrefix.Contains(n.LANAddr) && in.LANUp(n.LANAddr) {
			return routes.NextHop{Gateway: n.LANAddr, Device: in.LANDev}, PathLAN, lanMTU, n.Name, ""
		}
		if in.Check != nil {
			if why := in.Check(p, nh); why != "" {
				return routes.NextHop{}, "", 0, "", why
			}
		}
		return routes.NextHop{Gateway: nh, Device: ov.Interface, Onlink: true}, PathOverlay, ov.MTU, n.Name, ""
	}
	if lanPrefix.IsValid() && lanPrefix.Contains(nh) && in.LANDev != "" {
		return routes.NextHop{Gateway: nh, Device: in.LANDev}, PathExternal, lanMTU, nh.String(), ""
	}
	if in.State.Networks.Overlay.Contains(nh) {
		return routes.NextHop{Gateway: nh, Device: ov.Interface, Onlink: true}, PathExternal, ov.MTU, nh.String(), ""
	}
	return routes.NextHop{}, "", 0, "", "next hop " + nh.String() + " is neither a node nor on a connected network"
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
