package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/ducksnest/netd/policy/desired"
)

// plan turns the desired state into a Lab (names and addresses only).
func plan(cfg Config) (*Lab, error) {
	st := cfg.State
	if st == nil {
		return nil, errors.New("lab config has no desired state")
	}
	l := &Lab{
		Name:       cfg.Name,
		StateDir:   cfg.StateDir,
		PolicyPath: filepath.Join(cfg.StateDir, policyFileName),
		Netd:       cfg.Netd,
		Created:    time.Now().UTC(),
		Overlay:    Link{Interface: def(st.Overlay.Interface, "tailscale0"), MTU: defInt(st.Overlay.MTU, 1280)},
		WAN:        cfg.Name + "-wan",
		PodCIDR:    st.Networks.Pods,
		Table:      defInt(st.Routing.Table, 244),
		Protocol:   defInt(st.Routing.Protocol, 244),
		Priority:   defInt(st.Routing.RulePriority, 5260),
	}
	podMTU := defInt(st.PodMTU, l.Overlay.MTU)
	for _, lan := range st.Networks.LANs {
		ns := cfg.Name + "-lan"
		if len(st.Networks.LANs) > 1 {
			ns += "-" + lan.Name
		}
		l.LANs = append(l.LANs, LAN{Name: lan.Name, NS: ns, Prefix: lan.Prefix, MTU: defInt(lan.MTU, 1500)})
		l.Namespaces = append(l.Namespaces, ns)
	}
	l.Namespaces = append(l.Namespaces, l.WAN)
	for _, dn := range st.Nodes {
		n := &Node{
			Name:        dn.Name,
			NS:          cfg.Name + "-" + dn.Name,
			Site:        dn.Site,
			OverlayAddr: dn.OverlayAddr,
			PodCIDRs:    slices.Clone(dn.PodCIDRs),
			Socket:      filepath.Join(cfg.StateDir, dn.Name+".sock"),
			Log:         filepath.Join(cfg.StateDir, dn.Name+".log"),
		}
		l.Namespaces = append(l.Namespaces, n.NS)
		if dn.LANAddr.IsValid() {
			lan, err := lanOf(st, dn)
			if err != nil {
				return nil, err
			}
			n.LANAddr, n.LAN = dn.LANAddr, lan.Name
			n.LANLink = Link{Interface: def(lan.Interface, "eth0"), MTU: defInt(lan.MTU, 1500)}
		}
		if len(dn.PodCIDRs) > 0 {
			block := dn.PodCIDRs[0]
			for i := range cfg.PodsPerNode + 1 {
				name, mtu, off := fmt.Sprintf("pod%d", i), podMTU, 10+i
				if i == cfg.PodsPerNode {
					name, mtu, off = "probe", 1500, 20
				}
				a := block.Addr()
				for range off {
					a = a.Next()
				}
				if !block.Contains(a) {
					return nil, fmt.Errorf("node %s: block %s too small for %d pods", dn.Name, block, cfg.PodsPerNode)
				}
				p := Pod{Name: name, NS: n.NS + "-" + name, Node: n.Name, Addr: a, MTU: mtu}
				p.HostVeth = "cali" + hash11(p.NS)
				l.Namespaces = append(l.Namespaces, p.NS)
				if i == cfg.PodsPerNode {
					n.Probe = &p
				} else {
					n.Pods = append(n.Pods, p)
				}
			}
		}
		l.Nodes = append(l.Nodes, n)
	}
	return l, nil
}

func lanOf(st *desired.State, n desired.Node) (desired.LAN, error) {
	for _, lan := range st.Networks.LANs {
		if lan.Name == n.LAN || (n.LAN == "" && lan.Prefix.Contains(n.LANAddr)) {
			return lan, nil
		}
	}
	return desired.LAN{}, fmt.Errorf("node %s: LAN %q of address %s is not in the policy", n.Name, n.LAN, n.LANAddr)
}

// hash11 is what Calico does for host veth names: 11 hex chars of a hash.
func hash11(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])[:11]
}

