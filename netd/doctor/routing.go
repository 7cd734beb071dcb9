package doctor

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ducksnest/netd/netd/routes/nl"
)

// tailscaleTable is tailscaled's routing table (--accept-routes), looked up
// by its rule at priority 5270.
const tailscaleTable = 52

// routingCheck: netd's rule is there and ahead of tailscaled's, and netd's
// table holds netd's routes.
type routingCheck struct{}

func (routingCheck) Name() string { return "routing" }

func (routingCheck) Run(ctx context.Context, in *Input) []Finding {
	rt := in.State.Routing
	k := in.Host.Kernel
	rules, err := k.ListRules(ctx)
	if err != nil {
		return []Finding{{ID: "rule", Result: Fail, Summary: "cannot list the ip rules", Evidence: []string{err.Error()}}}
	}
	var out []Finding
	ruleID := fmt.Sprintf("rule:%d", rt.RulePriority)
	want := fmt.Sprintf("priority %d lookup %d (spec.routing.rulePriority, table)", rt.RulePriority, rt.Table)
	found := slices.ContainsFunc(rules, func(r nl.Rule) bool {
		return r.Priority == rt.RulePriority && r.Table == rt.Table && !r.Selectors
	})
	var ts []nl.Rule
	for _, r := range rules {
		if r.Table == tailscaleTable {
			ts = append(ts, r)
		}
	}
	ev := []string{"want: " + want}
	for _, r := range rules {
		if r.Table == rt.Table || r.Table == tailscaleTable {
			ev = append(ev, "rule: "+ruleText(r))
		}
	}
	switch {
	case !found:
		out = append(out, Finding{ID: ruleID, Result: Fail, Summary: "netd's rule is missing", Evidence: ev,
			Why: "without it the kernel never looks in netd's table: pod traffic follows tailscaled's table 52 or the main table, the direct LAN path is never taken",
			Fix: "systemctl restart netd (it adds the rule at start); check its log for rule errors"})
	default:
		var ahead []string
		for _, r := range ts {
			if r.Priority <= rt.RulePriority {
				ahead = append(ahead, ruleText(r))
			}
		}
		if len(ahead) > 0 {
			out = append(out, Finding{ID: ruleID, Result: Fail, Summary: "tailscaled's table 52 is consulted before netd's", Evidence: ev,
				Why: "table 52 holds the peers' pod blocks via tailscale0; looked up first, it wins over netd's routes, so the LAN path and netd's MTU are never used",
				Fix: fmt.Sprintf("delete the extra rule (`ip rule del %s`), or move netd's rule: spec.routing.rulePriority below %d", strings.TrimPrefix(ahead[0], "ip rule "), minPriority(ts))})
		} else {
			out = append(out, pass(ruleID, fmt.Sprintf("netd's rule %d lookup %d is ahead of tailscaled's", rt.RulePriority, rt.Table), ev...))
		}
	}
	routes, err := k.ListRoutes(ctx, rt.Table)
	if err != nil {
		return append(out, Finding{ID: fmt.Sprintf("table:%d", rt.Table), Result: Fail, Summary: "cannot list netd's table", Evidence: []string{err.Error()}})
	}
	var ours int
	var foreign []string
	for _, r := range routes {
		if r.Protocol == rt.Protocol {
			ours++
			continue
		}
		foreign = append(foreign, r.Format(linkNamer(ctx, k)))
	}
	tid := fmt.Sprintf("table:%d", rt.Table)
	tev := []string{fmt.Sprintf("table %d: %d routes with protocol %d (netd's), %d with another protocol", rt.Table, ours, rt.Protocol, len(foreign))}
	switch {
	case len(foreign) > 0:
		out = append(out, Finding{ID: tid, Result: Warn, Summary: fmt.Sprintf("%d routes in netd's table %d are not netd's", len(foreign), rt.Table),
			Evidence: append(tev, foreign...),
			Why:      "netd prunes only routes with its own protocol: these stay, and win for their prefixes over the main table and tailscaled's table 52",
			Fix:      fmt.Sprintf("remove them (`ip route del <prefix> table %d`) or give netd a table nobody else uses (spec.routing.table)", rt.Table)})
	case ours == 0 && len(nodePeers(in.Node)) > 0:
		out = append(out, Finding{ID: tid, Result: Warn, Summary: fmt.Sprintf("netd's table %d is empty", rt.Table), Evidence: tev,
			Why: "no pod block of another node is routed by netd: BGP has not learned any (see the netd status check)",
			Fix: "netd status"})
	default:
		out = append(out, pass(tid, fmt.Sprintf("table %d holds %d netd routes (protocol %d) and nothing else", rt.Table, ours, rt.Protocol), tev...))
	}
	return out
}

// ruleText is the rule as `ip rule` would say it, without trailing space.
func ruleText(r nl.Rule) string { return strings.TrimSpace(r.String()) }

func minPriority(rs []nl.Rule) int {
	m := 1 << 31
	for _, r := range rs {
		m = min(m, r.Priority)
	}
	return m
}

func linkNamer(ctx context.Context, k Kernel) func(int) string {
	return func(i int) string {
		n, err := k.LinkName(ctx, i)
		if err != nil {
			return fmt.Sprint(i)
		}
		return n
	}
}

// shadowCheck: no route outside netd's table takes traffic for the pod
// blocks netd routes, and netd's table takes none for the local pods.
type shadowCheck struct{}

func (shadowCheck) Name() string { return "shadow" }

