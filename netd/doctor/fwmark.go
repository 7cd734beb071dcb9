package doctor

import (
	"context"
	"fmt"
	"maps"
	"slices"
)

// The mark bits each component owns.
const (
	// tailscaleMarks: tailscaled's fwmark byte (linuxfw.TailscaleFwmarkMask):
	// 0x40000 marks subnet-routed packets from tailscale0 (ts-forward ACCEPTs
	// them, ts-postrouting masquerades them with SNAT on), 0x80000 is the
	// bypass mark of its own WireGuard sockets (ip rules 5210-5250 send
	// it to the main table, ahead of netd's rule).
	tailscaleMarks uint32 = 0xff0000
	// kubeProxyMarks: 0x4000 masquerade, 0x8000 drop (kube-proxy and the
	// kubelet's KUBE-MARK-MASQ / KUBE-MARK-DROP).
	kubeProxyMarks uint32 = 0xc000
)

var reserved = map[string]uint32{"tailscale": tailscaleMarks, "kube-proxy": kubeProxyMarks}

// fwmarkCheck: no two of Tailscale, Calico and kube-proxy touch the same
// packet-mark bits in the live rules.
type fwmarkCheck struct{}

func (fwmarkCheck) Name() string { return "fwmark" }

type markUse struct {
	write, read uint32
	rules       []string
}

func (fwmarkCheck) Run(ctx context.Context, in *Input) []Finding {
	rs, err := in.Host.Firewall.Rules(ctx)
	if err != nil {
		return []Finding{{ID: "overlap", Result: Warn, Summary: "cannot read the firewall", Evidence: []string{err.Error()},
			Fix: "run as root with iptables and nftables installed (Debian: apt install iptables nftables)"}}
	}
	uses := map[string]*markUse{}
	for _, r := range rs.Rules {
		if r.MarkWrite == 0 && r.MarkRead == 0 {
			continue
		}
		u := uses[r.Owner()]
		if u == nil {
			u = &markUse{}
			uses[r.Owner()] = u
		}
		u.write |= r.MarkWrite
		u.read |= r.MarkRead
		u.rules = append(u.rules, r.Text)
	}
	ev := append(slices.Clone(rs.Sources), prefixAll("could not read: ", rs.Errors)...)
	owners := slices.Sorted(maps.Keys(uses))
	for _, o := range owners {
		u := uses[o]
		ev = append(ev, fmt.Sprintf("%s: writes 0x%08x, matches 0x%08x (%d rules)", o, u.write, u.read, len(u.rules)))
	}
	var hard, soft []string
	for _, a := range owners {
		w := uses[a].write
		for _, b := range append(owners, "tailscale", "kube-proxy") {
			if a == b {
				continue
			}
			used := reserved[b]
			if u := uses[b]; u != nil {
				used |= u.write | u.read
			}
			if both := w & used; both != 0 {
				msg := fmt.Sprintf("%s writes mark bits 0x%08x that %s uses", a, both, b)
				if uses[b] == nil {
					msg += " (reserved by " + b + "; none of its rules are loaded here)"
				}
				msg += "; e.g. " + firstWriting(uses[a].rules, rs, a, both)
				if a == "other" || b == "other" {
					soft = append(soft, msg)
				} else {
					hard = append(hard, msg)
				}
			}
		}
	}
	slices.Sort(hard)
	hard = slices.Compact(hard)
	switch {
	case len(hard) > 0:
		return []Finding{{ID: "overlap", Result: Fail, Summary: "firewall mark bits overlap between Tailscale, Calico and kube-proxy", Evidence: append(ev, hard...),
			Why: "a mark bit written by one is read by another as its own: Felix's scratch/verdict bits in 0xff0000 make a pod packet look like one tailscaled " +
				"routed in from tailscale0 (0x40000: ts-forward ACCEPTs it before Calico's policy, SNAT masquerades it) or like tailscaled's own traffic " +
				"(0x80000: ip rule 5210 sends it to the main table, past netd's rule 5260); bits in 0xc000 make kube-proxy masquerade or drop it",
			Fix: fmt.Sprintf("keep Felix's iptablesMarkMask to 0x%08x as the policy compiles it (netd policy apply; or kubectl patch felixconfiguration default --type merge -p '{\"spec\":{\"iptablesMarkMask\":%d}}'), then restart calico-node so Felix rewrites its rules",
				in.State.Calico.Felix.IptablesMarkMask, in.State.Calico.Felix.IptablesMarkMask)}}
	case len(soft) > 0:
		return []Finding{{ID: "overlap", Result: Warn, Summary: "rules outside Tailscale, Calico and kube-proxy touch their mark bits", Evidence: append(ev, soft...),
			Fix: "check the rules named above (a host firewall, another CNI, a VPN) against the marks Tailscale (0xff0000), kube-proxy (0xc000) and Felix use"}}
	}
	return []Finding{pass("overlap", fmt.Sprintf("no mark bit is shared (%d rules touch marks)", countRules(uses)), ev...)}
}

func firstWriting(rules []string, rs *Ruleset, owner string, bits uint32) string {
	for _, r := range rs.Rules {
		if r.Owner() == owner && r.MarkWrite&bits != 0 {
			return r.Text
		}
	}
	if len(rules) > 0 {
		return rules[0]
	}
	return "?"
}

func countRules(uses map[string]*markUse) int {
	n := 0
	for _, u := range uses {
		n += len(u.rules)
	}
	return n
}

func prefixAll(p string, ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = p + s
	}
	return out
}
