package doctor

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ducksnest/netd/netd/routes/nl"
)

// ProcSysctl reads sysctls from /proc/sys (Root, for tests: another
// directory laid out the same way). In a network namespace it reads that
// namespace's values.
type ProcSysctl struct{ Root string }

// Get implements Sysctl.
func (p ProcSysctl) Get(name string) (string, error) {
	root := p.Root
	if root == "" {
		root = "/proc/sys"
	}
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		return "", fmt.Errorf("reading sysctl %s: %w", strings.ReplaceAll(name, "/", "."), err)
	}
	return strings.TrimSpace(string(b)), nil
}

// sysctlCheck: ip_forward on; no strict reverse-path filter where the
// pod paths are asymmetric.
type sysctlCheck struct{}

func (sysctlCheck) Name() string { return "sysctl" }

const nixosSysctl = `NixOS: boot.kernel.sysctl."%s" = %s; (nixos/profiles/common.nix sets it)`

func (sysctlCheck) Run(ctx context.Context, in *Input) []Finding {
	h := in.Host
	var out []Finding
	v, err := h.Sysctl.Get("net/ipv4/ip_forward")
	switch {
	case err != nil:
		out = append(out, Finding{ID: "ip_forward", Result: Fail, Summary: "cannot read net.ipv4.ip_forward", Evidence: []string{err.Error()}})
	case v == "1":
		out = append(out, pass("ip_forward", "net.ipv4.ip_forward = 1", "net.ipv4.ip_forward = 1"))
	default:
		out = append(out, Finding{ID: "ip_forward", Result: Fail, Summary: "IPv4 forwarding is off",
			Evidence: []string{"net.ipv4.ip_forward = " + v},
			Why:      "pod traffic is routed through the node (from the pods' veths to the overlay and the LAN and back); with forwarding off the node drops every packet not addressed to itself",
			Fix:      "sysctl -w net.ipv4.ip_forward=1\n" + fmt.Sprintf(nixosSysctl, "net.ipv4.ip_forward", "1")})
	}
	all, err := h.Sysctl.Get("net/ipv4/conf/all/rp_filter")
	if err != nil {
		return append(out, Finding{ID: "rp_filter", Result: Fail, Summary: "cannot read net.ipv4.conf.all.rp_filter", Evidence: []string{err.Error()}})
	}
	links, err := h.Kernel.Links(ctx)
	if err != nil {
		return append(out, Finding{ID: "rp_filter", Result: Fail, Summary: "cannot list the devices", Evidence: []string{err.Error()}})
	}
	names := map[string]bool{}
	var pods []string
	for _, l := range links {
		names[l.Name] = true
		if strings.HasPrefix(l.Name, "cali") {
			pods = append(pods, l.Name)
		}
	}
	slices.Sort(pods)
	read := func(dev string) (int, string, error) {
		v, err := h.Sysctl.Get("net/ipv4/conf/" + dev + "/rp_filter")
		if err != nil {
			return 0, "", err
		}
		a, _ := strconv.Atoi(all)
		d, _ := strconv.Atoi(v)
		return max(a, d), fmt.Sprintf("net.ipv4.conf.%s.rp_filter = %s, conf.all = %s: effective %s", dev, v, all, rpName(max(a, d))), nil
	}
	asym := func(role, dev string) Finding {
		id := "rp_filter:" + dev
		if !names[dev] {
			return Finding{ID: id, Result: Warn, Summary: fmt.Sprintf("the %s device %s does not exist", role, dev),
				Fix: "check the policy's interface names against `ip link`"}
		}
		eff, ev, err := read(dev)
		if err != nil {
			return Finding{ID: id, Result: Fail, Summary: "cannot read rp_filter of " + dev, Evidence: []string{err.Error()}}
		}
		if eff != 1 {
			return pass(id, fmt.Sprintf("reverse-path filter on the %s device %s is %s", role, dev, rpName(eff)), ev)
		}
		return Finding{ID: id, Result: Fail, Summary: fmt.Sprintf("strict reverse-path filter on the %s device %s", role, dev),
			Evidence: []string{ev},
			Why: "pod paths between nodes are asymmetric by design: a reply from a pod on another node can arrive on tailscale0 while this node " +
				"routes that pod's block over the LAN (each node's LAN prober decides alone), or through tailscaled's table 52 while netd's table 244 " +
				"points elsewhere; strict rp_filter (1) drops every packet whose source is not routed back out of the device it came in on",
			Fix: fmt.Sprintf("sysctl -w net.ipv4.conf.%s.rp_filter=2 net.ipv4.conf.all.rp_filter=2 (loose; the effective value is max(all, device))\n", dev) +
				fmt.Sprintf(nixosSysctl, "net.ipv4.conf.all.rp_filter", "2") + `, networking.firewall.checkReversePath = "loose"`}
	}
	out = append(out, asym("overlay", in.State.Overlay.Interface))
	if lan, ok := lanDevice(ctx, in); ok {
		out = append(out, asym("LAN", lan))
	}
	out = append(out, podRPFilter(ctx, in, pods, read))
	return out
}

