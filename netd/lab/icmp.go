package lab

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ducksnest/netd/netd/probe"
)

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
	o := probe.Socket{DF: probe.DFClear}
	if df {
		o.DF = probe.DFSet
	}
	c, err := ListenICMP(ctx, ns, src, o)
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
	a, ok := probe.AnswerTo(b, from, dst, id)
	switch {
	case !ok:
		return PingResult{}, false
	case a.Reply:
		return PingResult{Reply: true}, true
	case a.FragNeeded():
		return PingResult{FragNeeded: true, MTU: a.MTU, From: from}, true
	}
	return PingResult{Unreachable: fmt.Sprintf("icmp type %d code %d from %s", a.Type, a.Code, from), From: from}, true
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
