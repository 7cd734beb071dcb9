package routes

import (
	"net/netip"
	"slices"

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
	Route
	Paths []PathKind `json:"paths"`
	Peers []string   `json:"peers"`
}

// Unroutable is a learned prefix netd cannot install, and why.
type Unroutable struct {
	Prefix netip.Prefix `json:"prefix"`
	Reason string       `json:"reason"`
}

// PlanInput is everything Plan needs; Plan does no I/O.
type PlanInput struct {
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
func Plan(in PlanInput) ([]PlannedRoute, []Unroutable) {
	pl := newPlanner(in)
	var out []PlannedRoute
	var bad []Unroutable
	for _, l := range in.Learned {
		pr := PlannedRoute{Route: Route{Dst: l.Prefix}}
		reason := ""
		for _, nh := range l.NextHops {
			h := pl.hop(l.Prefix, nh)
			if h.unroutable != "" {
				reason = h.unroutable
				continue
			}
			pr.NextHops = append(pr.NextHops, h.NextHop)
			pr.Paths = append(pr.Paths, h.kind)
			pr.Peers = append(pr.Peers, h.peer)
			if pr.MTU == 0 || h.mtu < pr.MTU {
				pr.MTU = h.mtu
			}
		}
		if len(pr.NextHops) == 0 {
			bad = append(bad, Unroutable{Prefix: l.Prefix, Reason: reason})
			continue
		}
		pr.AdvMSS = desired.AdvMSS(pr.MTU)
		out = append(out, pr)
	}
	slices.SortFunc(out, func(a, b PlannedRoute) int { return comparePrefix(a.Dst, b.Dst) })
	return out, bad
}

// planner holds what every next hop of one Plan is checked against.
type planner struct {
	in        PlanInput
	lanMTU    int
	lanPrefix netip.Prefix // invalid if this node is on no LAN
	overlay   desired.Link
}

func newPlanner(in PlanInput) planner {
	p := planner{in: in, overlay: in.State.Overlay}
	for _, l := range in.State.Networks.LANs {
		if l.Name == in.Self.LAN {
			p.lanMTU, p.lanPrefix = l.MTU, l.Prefix
		}
	}
	return p
}

// plannedHop is how one next hop is reached, or why it cannot be.
type plannedHop struct {
	NextHop
	kind PathKind
	mtu  int
	peer string // the node's name, or the external peer's address
	// unroutable, if not empty, says why the next hop cannot be used; the
	// other fields are then zero.
	unroutable string
}

func unroutable(why string) plannedHop { return plannedHop{unroutable: why} }

// hop chooses the path to next hop nh for prefix p.
func (pl planner) hop(p netip.Prefix, nh netip.Addr) plannedHop {
	in := pl.in
	overlayHop := func(kind PathKind, peer string) plannedHop {
		return plannedHop{NextHop: NextHop{Gateway: nh, Device: pl.overlay.Interface, Onlink: true},
			kind: kind, mtu: pl.overlay.MTU, peer: peer}
	}
	if n, ok := in.State.NodeByOverlay(nh); ok {
		if n.Name == in.Self.Name {
			return unroutable("next hop is this node")
		}
		if n.Site == in.Self.Site && n.LANAddr.IsValid() && in.Self.LANAddr.IsValid() &&
			in.LANDev != "" && pl.lanMTU > 0 && pl.lanPrefix.Contains(n.LANAddr) && in.LANUp(n.LANAddr) {
			return plannedHop{NextHop: NextHop{Gateway: n.LANAddr, Device: in.LANDev}, kind: PathLAN, mtu: pl.lanMTU, peer: n.Name}
		}
		if in.Check != nil {
			if why := in.Check(p, nh); why != "" {
				return unroutable(why)
			}
		}
		return overlayHop(PathOverlay, n.Name)
	}
	if pl.lanPrefix.IsValid() && pl.lanPrefix.Contains(nh) && in.LANDev != "" {
		return plannedHop{NextHop: NextHop{Gateway: nh, Device: in.LANDev}, kind: PathExternal, mtu: pl.lanMTU, peer: nh.String()}
	}
	if in.State.Networks.Overlay.Contains(nh) {
		return overlayHop(PathExternal, nh.String())
	}
	return unroutable("next hop " + nh.String() + " is neither a node nor on a connected network")
}
