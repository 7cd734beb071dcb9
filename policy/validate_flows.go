package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ducksnest/netd/policy/acldoc"
)

// flow is traffic between nodes that a feature the policy turns on needs,
// and which the tailnet policy must therefore allow.
type flow struct {
	what  string // "BGP", "BFD", "VXLAN"
	proto string
	port  int
	// path is where the feature is turned on, why names the failure if
	// the flow is refused, off says how to turn the feature off instead.
	path, why, off string
	// pairs are the [from, to] node indices (file order) that need it.
	pairs [][2]int
	// eitherWay: one direction of a pair is enough (BGP: both ends
	// connect, and the session that gets through carries both ways; BFD
	// sends from both ends, each a new flow, so it needs both).
	eitherWay bool
}

// flows checks that the tailnet policy as it will be pushed lets the nodes
// reach each other where netd's features need it: BGP between peers (one
// way is enough), BFD between peers both ways when it is on, VXLAN between
// all nodes when a pool uses it. With generation on the generated grants allow all of it, so this
// mostly catches a hand-written policy (spec.generate.disabled) that
// leaves a flow out, and a hand-written test that asserts such a flow is
// denied (Tailscale would refuse that policy once the flow is allowed).
// It asks the offline evaluator, node by node.
func (v *validator) flows() {
	if len(v.m.nodes) != len(v.f.Spec.Nodes) || len(v.m.nodes) < 2 {
		return
	}
	eps := make([]acldoc.Endpoint, len(v.m.nodes))
	for i, n := range v.f.Spec.Nodes {
		if !v.m.nodes[i].overlay.IsValid() {
			return // reported on the node
		}
		var tags []string
		for _, t := range n.Tailscale.Tags {
			if validTag(t) {
				tags = append(tags, t)
			}
		}
		if !v.f.Spec.Generate.Disabled && !slices.Contains(tags, v.m.nodeTag) {
			tags = append(tags, v.m.nodeTag)
		}
		eps[i] = acldoc.Endpoint{Tags: tags, Addr: v.m.nodes[i].overlay}
	}
	peers := v.peerPairs()
	want := []flow{{
		what: "BGP", proto: "tcp", port: v.m.bgpPort, path: "spec.bgp", pairs: peers, eitherWay: true,
		why: "the BGP sessions would never come up and no pod routes would be exchanged",
	}}
	if v.m.bfd {
		want = append(want, flow{
			what: "BFD", proto: "udp", port: acldoc.PortBFD, path: "spec.bgp.bfd.enabled", pairs: peers,
			why: "BFD would never come up, so a silent peer's routes would stay until the BGP hold time",
			off: "or turn BFD off: spec.bgp.bfd.enabled: false, and netd run --bfd=false",
		})
	}
	if i := v.m.vxlanPool; i >= 0 {
		var all [][2]int
		for a := range v.m.nodes {
			for b := range v.m.nodes {
				if a != b {
					all = append(all, [2]int{a, b})
				}
			}
		}
		want = append(want, flow{
			what: "VXLAN", proto: "udp", port: 4789, path: joinIndex("spec.calico.ipPools", i) + ".encapsulation", pairs: all,
			why: fmt.Sprintf("pod traffic of IP pool %q would be dropped between nodes", v.f.Spec.Calico.IPPools[i].Name),
			off: "or use encapsulation: None",
		})
	}
	ev := acldoc.NewEvaluator(&v.m.tailnet)
	for _, fl := range want {
		v.flowAllowed(ev, eps, fl)
		v.flowNotDenied(ev, eps, fl)
	}
}