func (shadowCheck) Run(ctx context.Context, in *Input) []Finding {
	rt := in.State.Routing
	k := in.Host.Kernel
	fail := func(id string, err error) []Finding {
		return []Finding{{ID: id, Result: Fail, Summary: "cannot read the routing state", Evidence: []string{err.Error()}}}
	}
	rules, err := k.ListRules(ctx)
	if err != nil {
		return fail("earlier-tables", err)
	}
	own, err := k.ListRoutes(ctx, rt.Table)
	if err != nil {
		return fail("earlier-tables", err)
	}
	// The blocks netd routes (or should): its routes, and the other
	// nodes' static blocks of the policy.
	blocks := otherBlocks(in.State, in.Node.Name)
	for _, r := range own {
		if r.Protocol == rt.Protocol {
			if _, ok := blocks[r.Dst]; !ok {
				blocks[r.Dst] = "learned"
			}
		}
	}
	name := linkNamer(ctx, k)
	overlapping := func(table int) ([]string, error) {
		rs, err := k.ListRoutes(ctx, table)
		if err != nil {
			return nil, err
		}
		var hits []string
		for _, r := range rs {
			if r.Type == unix.RTN_THROW || (table == rt.Table && r.Protocol == rt.Protocol) {
				continue
			}
			for b, owner := range blocks {
				if r.Dst.Overlaps(b) {
					hits = append(hits, fmt.Sprintf("%s (overlaps %s of %s)", r.Format(name), b, owner))
				}
			}
		}
		slices.Sort(hits)
		return slices.Compact(hits), nil
	}
	var out []Finding
	// Tables looked up before netd's rule.
	var hard, soft, ev []string
	seen := map[int]bool{}
	for _, r := range rules {
		if r.Priority >= rt.RulePriority || r.Table == 0 || seen[r.Table] {
			continue
		}
		seen[r.Table] = true
		hits, err := overlapping(r.Table)
		if err != nil {
			return fail("earlier-tables", err)
		}
		ev = append(ev, fmt.Sprintf("%s: %d routes over pod blocks", ruleText(r), len(hits)))
		for _, h := range hits {
			if r.Selectors {
				soft = append(soft, h+" (only for packets matching: "+ruleText(r)+")")
			} else {
				hard = append(hard, h)
			}
		}
	}
	switch {
	case len(hard) > 0:
		out = append(out, Finding{ID: "earlier-tables", Result: Fail, Summary: fmt.Sprintf("%d routes in tables looked up before netd's take pod traffic", len(hard)),
			Evidence: append(ev, hard...),
			Why:      fmt.Sprintf("the kernel stops at the first table with a matching route: these routes win over netd's table %d (rule %d) for the blocks they overlap", rt.Table, rt.RulePriority),
			Fix:      "delete them (ip route del <prefix> table <t>) or the rule that makes their table come first"})
	case len(soft) > 0:
		out = append(out, Finding{ID: "earlier-tables", Result: Warn, Summary: "routes over pod blocks in tables that marked packets look up before netd's", Evidence: append(ev, soft...),
			Why: "packets carrying a matching firewall mark skip netd's routes (see the fwmark check for who sets marks)",
			Fix: "delete the routes, or make sure no pod packet carries the mark"})
	default:
		out = append(out, pass("earlier-tables", fmt.Sprintf("no route in a table looked up before rule %d overlaps a pod block (%d blocks)", rt.RulePriority, len(blocks)), ev...))
	}
	// The main table, after netd's: a fallback whenever netd has no route.
	hits, err := overlapping(unix.RT_TABLE_MAIN)
	if err != nil {
		return fail("main", err)
	}
	if len(hits) > 0 {
		out = append(out, Finding{ID: "main", Result: Warn, Summary: fmt.Sprintf("%d routes in the main table overlap other nodes' pod blocks", len(hits)), Evidence: hits,
			Why: "they do not win while netd routes the block, but take its traffic the moment netd withdraws it (peer down, netd stopped): traffic then goes where a stale route points instead of failing over to tailscaled's table 52",
			Fix: "remove them (ip route del <prefix>); if another BGP speaker (Calico's BIRD, kube-router) installs them, turn it off"})
	} else {
		out = append(out, pass("main", "no route in the main table overlaps another node's pod block"))
	}
	// netd's table must not cover this node's own pods.
	pods, err := podAddrs(ctx, k)
	if err != nil {
		return append(out, fail("local-pods", err)...)
	}
	local := slices.Clone(in.Node.PodCIDRs)
	for _, as := range pods {
		for _, a := range as {
			local = append(local, netip.PrefixFrom(a, 32))
		}
	}
	var cover []string
	for _, r := range own {
		for _, p := range local {
			if r.Dst.Overlaps(p) {
				cover = append(cover, fmt.Sprintf("%s covers local %s", r.Format(name), p))
			}
		}
	}
	if len(cover) > 0 {
		out = append(out, Finding{ID: "local-pods", Result: Fail, Summary: "netd's table holds routes over this node's own pods", Evidence: cover,
			Why: fmt.Sprintf("rule %d sends the local pods' traffic out of the node before the main table's per-pod routes are looked at", rt.RulePriority),
			Fix: "find the peer that announces it (netd status: learned routes) and fix its blocks or the import filter in the policy"})
	} else {
		out = append(out, pass("local-pods", fmt.Sprintf("netd's table covers none of this node's %d pod blocks and %d local pods", len(in.Node.PodCIDRs), len(local)-len(in.Node.PodCIDRs))))
	}
	return out
}