func def(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func defInt(v, d int) int {
	if v == 0 {
		return d
	}
	return v
}

// ifname makes a bridge-port name: at most 15 bytes.
func ifname(prefix string, i int, node string) string {
	s := fmt.Sprintf("%s%d-%s", prefix, i, node)
	if len(s) > 15 {
		s = s[:15]
	}
	return s
}

func (l *Lab) lan(name string) (LAN, bool) {
	for _, x := range l.LANs {
		if x.Name == name {
			return x, true
		}
	}
	return LAN{}, false
}

// create makes every namespace, link, address, route and sysctl.
func (l *Lab) create(ctx context.Context) error {
	for _, ns := range l.Namespaces {
		if err := addNS(ctx, ns); err != nil {
			return err
		}
		if err := withHandle(ns, func(h *netlink.Handle) error { return linkUp(h, "lo") }); err != nil {
			return err
		}
	}
	for _, lan := range l.LANs {
		if err := makeBridge(lan.NS, lan.MTU); err != nil {
			return err
		}
	}
	if err := makeBridge(l.WAN, l.Overlay.MTU); err != nil {
		return err
	}
	for i, n := range l.Nodes {
		if err := l.createNode(ctx, i, n); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	return nil
}

func makeBridge(ns string, mtu int) error {
	return withHandle(ns, func(h *netlink.Handle) error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0", MTU: mtu}}
		if err := h.LinkAdd(br); err != nil {
			return fmt.Errorf("adding bridge in %s: %w", ns, err)
		}
		return linkUp(h, "br0")
	})
}

func linkUp(h *netlink.Handle, name string) error {
	lk, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("finding %s: %w", name, err)
	}
	if err := h.LinkSetUp(lk); err != nil {
		return fmt.Errorf("setting %s up: %w", name, err)
	}
	return nil
}

func (l *Lab) createNode(ctx context.Context, i int, n *Node) error {
	// Defaults first so that every interface made afterwards inherits them.
	if err := sysctl(n.NS,
		"net.ipv4.ip_forward", "1",
		"net.ipv4.conf.all.rp_filter", "0",
		"net.ipv4.conf.default.rp_filter", "0",
		"net.ipv4.conf.all.forwarding", "1"); err != nil {
		return err
	}
	if n.LANAddr.IsValid() {
		lan, ok := l.lan(n.LAN)
		if !ok {
			return fmt.Errorf("no LAN %q", n.LAN)
		}
		addr := netip.PrefixFrom(n.LANAddr, lan.Prefix.Bits())
		if err := l.uplink(n.NS, n.LANLink.Interface, addr, n.LANLink.MTU, lan.NS, ifname("l", i, n.Name)); err != nil {
			return err
		}
	}
	if err := l.uplink(n.NS, l.Overlay.Interface, netip.PrefixFrom(n.OverlayAddr, 32), l.Overlay.MTU, l.WAN, ifname("w", i, n.Name)); err != nil {
		return err
	}
	if err := withHandle(n.NS, func(h *netlink.Handle) error { return l.emulateTailscaled(h) }); err != nil {
		return err
	}
	pods := slices.Clone(n.Pods)
	if n.Probe != nil {
		pods = append(pods, *n.Probe)
	}
	for _, p := range pods {
		if err := createPod(n, p); err != nil {
			return fmt.Errorf("pod %s: %w", p.NS, err)
		}
	}
	return nil
}

// uplink makes a veth: dev (address addr) in ns, its peer port in the
// bridge of brNS.
func (l *Lab) uplink(ns, dev string, addr netip.Prefix, mtu int, brNS, port string) error {
	bfd, err := netns.GetFromName(brNS)
	if err != nil {
		return fmt.Errorf("opening %s: %w", brNS, err)
	}
	defer bfd.Close()
	err = withHandle(ns, func(h *netlink.Handle) error {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: dev, MTU: mtu}, PeerName: port, PeerNamespace: netlink.NsFd(bfd)}
		if err := h.LinkAdd(v); err != nil {
			return fmt.Errorf("adding veth %s: %w", dev, err)
		}
		lk, err := h.LinkByName(dev)
		if err != nil {
			return fmt.Errorf("finding %s: %w", dev, err)
		}
		if err := h.AddrAdd(lk, &netlink.Addr{IPNet: ipnet(addr)}); err != nil {
			return fmt.Errorf("adding %s to %s: %w", addr, dev, err)
		}
		return h.LinkSetUp(lk)
	})
	if err != nil {
		return err
	}
	return withHandle(brNS, func(h *netlink.Handle) error {
		p, err := h.LinkByName(port)
		if err != nil {
			return fmt.Errorf("finding %s in %s: %w", port, brNS, err)
		}
		br, err := h.LinkByName("br0")
		if err != nil {
			return fmt.Errorf("finding br0 in %s: %w", brNS, err)
		}
		if err := h.LinkSetMTU(p, mtu); err != nil {
			return fmt.Errorf("setting mtu of %s: %w", port, err)
		}
		if err := h.LinkSetMaster(p, br); err != nil {
			return fmt.Errorf("attaching %s to br0: %w", port, err)
		}
		return h.LinkSetUp(p)
	})
}

