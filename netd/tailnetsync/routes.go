package tailnetsync

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/ducksnest/netd/acl"
	"github.com/ducksnest/netd/policy/desired"
)

// RouteProblem is a node whose pod blocks the control server does not
// serve as approved subnet routes: Tailscale forwards pod traffic only to
// a destination inside an approved route, so these blocks are unreachable
// over the tailnet.
type RouteProblem struct {
	Node string `json:"node"`
	// NotOnTailnet: no tailnet node has the node's overlay address (or its
	// hostname).
	NotOnTailnet bool `json:"notOnTailnet,omitempty"`
	// NotAdvertised are blocks the node does not announce; Unapproved
	// blocks it announces that are not approved.
	NotAdvertised []netip.Prefix `json:"notAdvertised,omitempty"`
	Unapproved    []netip.Prefix `json:"unapproved,omitempty"`
}

func (p RouteProblem) String() string {
	if p.NotOnTailnet {
		return p.Node + ": not on the tailnet"
	}
	var parts []string
	if len(p.NotAdvertised) > 0 {
		parts = append(parts, fmt.Sprintf("not advertised %v", p.NotAdvertised))
	}
	if len(p.Unapproved) > 0 {
		parts = append(parts, fmt.Sprintf("not approved %v", p.Unapproved))
	}
	return p.Node + ": " + strings.Join(parts, ", ")
}

// blocks counts the pod blocks the problem leaves unserved.
func (p RouteProblem) blocks(own []netip.Prefix) int {
	if p.NotOnTailnet {
		return len(own)
	}
	return len(p.NotAdvertised) + len(p.Unapproved)
}

// CheckRoutes compares every policy node's pod blocks (blocks, by node
// name) with the routes the control server lists, and returns the nodes
// whose blocks are not all approved (sorted by node), and how many blocks
// that leaves unserved. A tailnet node is matched by the policy node's
// overlay address, else by its tailnet hostname.
func CheckRoutes(nodes []desired.Node, blocks map[string][]netip.Prefix, live []acl.NodeRoutes) ([]RouteProblem, int) {
	var out []RouteProblem
	unserved := 0
	for i := range nodes {
		n := &nodes[i]
		own := blocks[n.Name]
		if len(own) == 0 {
			continue
		}
		tn := findNode(n, live)
		p := RouteProblem{Node: n.Name, NotOnTailnet: tn == nil}
		if tn != nil {
			for _, b := range own {
				switch {
				case !covered(tn.Approved, b) && !covered(tn.Advertised, b):
					p.NotAdvertised = append(p.NotAdvertised, b)
				case !covered(tn.Approved, b):
					p.Unapproved = append(p.Unapproved, b)
				}
			}
		}
		if k := p.blocks(own); k > 0 {
			out = append(out, p)
			unserved += k
		}
	}
	slices.SortFunc(out, func(a, b RouteProblem) int { return strings.Compare(a.Node, b.Node) })
	return out, unserved
}

func findNode(n *desired.Node, live []acl.NodeRoutes) *acl.NodeRoutes {
	for i := range live {
		if n.OverlayAddr.IsValid() && slices.Contains(live[i].Addrs, n.OverlayAddr) {
			return &live[i]
		}
	}
	host := n.Tailscale.Hostname
	if host == "" {
		host = n.Name
	}
	for i := range live {
		if live[i].Name == host {
			return &live[i]
		}
	}
	return nil
}

// covered reports whether some route of rs contains all of b.
func covered(rs []netip.Prefix, b netip.Prefix) bool {
	for _, r := range rs {
		if r.Bits() <= b.Bits() && r.Contains(b.Addr()) {
			return true
		}
	}
	return false
}
