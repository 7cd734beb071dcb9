package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strconv"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/ducksnest/netd/policy/desired"
)

const (
	importPolicyName = "netd-import"
	exportPolicyName = "netd-export"
	ownSetName       = "own"
)

// policyModel is everything the GoBGP import and export policies are built
// from; two equal models give the same policies.
type policyModel struct {
	own   []netip.Prefix // the node's own blocks (exported to ExportOwnBlocks peers)
	rr    bool           // this node reflects for its clients
	peers []peerPolicy   // in cfg.Peers order
}

type peerPolicy struct {
	addr      netip.Addr
	exportOwn bool
	export    []netip.Prefix
	rrClient  bool
	rules     []rule         // the import filter's enforced rules
	over      []netip.Prefix // allowed but over MaxPrefixes: rejected
}

func (m policyModel) equal(o policyModel) bool { return reflect.DeepEqual(m, o) }

// request renders the model as GoBGP policies. Import: our own local paths,
// then per peer a reject for prefixes over its limit and its import
// filter's rules in order, one statement per range of a rule (one prefix
// set per range: GoBGP matches a prefix set by longest match, so
// overlapping ranges in one set would not be an OR); default reject. Export: per peer our own blocks (local paths only), its explicit
// exports, and, on a route reflector, internal routes to its clients;
// default reject, so learned routes never leak.
func (m policyModel) request() *api.SetPoliciesRequest {
	var sets []*api.DefinedSet
	var imp, exp []*api.Statement
	prefixSet := func(name string, rs []*api.Prefix) {
		sets = append(sets, &api.DefinedSet{DefinedType: api.DefinedType_PREFIX, Name: name, Prefixes: rs})
	}
	exact := func(ps []netip.Prefix) []*api.Prefix {
		out := make([]*api.Prefix, 0, len(ps))
		for _, p := range ps {
			out = append(out, &api.Prefix{IpPrefix: p.String(), MaskLengthMin: uint32(p.Bits()), MaskLengthMax: uint32(p.Bits())})
		}
		return out
	}
	match := func(name string) *api.MatchSet { return &api.MatchSet{Type: api.MatchSet_ANY, Name: name} }
	stmt := func(name string, c *api.Conditions, a api.RouteAction) *api.Statement {
		return &api.Statement{Name: name, Conditions: c, Actions: &api.Actions{RouteAction: a}}
	}

	imp = append(imp, stmt("import-local", &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL}, api.RouteAction_ACCEPT))
	if len(m.own) > 0 {
		prefixSet(ownSetName, exact(m.own))
	}
	for i, p := range m.peers {
		id := strconv.Itoa(i)
		nb := "nb-" + id
		sets = append(sets, &api.DefinedSet{DefinedType: api.DefinedType_NEIGHBOR, Name: nb, List: []string{netip.PrefixFrom(p.addr, p.addr.BitLen()).String()}})
		if len(p.over) > 0 {
			prefixSet("over-"+id, exact(p.over))
			imp = append(imp, stmt("import-over-"+id, &api.Conditions{NeighborSet: match(nb), PrefixSet: match("over-" + id)}, api.RouteAction_REJECT))
		}
		for j, r := range p.rules {
			action := api.RouteAction_ACCEPT
			if r.reason != "" {
				action = api.RouteAction_REJECT
			}
			cond := func(set string) *api.Conditions {
				c := &api.Conditions{NeighborSet: match(nb), PrefixSet: match(set)}
				if r.nextHop.IsValid() {
					c.NextHopInList = []string{r.nextHop.String()}
				}
				return c
			}
			for k, pr := range r.ranges {
				name := fmt.Sprintf("import-%d-%d-%d", i, j, k)
				prefixSet(name, []*api.Prefix{{IpPrefix: pr.Prefix.String(), MaskLengthMin: uint32(pr.MinLen), MaskLengthMax: uint32(pr.MaxLen)}})
				imp = append(imp, stmt(name, cond(name), action))
			}
			if len(r.reaches) > 0 {
				name := fmt.Sprintf("import-%d-%d-reach", i, j)
				prefixSet(name, reachSet(r.reaches))
				imp = append(imp, stmt(name, cond(name), action))
			}
		}
		if p.exportOwn && len(m.own) > 0 {
			exp = append(exp, stmt("export-own-"+id, &api.Conditions{NeighborSet: match(nb), PrefixSet: match(ownSetName), RouteType: api.Conditions_ROUTE_TYPE_LOCAL}, api.RouteAction_ACCEPT))
		}
		if len(p.export) > 0 {
			prefixSet("export-"+id, exact(p.export))
			exp = append(exp, stmt("export-"+id, &api.Conditions{NeighborSet: match(nb), PrefixSet: match("export-" + id), RouteType: api.Conditions_ROUTE_TYPE_LOCAL}, api.RouteAction_ACCEPT))
		}
		if m.rr && p.rrClient {
			exp = append(exp, stmt("export-reflect-"+id, &api.Conditions{NeighborSet: match(nb), RouteType: api.Conditions_ROUTE_TYPE_INTERNAL}, api.RouteAction_ACCEPT))
		}
	}
	pols := []*api.Policy{{Name: importPolicyName, Statements: imp}, {Name: exportPolicyName, Statements: exp}}
	return &api.SetPoliciesRequest{DefinedSets: sets, Policies: pols}
}

