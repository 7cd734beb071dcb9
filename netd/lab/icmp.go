package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
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
	var fd int
	err := InNS(ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		if err != nil {
			return fmt.Errorf("opening raw icmp socket: %w", err)
		}
		return nil
	})
	if err != nil {
		return PingResult{}, err
	}
	defer unix.Close(fd)
	pmtu := unix.IP_PMTUDISC_DONT
	if df {
		pmtu = unix.IP_PMTUDISC_DO
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, pmtu); err != nil {
		return PingResult{}, fmt.Errorf("setting IP_MTU_DISCOVER: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4()}); err != nil {
		return PingResult{}, fmt.Errorf("binding %s: %w", src, err)
	}
	id := uint16(rand.IntN(1 << 16))
	to := &unix.SockaddrInet4{Addr: dst.As4()}
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 65536)
	for seq := uint16(1); ; seq++ {
		if err := ctx.Err(); err != nil {
			return PingResult{}, fmt.Errorf("ping %s: %w", dst, err)
		}
		sent := time.Now()
		if err := unix.Sendto(fd, echoRequest(id, seq, size-20), 0, to); err != nil {
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
		for {
			wait := time.Until(next)
			if wait <= 0 {
				break
			}
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(pfd, int(wait.Milliseconds())+1)
			if err != nil && !errors.Is(err, unix.EINTR) {
				return PingResult{}, fmt.Errorf("polling icmp socket: %w", err)
			}
			if n <= 0 {
				continue
			}
			m, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
			if err != nil {
				continue
			}
			if r, ok := parseICMP(buf[:m], id, dst); ok {
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

// echoRequest builds an ICMP echo request of n bytes (header included).
func echoRequest(id, seq uint16, n int) []byte {
	b := make([]byte, n)
	b[0] = 8 // echo request
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	for i := 8; i < n; i++ {
		b[i] = byte(i)
	}
	binary.BigEndian.PutUint16(b[2:], checksum(b))
	return b
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// parseICMP reads an IPv4 packet with an ICMP message and says whether it
// answers our echo (id) to dst.
func parseICMP(p []byte, id uint16, dst netip.Addr) (PingResult, bool) {
	if len(p) < 20 {
		return PingResult{}, false
	}
	ihl := int(p[0]&0x0f) * 4
	if len(p) < ihl+8 {
		return PingResult{}, false
	}
	from := netip.AddrFrom4([4]byte(p[12:16]))
	ic := p[ihl:]
	switch ic[0] {
	case 0: // echo reply
		if binary.BigEndian.Uint16(ic[4:]) == id && from == dst {
			return PingResult{Reply: true}, true
		}
	case 3, 11: // unreachable, time exceeded: check the quoted packet
		in := ic[8:]
		if len(in) < 20 {
			return PingResult{}, false
		}
		iihl := int(in[0]&0x0f) * 4
		if len(in) < iihl+8 || in[9] != unix.IPPROTO_ICMP || netip.AddrFrom4([4]byte(in[16:20])) != dst {
			return PingResult{}, false
		}
		if binary.BigEndian.Uint16(in[iihl+4:]) != id {
			return PingResult{}, false
		}
		if ic[0] == 3 && ic[1] == 4 {
			return PingResult{FragNeeded: true, MTU: int(binary.BigEndian.Uint16(ic[6:])), From: from}, true
		}
		return PingResult{Unreachable: fmt.Sprintf("icmp type %d code %d from %s", ic[0], ic[1], from), From: from}, true
	}
	return PingResult{}, false
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
