package doctor

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/ducksnest/netd/netd/routes/nl"
)

// cgnatRange is Tailscale's address range (tsaddr.CGNATRange).
var cgnatRange = netip.MustParsePrefix("100.64.0.0/10")

// cgnatCheck: tailscaled's ts-input chain drops packets from 100.64.0.0/10
// that arrive on any device but tailscale0. Pod (10.244.0.0/16) and LAN
// (192.168.0.0/24) sources never match it, so it drops none of the pod
// traffic of this design; what it can drop is a node's own tailnet-sourced
// traffic that reaches a peer on another device: BGP, BFD and the LAN
// prober bind the overlay address, so a route that sends a peer's overlay
// address over the LAN makes the peer drop all of them. It also breaks any
// cluster range placed inside 100.64.0.0/10.
type cgnatCheck struct{}

func (cgnatCheck) Name() string { return "cgnat" }

func (cgnatCheck) Run(ctx context.Context, in *Input) []Finding {
	overlay := in.State.Overlay.Interface
	var ev []string
	var drop []FWRule
	rs, err := in.Host.Firewall.Rules(ctx)
	if err != nil {
		ev = append(ev, "firewall not read: "+err.Error())
	} else {
		for _, r := range rs.Rules {
			if r.Chain == "ts-input" && r.Verdict == "DROP" && r.Src == cgnatRange && r.InNeg && r.InIface == overlay {
				drop = append(drop, r)
			}
		}
	}
	for _, r := range drop {
		ev = append(ev, "rule: "+r.Text)
	}
	if rs != nil && len(drop) == 0 {
		ev = append(ev, "no ts-input rule dropping 100.64.0.0/10 from other devices (tailscaled --netfilter-mode=off, or it is not running)")
	}
	// What the rule would drop: cluster ranges inside the CGNAT range,
	// and tailnet-sourced traffic to peers that does not leave through the
	// overlay.
	var bad []string
	nets := in.State.Networks
	ranges := map[string]netip.Prefix{"pod CIDR": nets.Pods, "service CIDR": nets.Services}
	for _, l := range nets.LANs {
		ranges["LAN "+l.Name] = l.Prefix
	}
	for what, p := range ranges {
		if p.IsValid() && p.Overlaps(cgnatRange) {
			bad = append(bad, fmt.Sprintf("the %s %s lies in 100.64.0.0/10: its packets arriving on any device but %s are dropped", what, p, overlay))
		}
	}
	for _, p := range nodePeers(in.Node) {
		lk, err := in.Host.Kernel.RouteGet(ctx, nl.RouteQuery{Dst: p.Address, Src: in.Node.OverlayAddr})
		if err != nil {
			ev = append(ev, fmt.Sprintf("route get %s from %s: %v", p.Address, in.Node.OverlayAddr, err))
			continue
		}
		line := fmt.Sprintf("route get %s from %s (%s): dev %s table %d%s", p.Address, in.Node.OverlayAddr, p.Name, lk.Device, lk.Table, via(lk.Gateway))
		ev = append(ev, line)
		if cgnatRange.Contains(p.Address) && lk.Device != overlay {
			bad = append(bad, fmt.Sprintf("traffic from %s to %s's overlay address %s leaves through %s, not %s: %s's tailscaled drops it on arrival (BGP, BFD)",
				in.Node.OverlayAddr, p.Name, p.Address, lk.Device, overlay, p.Name))
		}
	}
	slices.Sort(bad)
	if len(bad) > 0 {
		res := Fail
		return []Finding{{ID: "drop-rule", Result: res, Summary: "traffic the CGNAT drop rule of tailscaled (here or on the peers) discards", Evidence: append(ev, bad...),
			Why: "tailscaled (netfilter mode on, the default) drops every packet with a 100.64.0.0/10 source that does not arrive on " + overlay +
				"; netd's BGP and BFD sessions run between overlay addresses, so they must travel through " + overlay + " on both ends",
			Fix: "remove the route that sends a peer's overlay address elsewhere (ip route get <addr> shows it), and keep every cluster range out of 100.64.0.0/10"}}
	}
	summary := "no CGNAT drop rule here; no tailnet-sourced cluster traffic leaves outside " + overlay
	if len(drop) > 0 {
		summary = "tailscaled's CGNAT drop rule is present; it drops none of this design's traffic: pod and LAN sources are outside 100.64.0.0/10, and every peer's overlay address routes through " + overlay
	}
	return []Finding{pass("drop-rule", summary, ev...)}
}

func via(gw netip.Addr) string {
	if !gw.IsValid() {
		return ""
	}
	return " via " + gw.String()
}
