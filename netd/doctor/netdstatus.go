package doctor

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/ducksnest/netd/policy/desired"
)

// netdCheck: the running netd has loaded this policy, its sessions are up
// (BGP and BFD), its routes are in the kernel as it wants them, and its
// optional parts report no error.
type netdCheck struct{}

func (netdCheck) Name() string { return "netd" }

func (netdCheck) Run(ctx context.Context, in *Input) []Finding {
	n := in.Host.Netd
	if n == nil {
		return []Finding{skip("status", "not checked: no --netd-socket")}
	}
	st, err := n.Status(ctx)
	if err != nil {
		return []Finding{{ID: "status", Result: Fail, Summary: "cannot read netd's status", Evidence: []string{err.Error()},
			Fix: "systemctl status netd; journalctl -u netd"}}
	}
	var out []Finding
	// The policy.
	pev := []string{fmt.Sprintf("netd runs %s (%s), loaded %s; --policy is %s", st.Policy.Path, shortDigest(st.Policy.Digest), st.Policy.LoadedAt.Format("2006-01-02 15:04:05"), shortDigest(in.State.Digest))}
	switch {
	case st.Policy.LastError != "":
		out = append(out, Finding{ID: "policy", Result: Fail, Summary: "netd rejected the last policy reload and runs the previous one", Evidence: append(pev, "last error: "+st.Policy.LastError),
			Fix: "netd policy check " + st.Policy.Path + "; fix the file, then systemctl reload netd"})
	case st.Policy.Digest != in.State.Digest:
		out = append(out, Finding{ID: "policy", Result: Warn, Summary: "netd runs a different policy than --policy", Evidence: pev,
			Fix: "point --policy at the file netd runs, or reload netd (systemctl reload netd)"})
	default:
		out = append(out, pass("policy", "netd runs this policy", pev...))
	}
	// BGP sessions: a node peer down is a failure (pod routes missing), an
	// external one a warning (the router does not learn the pod blocks).
	kinds := map[netip.Addr]desired.PeerKind{}
	for _, p := range in.Node.BGP.Peers {
		kinds[p.Address] = p.Kind
	}
	var down, extDown, ev []string
	established := map[netip.Addr]bool{}
	for _, p := range st.BGP.Peers {
		line := fmt.Sprintf("peer %s %s: %s", p.Name, p.Address, p.State)
		if p.LastError != "" {
			line += " (" + p.LastError + ")"
		}
		ev = append(ev, line)
		switch {
		case p.State == "established":
			established[p.Address] = true
		case kinds[p.Address] == desired.PeerExternal:
			extDown = append(extDown, p.Name)
		default:
			down = append(down, p.Name)
		}
	}
	switch {
	case len(down) > 0:
		out = append(out, Finding{ID: "bgp", Result: Fail, Summary: fmt.Sprintf("BGP sessions to nodes not established: %s", strings.Join(down, ", ")), Evidence: ev,
			Why: "their pod blocks are not learned (and ours not sent to them): traffic to those nodes' pods has no netd route",
			Fix: "check the peer (netd status there), the overlay path (tailscale ping <peer>), and the tailnet policy's BGP grant (TCP 179)"})
	case len(extDown) > 0:
		out = append(out, Finding{ID: "bgp", Result: Warn, Summary: fmt.Sprintf("BGP sessions to external peers not established: %s", strings.Join(extDown, ", ")), Evidence: ev,
			Why: "the external router does not learn the pod blocks: hosts behind it cannot reach pods directly (pod traffic between nodes is not affected)",
			Fix: "check the router's BGP configuration (neighbor = this node's overlay address, reached over the LAN) and its route to the overlay address"})
	default:
		out = append(out, pass("bgp", fmt.Sprintf("all %d BGP sessions established", len(st.BGP.Peers)), ev...))
	}
	// BFD sessions of established BGP peers (a session down with its BGP
	// peer is already reported).
	bfd, on, err := n.BFD(ctx)
	switch {
	case err != nil:
		out = append(out, Finding{ID: "bfd", Result: Warn, Summary: "cannot read netd's BFD state", Evidence: []string{err.Error()}})
	case !on:
		out = append(out, pass("bfd", "BFD is off (netd run --bfd=false)"))
	default:
		var bdown, bev []string
		for _, a := range slices.SortedFunc(maps.Keys(bfd), netip.Addr.Compare) {
			bev = append(bev, fmt.Sprintf("bfd %s: %s (bgp %s)", a, map[bool]string{true: "up", false: "down"}[bfd[a]], map[bool]string{true: "established", false: "not established"}[established[a]]))
			if !bfd[a] && established[a] {
				bdown = append(bdown, a.String())
			}
		}
		if len(bdown) > 0 {
			out = append(out, Finding{ID: "bfd", Result: Warn, Summary: "BFD down to BGP peers that are up: " + strings.Join(bdown, ", "), Evidence: bev,
				Why: "a silent peer is then noticed only when its BGP hold time runs out (seconds) instead of within a second",
				Fix: "let UDP 3784 through between the nodes' overlay addresses (tailnet policy and host firewall), and run netd with --bfd on the peer"})
		} else {
			out = append(out, pass("bfd", fmt.Sprintf("BFD is up to every established BGP peer (%d sessions)", len(bfd)), bev...))
		}
	}
	// Routes.
	d := st.Drift
	if d.Empty() {
		out = append(out, pass("routes", fmt.Sprintf("%d routes installed as wanted, no drift", len(st.Installed))))
	} else {
		var dev []string
		for _, r := range d.Missing {
			dev = append(dev, fmt.Sprintf("missing: %s %+v mtu %d", r.Dst, r.NextHops, r.MTU))
		}
		for _, r := range d.Extra {
			dev = append(dev, fmt.Sprintf("extra: %s %+v mtu %d", r.Dst, r.NextHops, r.MTU))
		}
		for _, c := range d.Different {
			dev = append(dev, fmt.Sprintf("different: %+v", c))
		}
		if d.RuleMissing {
			dev = append(dev, "netd's rule is missing")
		}
		out = append(out, Finding{ID: "routes", Result: Fail, Summary: "netd's routes in the kernel differ from what it wants", Evidence: dev,
			Why: "someone else changed netd's table, or netd cannot write it; it repairs drift at each resync, so lasting drift means a write fails",
			Fix: "journalctl -u netd (route errors), then netd status"})
	}
	var warn []string
	for _, u := range st.Unroutable {
		warn = append(warn, fmt.Sprintf("not installed: %s: %s", u.Prefix, u.Reason))
	}
	if t := st.Tailnet; t != nil && t.Error != "" {
		warn = append(warn, "tailnet: "+t.Error)
	}
	if c := st.Cluster; c != nil && c.Calico != nil && c.Calico.Error != "" {
		warn = append(warn, "calico: "+c.Calico.Error)
	}
	for _, r := range st.Reconcilers {
		if r.LastError != "" {
			warn = append(warn, fmt.Sprintf("reconciler %s: %s", r.Name, r.LastError))
		}
	}
	if len(warn) > 0 {
		out = append(out, Finding{ID: "errors", Result: Warn, Summary: fmt.Sprintf("netd reports %d problems", len(warn)), Evidence: warn, Fix: "netd status"})
	} else {
		out = append(out, pass("errors", "netd reports no unroutable block and no reconciler error"))
	}
	return out
}
