package nl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"golang.org/x/sys/unix"
)

// appendRouteMsg appends the RTM_NEWROUTE (replace) or RTM_DELROUTE message
// of op to b, built by hand: no allocation per attribute.
//
//	nlmsghdr | rtmsg | RTA_DST | RTA_TABLE | [RTA_PRIORITY] |
//	  RTA_GATEWAY+RTA_OIF or RTA_MULTIPATH(rtnexthop+RTA_GATEWAY...) |
//	  RTA_METRICS(RTAX_MTU, RTAX_ADVMSS)
func appendRouteMsg(b []byte, op Op, seq uint32) ([]byte, error) {
	r := &op.Route
	if !r.Dst.IsValid() || !r.Dst.Addr().Is4() {
		return b, fmt.Errorf("destination %v is not an IPv4 prefix", r.Dst)
	}
	if r.Table <= 0 || uint64(r.Table) > math.MaxUint32 {
		return b, fmt.Errorf("invalid table %d", r.Table)
	}
	if r.Protocol < 0 || r.Protocol > 255 || r.Tos < 0 || r.Tos > 255 || r.Type < 0 || r.Type > 255 || r.Scope < 0 || r.Scope > 255 {
		return b, errors.New("protocol, tos, type or scope out of range")
	}
	start := len(b)
	var flags uint16 = unix.NLM_F_REQUEST | unix.NLM_F_ACK
	typ := uint16(unix.RTM_DELROUTE)
	if op.Kind == Replace {
		typ = unix.RTM_NEWROUTE
		flags |= unix.NLM_F_CREATE | unix.NLM_F_REPLACE
		if len(r.NextHops) == 0 {
			return b, errors.New("route has no next hop")
		}
	}
	b = binary.NativeEndian.AppendUint32(b, 0) // length, patched below
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0) // port id: the kernel fills it

	// rtmsg
	table := uint8(unix.RT_TABLE_UNSPEC)
	if r.Table < 256 {
		table = uint8(r.Table)
	}
	scope, rtype := uint8(r.Scope), uint8(r.Type)
	var rflags uint32
	if op.Kind == Replace {
		if rtype == 0 {
			rtype = unix.RTN_UNICAST
		}
		if len(r.NextHops) == 1 && r.NextHops[0].Onlink {
			rflags |= unix.RTNH_F_ONLINK
		}
	} else {
		scope = unix.RT_SCOPE_NOWHERE // any scope
	}
	b = append(b, unix.AF_INET, uint8(r.Dst.Bits()), 0, uint8(r.Tos), table, uint8(r.Protocol), scope, rtype)
	b = binary.NativeEndian.AppendUint32(b, rflags)

	a4 := r.Dst.Addr().As4()
	b = appendAttr(b, unix.RTA_DST, a4[:])
	b = appendU32Attr(b, unix.RTA_TABLE, uint32(r.Table))
	if r.Priority != 0 {
		b = appendU32Attr(b, unix.RTA_PRIORITY, uint32(r.Priority))
	}
	if op.Kind == Replace {
		var err error
		if b, err = appendNextHops(b, r.NextHops); err != nil {
			return b[:start], err
		}
		if r.MTU != 0 || r.AdvMSS != 0 {
			m := len(b)
			b = appendAttr(b, unix.RTA_METRICS, nil)
			if r.MTU != 0 {
				b = appendU32Attr(b, unix.RTAX_MTU, uint32(r.MTU))
			}
			if r.AdvMSS != 0 {
				b = appendU32Attr(b, unix.RTAX_ADVMSS, uint32(r.AdvMSS))
			}
			binary.NativeEndian.PutUint16(b[m:], uint16(len(b)-m))
		}
	}
	binary.NativeEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b, nil
}

func appendNextHops(b []byte, hops []NextHop) ([]byte, error) {
	for _, h := range hops {
		if h.Gateway.IsValid() && !h.Gateway.Is4() {
			return b, fmt.Errorf("gateway %v is not IPv4", h.Gateway)
		}
		if h.Onlink && (h.LinkIndex <= 0 || !h.Gateway.IsValid()) {
			return b, errors.New("an onlink next hop needs a gateway and a device")
		}
		if !h.Gateway.IsValid() && h.LinkIndex <= 0 {
			return b, errors.New("a next hop needs a gateway or a device")
		}
	}
	if len(hops) == 1 {
		h := hops[0]
		if h.Gateway.IsValid() {
			g := h.Gateway.As4()
			b = appendAttr(b, unix.RTA_GATEWAY, g[:])
		}
		if h.LinkIndex > 0 {
			b = appendU32Attr(b, unix.RTA_OIF, uint32(h.LinkIndex))
		}
		return b, nil
	}
	m := len(b)
	b = appendAttr(b, unix.RTA_MULTIPATH, nil)
	for _, h := range hops {
		n := len(b)
		var f uint8
		if h.Onlink {
			f = unix.RTNH_F_ONLINK
		}
		// struct rtnexthop { len u16; flags u8; hops u8; ifindex i32 }
		b = binary.NativeEndian.AppendUint16(b, 0)
		b = append(b, f, 0)
		b = binary.NativeEndian.AppendUint32(b, uint32(h.LinkIndex))
		if h.Gateway.IsValid() {
			g := h.Gateway.As4()
			b = appendAttr(b, unix.RTA_GATEWAY, g[:])
		}
		binary.NativeEndian.PutUint16(b[n:], uint16(len(b)-n))
	}
	binary.NativeEndian.PutUint16(b[m:], uint16(len(b)-m))
	return b, nil
}

// appendAttr appends an rtattr with data, padded; with nil data it appends
// just the header of a nested attribute whose length the caller patches.
func appendAttr(b []byte, typ uint16, data []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(unix.SizeofRtAttr+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for range rtaAlign(len(data)) - len(data) {
		b = append(b, 0)
	}
	return b
}

func appendU32Attr(b []byte, typ uint16, v uint32) []byte {
	b = binary.NativeEndian.AppendUint16(b, 8)
	b = binary.NativeEndian.AppendUint16(b, typ)
	return binary.NativeEndian.AppendUint32(b, v)
}
