package probe

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// protocolICMP is IANA's protocol number of ICMPv4, as icmp.ParseMessage
// wants it.
const protocolICMP = 1

// EchoRequest returns an ICMPv4 echo request (header and data; the
// checksum filled in) as written to an ip4:icmp socket. The lab's pings
// use it too.
func EchoRequest(id, seq uint16, data []byte) ([]byte, error) {
	m := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: int(id), Seq: int(seq), Data: data}}
	return m.Marshal(nil)
}

// EchoReply reports whether b, an ICMPv4 message as read from an ip4:icmp
// socket (no IP header), is an echo reply, and its id and sequence number.
func EchoReply(b []byte) (id, seq uint16, ok bool) {
	m, err := icmp.ParseMessage(protocolICMP, b)
	if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
		return 0, 0, false
	}
	e, ok := m.Body.(*icmp.Echo)
	if !ok {
		return 0, 0, false
	}
	return uint16(e.ID), uint16(e.Seq), true
}

// listenEchoReplies opens the prober's ICMP socket on src. A raw ICMP
// socket gets a copy of every ICMP message the node receives, the peers'
// probes of this node among them; the kernel's ICMP filter (ICMP_FILTER)
// keeps all but echo replies out, so that only the answers to this
// node's probes wake netd.
func listenEchoReplies(src netip.Addr) (PacketConn, error) {
	c, err := icmp.ListenPacket("ip4:icmp", src.String())
	if err != nil {
		return nil, err
	}
	var f ipv4.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv4.ICMPTypeEchoReply)
	if err := c.IPv4PacketConn().SetICMPFilter(&f); err != nil {
		c.Close()
		return nil, fmt.Errorf("filtering icmp on %s: %w", src, err)
	}
	return c, nil
}

// readEchoReplies reads conn until it is closed, or until fn returns true,
// and calls fn with the sender and sequence number of every echo reply
// with id.
func readEchoReplies(conn PacketConn, id uint16, fn func(from netip.Addr, seq uint16) bool) {
	buf := make([]byte, 1500)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		got, seq, ok := EchoReply(buf[:n])
		if !ok || got != id {
			continue
		}
		ipa, ok := from.(*net.IPAddr)
		if !ok {
			continue
		}
		a, ok := netip.AddrFromSlice(ipa.IP)
		if ok && fn(a.Unmap(), seq) {
			return
		}
	}
}