// reachSet renders "reaches one of rs" (desired.ReservedRange.Reaches) as
// one GoBGP prefix set. GoBGP matches a prefix set by longest match: it
// takes the longest entry prefix that contains the path's prefix and
// checks the length ranges stored under it. For one range R of length b
// the set holds R's covering prefixes R/l (l < b), each for length l
// only, and R itself for lengths b..32: a path covering R finds itself,
// one inside R finds R, any other finds a covering entry of another
// length. Ranges inside another are dropped first (reaching the inner one
// implies reaching the outer one), so the rest are disjoint and no entry
// of one range can hide an entry of another. The default route matches
// only itself. TestImportPolicyMatchesClassify checks this against GoBGP.
func reachSet(rs []desired.ReservedRange) []*api.Prefix {
	var ps []netip.Prefix
	def := false
	for _, r := range rs {
		if r.Prefix.Bits() == 0 {
			def = true
		} else {
			ps = append(ps, r.Prefix.Masked())
		}
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int { return a.Bits() - b.Bits() })
	var outer []netip.Prefix
	for _, p := range ps {
		if !slices.ContainsFunc(outer, func(o netip.Prefix) bool { return o.Contains(p.Addr()) }) {
			outer = append(outer, p)
		}
	}
	type entry struct {
		p      netip.Prefix
		lo, hi int
	}
	seen := map[entry]bool{}
	var out []*api.Prefix
	add := func(e entry) {
		if !seen[e] {
			seen[e] = true
			out = append(out, &api.Prefix{IpPrefix: e.p.String(), MaskLengthMin: uint32(e.lo), MaskLengthMax: uint32(e.hi)})
		}
	}
	if def {
		add(entry{netip.PrefixFrom(netip.IPv4Unspecified(), 0), 0, 0})
	}
	for _, p := range outer {
		for l := range p.Bits() {
			c, _ := p.Addr().Prefix(l)
			add(entry{c, l, l})
		}
		add(entry{p, p.Bits(), 32})
	}
	return out
}

// applyPolicy installs the model's policies, assigns them to the global
// RIB with default reject (SetPolicies keeps existing assignments; the
// names never change), and re-evaluates what was already received and
// advertised (soft reset in and out), so that changed import ranges apply
// to paths already in the Adj-RIB-In.
func (s *Speaker) applyPolicy(ctx context.Context, m policyModel) error {
	req := m.request()
	if err := s.srv.SetPolicies(ctx, req); err != nil {
		return fmt.Errorf("setting policies: %w", err)
	}
	for _, p := range req.Policies {
		dir := api.PolicyDirection_IMPORT
		if p.Name == exportPolicyName {
			dir = api.PolicyDirection_EXPORT
		}
		if err := s.srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
			Name: "global", Direction: dir, DefaultAction: api.RouteAction_REJECT,
			Policies: []*api.Policy{{Name: p.Name}},
		}}); err != nil {
			return fmt.Errorf("assigning policy %s: %w", p.Name, err)
		}
	}
	s.mutations.Add(1)
	if len(m.peers) == 0 {
		return nil
	}
	if err := s.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: "all", Soft: true, Direction: api.ResetPeerRequest_BOTH}); err != nil {
		return fmt.Errorf("soft reset after policy change: %w", err)
	}
	return nil
}