// podRPFilter: strict is what Felix sets on workload interfaces (it stops a
// pod from spoofing its source); it is harmless as long as every pod's
// address routes back through its own veth.
func podRPFilter(ctx context.Context, in *Input, pods []string, read func(string) (int, string, error)) Finding {
	const id = "rp_filter:pods"
	if len(pods) == 0 {
		return pass(id, "no pod interfaces (cali*) on this node")
	}
	var ev, bad []string
	strict := 0
	addrs, err := podAddrs(ctx, in.Host.Kernel)
	if err != nil {
		return Finding{ID: id, Result: Fail, Summary: "cannot read the pod routes", Evidence: []string{err.Error()}}
	}
	for _, dev := range pods {
		eff, e, err := read(dev)
		if err != nil {
			ev = append(ev, err.Error())
			continue
		}
		if eff != 1 {
			continue
		}
		strict++
		ev = append(ev, e)
		for _, a := range addrs[dev] {
			lk, err := in.Host.Kernel.RouteGet(ctx, nl.RouteQuery{Dst: a})
			switch {
			case err != nil:
				bad = append(bad, fmt.Sprintf("route get %s: %v", a, err))
			case lk.Device != dev:
				bad = append(bad, fmt.Sprintf("pod %s on %s: its address routes via %s (table %d), not its veth", a, dev, lk.Device, lk.Table))
			}
		}
	}
	if len(bad) > 0 {
		return Finding{ID: id, Result: Fail, Summary: "strict rp_filter on pod interfaces whose pods' addresses route elsewhere",
			Evidence: append(ev, bad...),
			Why:      "with strict rp_filter the kernel drops a pod's packets when the route back to the pod's address does not leave through the pod's own veth: a route in an earlier table (netd's, tailscaled's) that covers a local pod sends its traffic away and the pod goes dark",
			Fix:      "remove the covering route (see the shadow checks), or make rp_filter loose: " + fmt.Sprintf(nixosSysctl, "net.ipv4.conf.all.rp_filter", "2")}
	}
	summary := fmt.Sprintf("%d pod interfaces, none strict", len(pods))
	if strict > 0 {
		summary = fmt.Sprintf("%d of %d pod interfaces strict (Felix's anti-spoofing), every pod address routes back through its veth", strict, len(pods))
	}
	return pass(id, summary, ev...)
}

func rpName(v int) string {
	switch v {
	case 0:
		return "off (0)"
	case 1:
		return "strict (1)"
	case 2:
		return "loose (2)"
	}
	return strconv.Itoa(v)
}

// lanDevice is the node's LAN device: the policy's interface, else the
// device holding the node's LAN address.
func lanDevice(ctx context.Context, in *Input) (string, bool) {
	if !in.Node.LANAddr.IsValid() {
		return "", false
	}
	for _, l := range in.State.Networks.LANs {
		if l.Name == in.Node.LAN && l.Interface != "" {
			return l.Interface, true
		}
	}
	dev, err := in.Host.Kernel.AddrDevice(ctx, in.Node.LANAddr)
	if err != nil {
		return "", false
	}
	return dev, true
}

// podAddrs maps each cali* device to the pod addresses routed to it in the
// main table (Calico's "<pod>/32 dev cali..." routes).
func podAddrs(ctx context.Context, k Kernel) (map[string][]netip.Addr, error) {
	rs, err := k.ListRoutes(ctx, unix.RT_TABLE_MAIN)
	if err != nil {
		return nil, err
	}
	out := map[string][]netip.Addr{}
	for _, r := range rs {
		if r.Dst.Bits() != 32 || len(r.NextHops) != 1 || r.NextHops[0].Gateway.IsValid() {
			continue
		}
		dev, err := k.LinkName(ctx, r.NextHops[0].LinkIndex)
		if err != nil || !strings.HasPrefix(dev, "cali") {
			continue
		}
		out[dev] = append(out[dev], r.Dst.Addr())
	}
	return out, nil
}

func itoa(i int) string { return strconv.Itoa(i) }