// emulateTailscaled adds what tailscaled adds on a node: the overlay range
// in table 52 and the rule that looks it up.
func (l *Lab) emulateTailscaled(h *netlink.Handle) error {
	lk, err := h.LinkByName(l.Overlay.Interface)
	if err != nil {
		return fmt.Errorf("finding %s: %w", l.Overlay.Interface, err)
	}
	r := &netlink.Route{LinkIndex: lk.Attrs().Index, Dst: ipnet(netip.MustParsePrefix("100.64.0.0/10")), Table: tailscaleTable, Scope: netlink.SCOPE_LINK}
	if err := h.RouteAdd(r); err != nil {
		return fmt.Errorf("adding table 52 route: %w", err)
	}
	rule := netlink.NewRule()
	rule.Priority, rule.Table, rule.Family = tailscalePriority, tailscaleTable, netlink.FAMILY_V4
	if err := h.RuleAdd(rule); err != nil {
		return fmt.Errorf("adding rule 5270: %w", err)
	}
	return nil
}

// createPod wires a pod as Calico does.
func createPod(n *Node, p Pod) error {
	pfd, err := netns.GetFromName(p.NS)
	if err != nil {
		return fmt.Errorf("opening %s: %w", p.NS, err)
	}
	defer pfd.Close()
	var hostMAC net.HardwareAddr
	err = withHandle(n.NS, func(h *netlink.Handle) error {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: p.HostVeth, MTU: p.MTU}, PeerName: "eth0", PeerNamespace: netlink.NsFd(pfd)}
		if err := h.LinkAdd(v); err != nil {
			return fmt.Errorf("adding veth %s: %w", p.HostVeth, err)
		}
		lk, err := h.LinkByName(p.HostVeth)
		if err != nil {
			return fmt.Errorf("finding %s: %w", p.HostVeth, err)
		}
		hostMAC = lk.Attrs().HardwareAddr
		if err := h.LinkSetUp(lk); err != nil {
			return fmt.Errorf("setting %s up: %w", p.HostVeth, err)
		}
		r := &netlink.Route{LinkIndex: lk.Attrs().Index, Dst: ipnet(netip.PrefixFrom(p.Addr, 32)), Scope: netlink.SCOPE_LINK}
		if err := h.RouteAdd(r); err != nil {
			return fmt.Errorf("adding host route to %s: %w", p.Addr, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := sysctl(n.NS,
		"net/ipv4/conf/"+p.HostVeth+"/proxy_arp", "1",
		"net/ipv4/neigh/"+p.HostVeth+"/proxy_delay", "0",
		"net/ipv4/conf/"+p.HostVeth+"/rp_filter", "0"); err != nil {
		return err
	}
	gw := net.ParseIP(podGateway).To4()
	return withHandle(p.NS, func(h *netlink.Handle) error {
		lk, err := h.LinkByName("eth0")
		if err != nil {
			return fmt.Errorf("finding eth0: %w", err)
		}
		if err := h.AddrAdd(lk, &netlink.Addr{IPNet: ipnet(netip.PrefixFrom(p.Addr, 32))}); err != nil {
			return fmt.Errorf("adding %s: %w", p.Addr, err)
		}
		if err := h.LinkSetUp(lk); err != nil {
			return fmt.Errorf("setting eth0 up: %w", err)
		}
		nb := &netlink.Neigh{LinkIndex: lk.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: gw, HardwareAddr: hostMAC}
		if err := h.NeighSet(nb); err != nil {
			return fmt.Errorf("adding neighbour %s: %w", gw, err)
		}
		r := &netlink.Route{LinkIndex: lk.Attrs().Index, Gw: gw, Flags: int(netlink.FLAG_ONLINK)}
		if err := h.RouteAdd(r); err != nil {
			return fmt.Errorf("adding default route: %w", err)
		}
		return nil
	})
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func writePolicy(dir string, b []byte) error {
	if err := os.WriteFile(filepath.Join(dir, policyFileName), b, 0o600); err != nil {
		return fmt.Errorf("writing policy copy: %w", err)
	}
	return nil
}
