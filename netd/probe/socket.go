package probe

// The raw ICMPv4 socket of every ICMP user in netd (the LAN prober, the
// path check, `netd doctor`, the lab's pings and its chaos prober), with
// the options they need of it.

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// DF is what a socket does with IP's Don't Fragment bit: its
// IP_MTU_DISCOVER mode.
type DF int

// DF modes.
const (
	// DFDefault is the kernel's default (net.ipv4.ip_no_pmtu_disc).
	DFDefault DF = iota
	// DFSet sets DF on every packet, and the kernel refuses (EMSGSIZE) a
	// packet larger than the device MTU or the path MTU it has learnt
	// (IP_PMTUDISC_DO): what a path MTU probe sends.
	DFSet
	// DFClear never sets DF: a hop may fragment the packet
	// (IP_PMTUDISC_DONT).
	DFClear
)

// Socket says how ListenICMP sets up a socket; the zero Socket is a plain
// raw socket with the kernel's defaults.
type Socket struct {
	DF DF
	// EchoRepliesOnly makes the kernel's ICMP filter (ICMP_FILTER) keep
	// every message but echo replies out. A raw ICMP socket gets a copy
	// of every ICMP message the host receives, other hosts' echo requests
	// among them; with the filter only the answers to its own probes wake
	// the reader.
	EchoRepliesOnly bool
	// ReadBuffer, if not zero, is the socket's receive buffer in bytes,
	// set past net.core.rmem_max (SO_RCVBUFFORCE, which needs
	// CAP_NET_ADMIN): for a reader that may stall on a loaded machine
	// while replies keep coming.
	ReadBuffer int
}

// ListenICMP opens a raw ICMPv4 socket (ip4:icmp: a read returns the ICMP
// message without its IP header) bound to src, in the network namespace
// of the calling thread. It needs CAP_NET_RAW.
func ListenICMP(ctx context.Context, src netip.Addr, o Socket) (*net.IPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = o.control(int(fd)) }); err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(ctx, "ip4:icmp", src.String())
	if err != nil {
		return nil, err
	}
	c := pc.(*net.IPConn)
	if o.EchoRepliesOnly {
		var f ipv4.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv4.ICMPTypeEchoReply)
		if err := ipv4.NewPacketConn(c).SetICMPFilter(&f); err != nil {
			c.Close()
			return nil, fmt.Errorf("filtering icmp on %s: %w", src, err)
		}
	}
	return c, nil
}

// control applies o's socket options to fd before it is bound.
func (o Socket) control(fd int) error {
	mode := -1
	switch o.DF {
	case DFSet:
		mode = unix.IP_PMTUDISC_DO
	case DFClear:
		mode = unix.IP_PMTUDISC_DONT
	}
	if mode >= 0 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, mode); err != nil {
			return fmt.Errorf("setting IP_MTU_DISCOVER: %w", err)
		}
	}
	if o.ReadBuffer > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, o.ReadBuffer); err != nil {
			return fmt.Errorf("setting SO_RCVBUFFORCE: %w", err)
		}
	}
	return nil
}

// listenEchoReplies opens the prober's and the path check's socket on
// src: only echo replies, so that only the answers to this node's probes
// wake netd.
func listenEchoReplies(src netip.Addr) (PacketConn, error) {
	c, err := ListenICMP(context.Background(), src, Socket{EchoRepliesOnly: true})
	if err != nil {
		return nil, err
	}
	return c, nil
}
