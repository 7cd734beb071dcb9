package daemon

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// linkFinder finds the device that holds an address. It reads the kernel
// each time (addresses are few), so a LAN device renamed or re-addressed
// while netd runs is picked up on the next reconcile.
type linkFinder struct{}

func newLinkFinder() *linkFinder { return &linkFinder{} }

func (linkFinder) byAddr(a netip.Addr) (string, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return "", fmt.Errorf("netlink handle: %w", err)
	}
	defer h.Close()
	addrs, err := h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return "", fmt.Errorf("listing addresses: %w", err)
	}
	for _, ad := range addrs {
		if ip, ok := netip.AddrFromSlice(ad.IP); ok && ip.Unmap() == a {
			l, err := h.LinkByIndex(ad.LinkIndex)
			if err != nil {
				return "", fmt.Errorf("link %d: %w", ad.LinkIndex, err)
			}
			return l.Attrs().Name, nil
		}
	}
	return "", fmt.Errorf("no device has address %s", a)
}
