package daemon

import (
	"fmt"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
)

// linkFinder finds the device that holds an address. It reads the kernel
// each time (addresses are few), so a LAN device renamed or re-addressed
// while netd runs is picked up on the next reconcile; the netlink handle is
// opened once and kept.
type linkFinder struct {
	mu sync.Mutex
	h  *netlink.Handle
}

func newLinkFinder() *linkFinder { return &linkFinder{} }

func (f *linkFinder) byAddr(a netip.Addr) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.h == nil {
		h, err := netlink.NewHandle()
		if err != nil {
			return "", fmt.Errorf("netlink handle: %w", err)
		}
		f.h = h
	}
	addrs, err := f.h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return "", fmt.Errorf("listing addresses: %w", err)
	}
	for _, ad := range addrs {
		if ip, ok := netip.AddrFromSlice(ad.IP); ok && ip.Unmap() == a {
			l, err := f.h.LinkByIndex(ad.LinkIndex)
			if err != nil {
				return "", fmt.Errorf("link %d: %w", ad.LinkIndex, err)
			}
			return l.Attrs().Name, nil
		}
	}
	return "", fmt.Errorf("no device has address %s", a)
}
