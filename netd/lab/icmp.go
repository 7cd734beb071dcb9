package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/ducksnest/netd/netd/probe"
)

// protocolICMP is IANA's protocol number of ICMPv4.
const protocolICMP = 1

// PingResult is what came back for an ICMP echo.
type PingResult struct {
	// Reply: an echo reply came back from the destination.
	Reply bool          `json:"reply"`
	RTT   time.Duration `json:"rtt,omitempty"`
	// FragNeeded: an ICMP "fragmentation needed" (type 3 code 4) came back
	// from From, carrying the next-hop MTU.
	FragNeeded bool       `json:"fragNeeded,omitempty"`
	MTU        int        `json:"mtu,omitempty"`
	From       netip.Addr `json:"from,omitzero"`
	// LocalTooBig: the sender's own kernel refused the packet (EMSGSIZE:
	// larger than its device MTU or its cached path MTU).
	LocalTooBig bool `json:"localTooBig,omitempty"`
	// Unreachable is another ICMP error ("type 3 code 1" ...).
	Unreachable string `json:"unreachable,omitempty"`
}

func (r PingResult) String() string {
	switch {
	case r.Reply:
		return fmt.Sprintf("reply in %v", r.RTT.Round(10*time.Microsecond))
	case r.FragNeeded:
		return fmt.Sprintf("frag-needed mtu %d from %s", r.MTU, r.From)
	case r.LocalTooBig:
		return "refused locally (EMSGSIZE)"
	case r.Unreachable != "":
		return r.Unreachable
	}
	return "no answer"
}

// Ping sends ICMP echo requests of size bytes (whole IP packet) from src
// inside namespace ns to dst until an answer (reply or ICMP error) comes
// back or timeout passes. With df the packet carries DF and the sender
// honours path MTU (IP_PMTUDISC_DO); the caller flushes cached path MTUs
// first if it wants to see the frag-needed again (FlushRouteCache).
func Ping(ctx context.Context, ns string, src, dst netip.Addr, size int, df bool, timeout time.Duration) (PingResult, error) {
	if size < 28 {
		return PingResult{}, fmt.Errorf("ping size %d below 28", size)
	}
	pmtu := unix.IP_PMTUDISC_DONT
	if df {
		pmtu = unix.IP_PMTUDISC_DO
	}
	c, err := listenICMP(ctx, ns, src, pmtu)
	if err != nil {
		return PingResult{}, err
	}
	defer c.Close()
	id := uint16(rand.IntN(1 << 16))
	to := &net.IPAddr{IP: dst.AsSlice()}
	data := make([]byte, size-28) // after the IP and ICMP headers
	for i := range data {
		data[i] = byte(i + 8)
	}
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 65536)
	for seq := uint16(1); ; seq++ {
		if err := ctx.Err(); err != nil {
			return PingResult{}, fmt.Errorf("ping %s: %w", dst, err)
		}
		req, err := probe.EchoRequest(id, seq, data)
		if err != nil {
			return PingResult{}, fmt.Errorf("building echo request: %w", err)
		}
		sent := time.Now()
		if _, err := c.WriteTo(req, to); err != nil {
			if errors.Is(err, unix.EMSGSIZE) {
				return PingResult{LocalTooBig: true}, nil
			}
			if errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH) {
				return PingResult{Unreachable: err.Error()}, nil
			}
			return PingResult{}, fmt.Errorf("sending echo to %s: %w", dst, err)
		}
		// Wait up to 300ms for an answer to any of our requests, then resend.
		next := sent.Add(300 * time.Millisecond)
		if next.After(deadline) {
			next = deadline
		}
		if err := c.SetReadDeadline(next); err != nil {
			return PingResult{}, fmt.Errorf("setting read deadline: %w", err)
		}
		for {
			n, from, err := c.ReadFrom(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				return PingResult{}, fmt.Errorf("reading icmp socket: %w", err)
			}
			if r, ok := parseICMP(buf[:n], addrOf(from), id, dst); ok {
				if r.Reply {
					r.RTT = time.Since(sent)
				}
				return r, nil
			}
		}
		if !time.Now().Before(deadline) {
			return PingResult{}, nil
		}
	}
}

// listenICMP opens a raw ICMP socket bound to src inside namespace ns,
// with the given IP_MTU_DISCOVER mode (-1: the kernel's default).
func listenICMP(ctx context.Context, ns string, src netip.Addr, pmtu int) (*net.IPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		if pmtu < 0 {
			return nil
		}
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, pmtu)
		})
		if serr != nil {
			return fmt.Errorf("setting IP_MTU_DISCOVER: %w", serr)
		}
		return err
	}}
	var pc net.PacketConn
	err := InNS(ns, func() error {
		var err error
		if pc, err = lc.ListenPacket(ctx, "ip4:icmp", src.String()); err != nil {
			return fmt.Errorf("opening raw icmp socket on %s: %w", src, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return pc.(*net.IPConn), nil
}

func addrOf(a net.Addr) netip.Addr {
	ia, ok := a.(*net.IPAddr)
	if !ok {
		return netip.Addr{}
	}
	ip, _ := netip.AddrFromSlice(ia.IP)
	return ip.Unmap()
}

// parseICMP reads an ICMP message (as read from an ip4:icmp socket, the IP
// header stripped) that came from from, and says whether it answers our
// echo (id) to dst: the reply, or an error quoting our request.
func parseICMP(b []byte, from netip.Addr, id uint16, dst netip.Addr) (PingResult, bool) {
	m, err := icmp.ParseMessage(protocolICMP, b)
	if err != nil {
		return PingResult{}, false
	}
	var quoted []byte
	switch body := m.Body.(type) {
	case *icmp.Echo:
		rid, _, ok := probe.EchoReply(b)
		return PingResult{Reply: true}, ok && rid == id && from == dst
	case *icmp.DstUnreach:
		quoted = body.Data
	case *icmp.TimeExceeded:
		quoted = body.Data
	default:
		return PingResult{}, false
	}
	h, err := icmp.ParseIPv4Header(quoted)
	if err != nil || h.Protocol != protocolICMP || !h.Dst.Equal(dst.AsSlice()) {
		return PingResult{}, false
	}
	req, err := icmp.ParseMessage(protocolICMP, quoted[h.Len:])
	if err != nil || req.Type != ipv4.ICMPTypeEcho {
		return PingResult{}, false
	}
	if e, ok := req.Body.(*icmp.Echo); !ok || uint16(e.ID) != id {
		return PingResult{}, false
	}
	if m.Type == ipv4.ICMPTypeDestinationUnreachable && m.Code == 4 {
		// RFC 1191: the next-hop MTU is in the header's last two bytes.
		return PingResult{FragNeeded: true, MTU: int(binary.BigEndian.Uint16(b[6:8])), From: from}, true
	}
	return PingResult{Unreachable: fmt.Sprintf("icmp type %d code %d from %s", m.Type, m.Code, from), From: from}, true
}

// FlushRouteCache drops cached path MTUs in ns (ip route flush cache).
func FlushRouteCache(ns string) error {
	return InNS(ns, func() error {
		if err := os.WriteFile("/proc/sys/net/ipv4/route/flush", []byte("1"), 0o200); err != nil {
			return fmt.Errorf("flushing route cache in %s: %w", ns, err)
		}
		return nil
	})
}
