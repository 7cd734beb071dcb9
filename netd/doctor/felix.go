package doctor

import (
	"context"
	"fmt"
	"regexp"
	"strings"
)

// felixDefaultMarkMask is what Felix uses when iptablesMarkMask is unset.
const felixDefaultMarkMask uint32 = 0xffff0000

// felixCheck: the live FelixConfiguration "default" keeps Felix off the
// overlay device, sizes the pods' MTU from it and keeps its marks away from
// Tailscale's and kube-proxy's, as the compiled policy says.
type felixCheck struct{}

func (felixCheck) Name() string { return "felix" }

const felixFix = "netd policy apply FILE --kubeconfig K (or the leader netd with --sync-calico) writes the FelixConfiguration the policy compiles; by hand: kubectl patch felixconfiguration default --type merge -p '{\"spec\":{...}}'"

func (felixCheck) Run(ctx context.Context, in *Input) []Finding {
	c := in.Host.Cluster
	if c == nil {
		return []Finding{skip("config", "not checked: no kubeconfig (--kubeconfig, $NETD_KUBECONFIG, $KUBECONFIG or ~/.kube/config)")}
	}
	fc, source, err := c.Felix(ctx)
	if err != nil {
		return []Finding{{ID: "config", Result: Fail, Summary: "cannot read FelixConfiguration default", Evidence: []string{err.Error()},
			Why: "without it Felix runs on its defaults: the mark mask 0xffff0000 overlaps Tailscale's marks, tailscale0 is not excluded, the MTU is detected from the LAN device",
			Fix: felixFix}}
	}
	want := in.State.Calico.Felix
	dev := in.State.Overlay.Interface
	obj := "FelixConfiguration default (" + source + ")"
	var out []Finding

	excl := strOr(fc.InterfaceExclude, "kube-ipvs0")
	ev := []string{fmt.Sprintf("%s spec.interfaceExclude = %q%s; the policy compiles %q", obj, excl, unsetNote(fc.InterfaceExclude == nil), want.InterfaceExclude)}
	switch ok, err := felixExcludes(excl, dev); {
	case err != nil:
		out = append(out, Finding{ID: "interfaceExclude", Result: Fail, Summary: "Felix's interfaceExclude does not parse", Evidence: append(ev, err.Error()), Fix: felixFix})
	case !ok:
		out = append(out, Finding{ID: "interfaceExclude", Result: Fail, Summary: "Felix does not exclude " + dev, Evidence: ev,
			Why: "Felix then treats the overlay device as a host interface (auto host endpoints, address autodetection may pick the tailnet address), and Calico's rules for it compete with tailscaled's",
			Fix: felixFix})
	default:
		out = append(out, pass("interfaceExclude", "Felix excludes "+dev, ev...))
	}

	pat := strOr(fc.MTUIfacePattern, "")
	ev = []string{fmt.Sprintf("%s spec.mtuIfacePattern = %q%s; the policy compiles %q", obj, pat, unsetNote(fc.MTUIfacePattern == nil), want.MTUIfacePattern)}
	re, err := regexp.Compile(pat)
	switch {
	case fc.MTUIfacePattern == nil || err != nil || !re.MatchString(dev):
		out = append(out, Finding{ID: "mtuIfacePattern", Result: Fail, Summary: "Felix's MTU detection does not look at " + dev, Evidence: ev,
			Why: fmt.Sprintf("Felix sizes the pods' veths from the smallest MTU among the devices its pattern matches; not matching %s, pods get the LAN's (1500) or EC2's (9001) MTU, above the tunnel's %d, and large packets between nodes are lost", dev, in.State.Overlay.MTU),
			Fix: felixFix})
	case pat != want.MTUIfacePattern:
		out = append(out, Finding{ID: "mtuIfacePattern", Result: Warn, Summary: "Felix's MTU pattern matches " + dev + " but is not the policy's", Evidence: ev,
			Why: "it may match other devices too; Felix takes the smallest MTU of all of them", Fix: felixFix})
	default:
		out = append(out, pass("mtuIfacePattern", "Felix sizes the pods' MTU from "+dev, ev...))
	}

	mask := felixDefaultMarkMask
	if fc.IptablesMarkMask != nil {
		mask = *fc.IptablesMarkMask
	}
	ev = []string{fmt.Sprintf("%s spec.iptablesMarkMask = 0x%08x%s; the policy compiles 0x%08x", obj, mask, unsetNote(fc.IptablesMarkMask == nil), want.IptablesMarkMask)}
	switch {
	case mask&(tailscaleMarks|kubeProxyMarks) != 0:
		out = append(out, Finding{ID: "iptablesMarkMask", Result: Fail,
			Summary: fmt.Sprintf("Felix's mark mask 0x%08x overlaps Tailscale's 0x%08x or kube-proxy's 0x%08x marks", mask, tailscaleMarks, kubeProxyMarks), Evidence: ev,
			Why: "Felix allocates its accept, pass and scratch bits from the low end of the mask (0x10000, 0x20000, 0x40000, 0x80000 with the default): 0x40000 is tailscaled's subnet-route mark and 0x80000 its bypass mark, read by its ts-forward rules and by ip rules 5210-5250 ahead of netd's",
			Fix: felixFix})
	case mask != want.IptablesMarkMask:
		out = append(out, Finding{ID: "iptablesMarkMask", Result: Warn, Summary: fmt.Sprintf("Felix's mark mask 0x%08x overlaps no one's but is not the policy's 0x%08x", mask, want.IptablesMarkMask), Evidence: ev, Fix: felixFix})
	default:
		out = append(out, pass("iptablesMarkMask", fmt.Sprintf("Felix's mark mask 0x%08x avoids Tailscale's and kube-proxy's marks", mask), ev...))
	}
	return out
}

// felixExcludes reports whether Felix's interfaceExclude list (names, or
// /regexps/) matches dev.
func felixExcludes(list, dev string) (bool, error) {
	for item := range strings.SplitSeq(list, ",") {
		item = strings.TrimSpace(item)
		if len(item) > 1 && strings.HasPrefix(item, "/") && strings.HasSuffix(item, "/") {
			re, err := regexp.Compile(item[1 : len(item)-1])
			if err != nil {
				return false, fmt.Errorf("interfaceExclude item %q: %w", item, err)
			}
			if re.MatchString(dev) {
				return true, nil
			}
			continue
		}
		if item == dev {
			return true, nil
		}
	}
	return false, nil
}

func strOr(p *string, def string) string {
	if p == nil {
		return def
	}
	return *p
}

func unsetNote(unset bool) string {
	if unset {
		return " (unset: Felix's default)"
	}
	return ""
}
