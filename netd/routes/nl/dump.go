package nl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// dumpRoutes dumps the IPv4 routes of one table on the raw socket. With
// NETLINK_GET_STRICT_CHK the kernel dumps only that table; the table is
// checked here as well for kernels that ignore the filter. It parses in
// place, without an allocation per attribute, which matters at 100k
// routes. An interrupted dump returns netlink.ErrDumpInterrupted (after
// draining it) so that the caller retries.
func (b *batcher) dumpRoutes(table int) ([]Route, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	seq := b.seq
	req := make([]byte, 0, 64)
	req = binary.NativeEndian.AppendUint32(req, 0)
	req = binary.NativeEndian.AppendUint16(req, unix.RTM_GETROUTE)
	req = binary.NativeEndian.AppendUint16(req, unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	req = binary.NativeEndian.AppendUint32(req, seq)
	req = binary.NativeEndian.AppendUint32(req, 0)
	t8 := uint8(0)
	if table < 256 {
		t8 = uint8(table)
	}
	req = append(req, unix.AF_INET, 0, 0, 0, t8, 0, 0, 0, 0, 0, 0, 0)
	req = appendU32Attr(req, unix.RTA_TABLE, uint32(table))
	binary.NativeEndian.PutUint32(req, uint32(len(req)))
	if err := unix.Sendto(b.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sending route dump request: %w", err)
	}
	var (
		out      = make([]Route, 0, b.dumpHint[table])
		slab     []NextHop // next hops of many routes share allocations
		intr     bool
		parseErr error
	)
	// The dump is read to its end even if ctx is done: the kernel refuses
	// a new dump on a socket (EBUSY) while one is still running.
	for {
		n, err := unix.Read(b.fd, b.rbuf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading route dump: %w", err)
		}
		msgs := b.rbuf[:n]
		for len(msgs) >= unix.SizeofNlMsghdr {
			l := int(binary.NativeEndian.Uint32(msgs[0:4]))
			if l < unix.SizeofNlMsghdr || l > len(msgs) {
				return nil, fmt.Errorf("malformed netlink message of length %d", l)
			}
			m := msgs[:l]
			msgs = msgs[min(nlmAlign(l), len(msgs)):]
			if binary.NativeEndian.Uint32(m[8:12]) != seq {
				continue // an answer to an earlier request
			}
			if binary.NativeEndian.Uint16(m[6:8])&unix.NLM_F_DUMP_INTR != 0 {
				intr = true
			}
			switch binary.NativeEndian.Uint16(m[4:6]) {
			case unix.NLMSG_DONE, unix.NLMSG_ERROR:
				var errno int32
				if len(m) >= unix.SizeofNlMsghdr+4 {
					errno = int32(binary.NativeEndian.Uint32(m[16:20]))
				}
				switch {
				case errno == -int32(unix.ENOENT):
					return nil, nil // the table does not exist (yet)
				case errno != 0:
					return nil, fmt.Errorf("dumping routes: %w", unix.Errno(-errno))
				case parseErr != nil:
					return nil, parseErr
				case intr:
					return nil, netlink.ErrDumpInterrupted
				}
				b.dumpHint[table] = len(out) + len(out)/8
				return out, nil
			case unix.RTM_NEWROUTE:
				if cap(slab)-len(slab) < 16 {
					slab = make([]NextHop, 0, 1024)
				}
				r, ok, err := parseRoute(m[unix.SizeofNlMsghdr:], &slab)
				if err != nil && parseErr == nil {
					parseErr = err
				}
				if ok && r.Table == table {
					out = append(out, r)
				}
			}
		}
	}
}

// parseRoute decodes the payload of an RTM_NEWROUTE message; ok is false
// for routes that are not IPv4 or are cached clones.
func parseRoute(p []byte, slab *[]NextHop) (r Route, ok bool, err error) {
	if len(p) < unix.SizeofRtMsg {
		return r, false, errors.New("short rtmsg")
	}
	if p[0] != unix.AF_INET || binary.NativeEndian.Uint32(p[8:12])&unix.RTM_F_CLONED != 0 {
		return r, false, nil
	}
	r.Tos, r.Table, r.Protocol, r.Scope, r.Type = int(p[3]), int(p[4]), int(p[5]), int(p[6]), int(p[7])
	rflags := binary.NativeEndian.Uint32(p[8:12])
	dstLen := int(p[1])
	dst := netip.IPv4Unspecified()
	var single NextHop
	start := len(*slab)
	err = walkAttrs(p[unix.SizeofRtMsg:], func(typ uint16, v []byte) error {
		switch typ {
		case unix.RTA_DST:
			a, ok := netip.AddrFromSlice(v)
			if !ok {
				return errors.New("bad RTA_DST")
			}
			dst = a
		case unix.RTA_TABLE:
			r.Table = int(u32(v))
		case unix.RTA_PRIORITY:
			r.Priority = int(u32(v))
		case unix.RTA_GATEWAY:
			single.Gateway, _ = netip.AddrFromSlice(v)
		case unix.RTA_OIF:
			single.LinkIndex = int(u32(v))
		case unix.RTA_MULTIPATH:
			for len(v) >= unix.SizeofRtNexthop {
				l := int(binary.NativeEndian.Uint16(v[0:2]))
				if l < unix.SizeofRtNexthop || l > len(v) {
					return errors.New("bad rtnexthop")
				}
				h := NextHop{LinkIndex: int(int32(binary.NativeEndian.Uint32(v[4:8]))), Onlink: v[2]&unix.RTNH_F_ONLINK != 0}
				err := walkAttrs(v[unix.SizeofRtNexthop:l], func(t uint16, a []byte) error {
					if t == unix.RTA_GATEWAY {
						h.Gateway, _ = netip.AddrFromSlice(a)
					}
					return nil
				})
				if err != nil {
					return err
				}
				*slab = append(*slab, h)
				v = v[min(rtaAlign(l), len(v)):]
			}
		case unix.RTA_METRICS:
			return walkAttrs(v, func(t uint16, a []byte) error {
				switch t {
				case unix.RTAX_MTU:
					r.MTU = int(u32(a))
				case unix.RTAX_ADVMSS:
					r.AdvMSS = int(u32(a))
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return r, false, err
	}
	r.Dst = netip.PrefixFrom(dst, dstLen)
	if len(*slab) == start && (single.Gateway.IsValid() || single.LinkIndex != 0) {
		single.Onlink = rflags&unix.RTNH_F_ONLINK != 0
		*slab = append(*slab, single)
	}
	if len(*slab) > start {
		r.NextHops = (*slab)[start:len(*slab):len(*slab)]
	}
	return r, true, nil
}

func u32(v []byte) uint32 {
	if len(v) < 4 {
		return 0
	}
	return binary.NativeEndian.Uint32(v)
}

// walkAttrs calls f for each rtattr in b.
func walkAttrs(b []byte, f func(typ uint16, v []byte) error) error {
	for len(b) >= unix.SizeofRtAttr {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		if l < unix.SizeofRtAttr || l > len(b) {
			return fmt.Errorf("bad attribute length %d", l)
		}
		if err := f(binary.NativeEndian.Uint16(b[2:4])&^unix.NLA_F_NESTED, b[unix.SizeofRtAttr:l]); err != nil {
			return err
		}
		b = b[min(rtaAlign(l), len(b)):]
	}
	return nil
}
