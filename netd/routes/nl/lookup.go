package nl

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Link is a network device.
type Link struct {
	Index int
	Name  string
	MTU   int
	Up    bool // IFF_UP
}

// RouteQuery is the packet RouteGet asks about. Src, Mark and Iif are
// optional: a packet from a local address, with a firewall mark, or
// arriving on a device (a forwarded packet).
type RouteQuery struct {
	Dst  netip.Addr
	Src  netip.Addr
	Mark uint32
	Iif  string
}

// Lookup is the kernel's answer to RouteGet.
type Lookup struct {
	Table   int
	Type    int // RTN_*
	Device  string
	Gateway netip.Addr // invalid if on-link
	Src     netip.Addr // the source address the kernel would pick
	MTU     int        // the path MTU the kernel holds for Dst, 0 if none
}

// Links implements Kernel.
func (n *Netlink) Links(ctx context.Context) ([]Link, error) {
	var ls []netlink.Link
	err := retryDump(ctx, "links", func() error {
		var err error
		ls, err = n.h.LinkList()
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]Link, 0, len(ls))
	for _, l := range ls {
		a := l.Attrs()
		out = append(out, Link{Index: a.Index, Name: a.Name, MTU: a.MTU, Up: a.Flags&net.FlagUp != 0})
	}
	return out, nil
}

// RouteGet implements Kernel.
func (n *Netlink) RouteGet(ctx context.Context, q RouteQuery) (Lookup, error) {
	opts := &netlink.RouteGetOptions{Mark: q.Mark, Iif: q.Iif}
	if q.Src.IsValid() {
		opts.SrcAddr = q.Src.AsSlice()
	}
	rs, err := n.h.RouteGetWithOptions(q.Dst.AsSlice(), opts)
	if err != nil {
		return Lookup{}, fmt.Errorf("route get %s: %w", q.Dst, err)
	}
	if len(rs) == 0 {
		return Lookup{}, fmt.Errorf("route get %s: no answer", q.Dst)
	}
	r := rs[0]
	lk := Lookup{Table: r.Table, Type: r.Type, MTU: r.MTU}
	if r.LinkIndex != 0 {
		if lk.Device, err = n.LinkName(ctx, r.LinkIndex); err != nil {
			return lk, err
		}
	}
	lk.Gateway, _ = netip.AddrFromSlice(r.Gw)
	lk.Gateway = lk.Gateway.Unmap()
	lk.Src, _ = netip.AddrFromSlice(r.Src)
	lk.Src = lk.Src.Unmap()
	return lk, nil
}

// SetMTU sets the MTU of a fake device (added if new), as a test's setup.
func (f *Fake) SetMTU(dev string, mtu int) {
	f.AddLink(dev)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mtus[dev] = mtu
}

// Links implements Kernel: every fake device is up, with the MTU set by
// SetMTU (1500 if none).
func (f *Fake) Links(ctx context.Context) ([]Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Link, 0, len(f.links))
	for name, i := range f.links {
		mtu, ok := f.mtus[name]
		if !ok {
			mtu = 1500
		}
		out = append(out, Link{Index: i, Name: name, MTU: mtu, Up: true})
	}
	return out, nil
}

// RouteGet implements Kernel like the kernel's FIB lookup, for what the
// fake holds: the rules without selectors in priority order (main alone
// if the fake has no rules), the longest prefix match in each table
// (ties: the lowest metric), a throw route going on to the next rule. Src,
// Mark and Iif are ignored; the source is the address the fake holds on
// the device, if any.
func (f *Fake) RouteGet(ctx context.Context, q RouteQuery) (Lookup, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	tables := []int{unix.RT_TABLE_MAIN}
	if len(f.rules) > 0 {
		tables = tables[:0]
		for _, r := range f.rules {
			if !r.Selectors {
				tables = append(tables, r.Table)
			}
		}
	}
	for _, t := range tables {
		var best *Route
		for k, r := range f.routes {
			if k.table != t || !r.Dst.Contains(q.Dst) {
				continue
			}
			if best == nil || r.Dst.Bits() > best.Dst.Bits() || (r.Dst.Bits() == best.Dst.Bits() && r.Priority < best.Priority) {
				best = &r
			}
		}
		if best == nil || best.Type == unix.RTN_THROW {
			continue
		}
		lk := Lookup{Table: t, Type: best.Type, MTU: best.MTU}
		if len(best.NextHops) > 0 {
			h := best.NextHops[0]
			lk.Gateway = h.Gateway
			if h.LinkIndex != 0 {
				lk.Device, _ = f.linkName(h.LinkIndex)
			}
		}
		for a, dev := range f.addrs {
			if dev == lk.Device {
				lk.Src = a
				break
			}
		}
		return lk, nil
	}
	return Lookup{}, fmt.Errorf("route get %s: %w", q.Dst, unix.ENETUNREACH)
}
