package lab

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// InstallStaticRoutes programs, by hand, what netd is expected to program
// on every node: for each other node's blocks a route in the lab's table
// with its protocol, over the LAN (MTU of the LAN) when both nodes share
// one and over the overlay (gateway = the peer's overlay address, onlink,
// overlay MTU) otherwise, with advmss = MTU-40; plus the rule "to <pods>
// lookup <table>" at the lab's priority. It lets the topology be tested
// without netd (tests, and lab up --static).
func (l *Lab) InstallStaticRoutes() error {
	for _, n := range l.Nodes {
		err := withHandle(n.NS, func(h *netlink.Handle) error {
			for _, peer := range l.Nodes {
				if peer == n {
					continue
				}
				for _, b := range peer.PodCIDRs {
					r, err := l.staticRoute(h, n, peer, b)
					if err != nil {
						return err
					}
					if err := h.RouteReplace(r); err != nil {
						return fmt.Errorf("adding route to %s in %s: %w", b, n.NS, err)
					}
				}
			}
			rule := netlink.NewRule()
			rule.Priority, rule.Table, rule.Family = l.Priority, l.Table, netlink.FAMILY_V4
			rule.Dst = ipnet(l.PodCIDR)
			if err := h.RuleAdd(rule); err != nil {
				return fmt.Errorf("adding rule %d in %s: %w", l.Priority, n.NS, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) staticRoute(h *netlink.Handle, n, peer *Node, b netip.Prefix) (*netlink.Route, error) {
	dev, gw, mtu := l.Overlay.Interface, peer.OverlayAddr, l.Overlay.MTU
	flags := int(netlink.FLAG_ONLINK)
	if n.LAN != "" && n.LAN == peer.LAN {
		dev, gw, mtu, flags = n.LANLink.Interface, peer.LANAddr, n.LANLink.MTU, 0
	}
	lk, err := h.LinkByName(dev)
	if err != nil {
		return nil, fmt.Errorf("finding %s in %s: %w", dev, n.NS, err)
	}
	return &netlink.Route{
		LinkIndex: lk.Attrs().Index, Dst: ipnet(b), Gw: gw.AsSlice(), Flags: flags,
		Table: l.Table, Protocol: netlink.RouteProtocol(l.Protocol), MTU: mtu, AdvMSS: mtu - 40,
	}, nil
}

// SetLANLink sets a node's port on the LAN bridge up or down (to break
// the direct LAN path of that node).
func (l *Lab) SetLANLink(node string, up bool) error {
	for i, n := range l.Nodes {
		if n.Name != node {
			continue
		}
		lan, ok := l.lan(n.LAN)
		if !ok {
			return fmt.Errorf("node %s has no LAN", node)
		}
		port := ifname("l", i, n.Name)
		return withHandle(lan.NS, func(h *netlink.Handle) error {
			lk, err := h.LinkByName(port)
			if err != nil {
				return fmt.Errorf("finding %s in %s: %w", port, lan.NS, err)
			}
			if up {
				return h.LinkSetUp(lk)
			}
			return h.LinkSetDown(lk)
		})
	}
	return fmt.Errorf("no node %q in lab %s", node, l.Name)
}
