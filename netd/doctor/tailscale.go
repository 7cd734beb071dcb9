package doctor

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"tailscale.com/types/views"
)

// tailscaleCheck: tailscaled's prefs as netd needs them (accept-routes,
// no SNAT) and this node's pod blocks advertised and approved.
type tailscaleCheck struct{}

func (tailscaleCheck) Name() string { return "tailscale" }

const nixosTailscale = "NixOS: services.tailscale.extraUpFlags (nixos/profiles/tailscale.nix) applies on the first `tailscale up` only; on a running node use `tailscale set`"

func (tailscaleCheck) Run(ctx context.Context, in *Input) []Finding {
	ts := in.Host.Tailscale
	if ts == nil {
		return []Finding{skip("prefs", "not checked: no tailscaled socket (--tailscale-socket)")}
	}
	prefs, err := ts.GetPrefs(ctx)
	if err != nil {
		return []Finding{{ID: "prefs", Result: Fail, Summary: "cannot read tailscaled's prefs", Evidence: []string{err.Error()},
			Fix: "systemctl status tailscaled; netd doctor --tailscale-socket PATH"}}
	}
	st, err := ts.Status(ctx)
	if err != nil {
		return []Finding{{ID: "prefs", Result: Fail, Summary: "cannot read tailscaled's status", Evidence: []string{err.Error()}}}
	}
	var out []Finding
	if st.BackendState != "Running" {
		out = append(out, Finding{ID: "state", Result: Fail, Summary: "tailscaled is " + st.BackendState, Evidence: []string{"BackendState " + st.BackendState},
			Fix: "tailscale up (or tailscale status for why)"})
	}
	if prefs.RouteAll {
		out = append(out, pass("accept-routes", "--accept-routes is on", "prefs RouteAll = true"))
	} else {
		out = append(out, Finding{ID: "accept-routes", Result: Fail, Summary: "--accept-routes is off", Evidence: []string{"prefs RouteAll = false"},
			Why: "without it tailscaled installs none of the peers' subnet routes and keeps their pod blocks out of the WireGuard allowed IPs: pod traffic to other nodes is dropped inside tailscale0",
			Fix: "tailscale set --accept-routes\n" + nixosTailscale})
	}
	if prefs.NoSNAT {
		out = append(out, pass("snat-subnet-routes", "--snat-subnet-routes=false", "prefs NoSNAT = true"))
	} else {
		out = append(out, Finding{ID: "snat-subnet-routes", Result: Fail, Summary: "tailscaled masquerades subnet-routed traffic (--snat-subnet-routes is on)", Evidence: []string{"prefs NoSNAT = false"},
			Why: "a packet from another node's pod arriving on tailscale0 leaves towards the local pod with this node's address as its source (ts-postrouting MASQUERADE on mark 0x40000): the pod sees the node, not the client pod, so Calico network policy by pod selector and client addresses in logs are wrong",
			Fix: "tailscale set --snat-subnet-routes=false\n" + nixosTailscale})
	}
	own, source := ownBlocks(ctx, in)
	pods := in.State.Networks.Pods
	var missing, foreign, user []netip.Prefix
	adv := prefs.AdvertiseRoutes
	for _, b := range own {
		if !slices.Contains(adv, b.Masked()) {
			missing = append(missing, b)
		}
	}
	for _, r := range adv {
		switch {
		case !pods.IsValid() || !pods.Overlaps(r) || r.Bits() < pods.Bits():
			user = append(user, r)
		case !slices.Contains(own, r):
			foreign = append(foreign, r)
		}
	}
	ev := []string{fmt.Sprintf("prefs AdvertiseRoutes = %v", adv), fmt.Sprintf("this node's pod blocks (%s) = %v", source, own)}
	if len(user) > 0 {
		ev = append(ev, fmt.Sprintf("outside the pod CIDR, kept as the user set them: %v", user))
	}
	switch {
	case len(missing)+len(foreign) > 0:
		out = append(out, Finding{ID: "advertised", Result: Fail, Summary: fmt.Sprintf("advertised routes differ from the pod blocks: missing %v, not this node's %v", missing, foreign), Evidence: ev,
			Why: "Tailscale forwards a destination only inside a route some peer advertises and has approved: a block not advertised is unreachable from other nodes; a pod route of another node advertised here draws its traffic to the wrong node",
			Fix: "netd run --tailscale-socket keeps them equal (services.netd.tailscaleSocket); by hand: tailscale set --advertise-routes=<blocks and user routes>"})
	default:
		out = append(out, pass("advertised", fmt.Sprintf("the %d pod blocks are advertised", len(own)), ev...))
	}
	served := map[netip.Prefix]bool{}
	if self := st.Self; self != nil {
		for _, p := range slices.Concat(prefixList(self.AllowedIPs), prefixList(self.PrimaryRoutes)) {
			served[p.Masked()] = true
		}
		ev = []string{fmt.Sprintf("self AllowedIPs = %v, PrimaryRoutes = %v", prefixList(self.AllowedIPs), prefixList(self.PrimaryRoutes))}
	}
	var unapproved []netip.Prefix
	for _, b := range own {
		if !served[b.Masked()] {
			unapproved = append(unapproved, b)
		}
	}
	if len(unapproved) > 0 {
		out = append(out, Finding{ID: "approved", Result: Fail, Summary: fmt.Sprintf("pod blocks not approved by the control server: %v", unapproved), Evidence: ev,
			Why: "an advertised route carries traffic only once the control server approves it; the peers drop traffic to these blocks (\"no matching peer\")",
			Fix: "apply the policy so its autoApprovers approve them (netd policy apply), or approve by hand: the admin console's Edit route settings, or headscale nodes approve-routes -i <id> -r <routes>"})
	} else {
		out = append(out, pass("approved", fmt.Sprintf("the control server serves all %d pod blocks", len(own)), ev...))
	}
	return out
}

// ownBlocks are this node's pod blocks: what the running netd advertises
// (from Calico IPAM or the policy), else the policy's static blocks.
func ownBlocks(ctx context.Context, in *Input) ([]netip.Prefix, string) {
	if in.Host.Netd != nil {
		if st, err := in.Host.Netd.Status(ctx); err == nil && st.Advertised != nil {
			return st.Advertised, "advertised by netd, from " + st.PodSource
		}
	}
	return in.Node.PodCIDRs, "the policy"
}

func prefixList(v *views.Slice[netip.Prefix]) []netip.Prefix {
	if v == nil {
		return nil
	}
	return v.AsSlice()
}