// flowAllowed reports the node pairs the policy does not let through.
func (v *validator) flowAllowed(ev *acldoc.Evaluator, eps []acldoc.Endpoint, fl flow) {
	var refused []string
	allows := func(a, b int) bool {
		ok, _, err := ev.Allows(eps[a], eps[b], fl.proto, fl.port)
		return err == nil && ok
	}
	for _, p := range fl.pairs {
		switch {
		case !fl.eitherWay && !allows(p[0], p[1]):
			refused = append(refused, v.f.Spec.Nodes[p[0]].Name+" -> "+v.f.Spec.Nodes[p[1]].Name)
		case fl.eitherWay && p[0] < p[1] && !allows(p[0], p[1]) && !allows(p[1], p[0]):
			refused = append(refused, v.f.Spec.Nodes[p[0]].Name+" <-> "+v.f.Spec.Nodes[p[1]].Name)
		}
	}
	if len(refused) == 0 {
		return
	}
	sel := v.m.nodeTag
	if v.f.Spec.Generate.Disabled {
		sel = nodeSelectorHint(eps)
	}
	hint := fmt.Sprintf("add a grant {src: [%s], dst: [%s], ip: [\"%s:%d\"]} to spec.tailnet.grants", sel, sel, fl.proto, fl.port)
	if v.f.Spec.Generate.Disabled {
		hint = "spec.generate.disabled is set, so netd generates nothing: " + hint + " or turn generation back on"
	}
	if fl.off != "" {
		hint += "; " + fl.off
	}
	v.errorf(fl.path, hint, "%s is on but the tailnet policy does not allow %s/%d between the nodes (%s): %s",
		fl.what, fl.proto, fl.port, shortList(refused, 6), fl.why)
}

// flowNotDenied reports a test written in the file that asserts the flow
// is denied between two nodes that need it.
func (v *validator) flowNotDenied(ev *acldoc.Evaluator, eps []acldoc.Endpoint, fl flow) {
	pol := &v.m.tailnet
	for i, t := range pol.Tests {
		if GeneratedReason(pol, fmt.Sprintf("tests[%d]", i)) != "" {
			continue
		}
		if proto := strings.ToLower(t.Proto); proto != fl.proto && (proto != "" || fl.proto != "tcp") {
			continue
		}
		for j, d := range t.Deny {
			host, port, ok := acldoc.SplitHostPort(d)
			if !ok || port != strconv.Itoa(fl.port) {
				continue
			}
			if pair, hit := namedPair(ev, t.Src, host, eps, fl.pairs); hit {
				if ok, _, _ := ev.Allows(eps[pair[1]], eps[pair[0]], fl.proto, fl.port); fl.eitherWay && ok {
					continue // the session can come up from the other end
				}
				v.errorf(fmt.Sprintf("spec.tailnet.tests[%d].deny[%d]", i, j),
					fmt.Sprintf("remove %q from the test's deny list", d)+orOff(fl.off),
					"this test asserts that %s cannot reach %s on %s/%d, but %s needs it between %s and %s",
					t.Src, host, fl.proto, fl.port, fl.what, v.f.Spec.Nodes[pair[0]].Name, v.f.Spec.Nodes[pair[1]].Name)
			}
		}
	}
}

func orOff(off string) string {
	if off == "" {
		return ""
	}
	return "; " + off
}

// namedPair returns the first pair whose source src names and whose
// destination dst names.
func namedPair(ev *acldoc.Evaluator, src, dst string, eps []acldoc.Endpoint, pairs [][2]int) ([2]int, bool) {
	for _, p := range pairs {
		if ev.Names(src, eps[p[0]]) && ev.Names(dst, eps[p[1]]) {
			return p, true
		}
	}
	return [2]int{}, false
}

// peerPairs are the ordered (node, peer) pairs of the BGP sessions: every
// pair in a full mesh; with route reflectors, each client with each
// reflector and the reflectors with each other.
func (v *validator) peerPairs() [][2]int {
	rr := map[int]bool{}
	reflecting := v.f.Spec.BGP.Topology == "route-reflector"
	for _, n := range v.m.routeReflectors {
		rr[v.m.byName[n]] = true
	}
	var out [][2]int
	for a := range v.m.nodes {
		for b := range v.m.nodes {
			if a == b || reflecting && !rr[a] && !rr[b] {
				continue
			}
			out = append(out, [2]int{a, b})
		}
	}
	return out
}

// nodeSelectorHint names the nodes in a grant: the tag they all carry, or
// their addresses.
func nodeSelectorHint(eps []acldoc.Endpoint) string {
	for _, t := range eps[0].Tags {
		all := true
		for _, e := range eps[1:] {
			all = all && slices.Contains(e.Tags, t)
		}
		if all {
			return t
		}
	}
	addrs := make([]string, len(eps))
	for i, e := range eps {
		addrs[i] = e.Addr.String()
	}
	return strings.Join(addrs, ", ")
}

// shortList joins up to n items and says how many more there are.
func shortList(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:n], ", ") + fmt.Sprintf(" and %d more", len(items)-n)
}
