package probe

// ICMPv4 echo messages: the requests netd's ICMP users send, and reading
// what comes back (echo replies, and the ICMP errors that quote a
// request). The socket they use is socket.go's.

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"

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

// echoReply returns the echo of b, an ICMPv4 message as read from an
// ip4:icmp socket (no IP header), if it is an echo reply.
func echoReply(b []byte) (*icmp.Echo, bool) {
	m, err := icmp.ParseMessage(protocolICMP, b)
	if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
		return nil, false
	}
	e, ok := m.Body.(*icmp.Echo)
	return e, ok
}

// ReadEchoReplies reads conn until it is closed or its read deadline
// passes, or until fn returns true, and calls fn with the sender,
// sequence number and data of every echo reply with id.
func ReadEchoReplies(conn PacketConn, id uint16, fn func(from netip.Addr, seq uint16, data []byte) bool) {
	buf := make([]byte, 1500)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
				return
			}
			continue
		}
		e, ok := echoReply(buf[:n])
		if !ok || uint16(e.ID) != id {
			continue
		}
		ipa, ok := from.(*net.IPAddr)
		if !ok {
			continue
		}
		a, ok := netip.AddrFromSlice(ipa.IP)
		if ok && fn(a.Unmap(), uint16(e.Seq), e.Data) {
			return
		}
	}
}

// Answer is what an ICMPv4 message says about an echo request this host
// sent: the destination's echo reply, or an ICMP error about the request.
type Answer struct {
	// From sent the message.
	From netip.Addr
	// Reply: an echo reply from the destination, with sequence number Seq.
	Reply bool
	Seq   uint16
	// Otherwise the message is an ICMP error that quotes the request:
	// destination unreachable (Type 3) or time exceeded (Type 11), and
	// its Code. MTU is the next-hop MTU of a frag-needed (FragNeeded).
	Type, Code int
	MTU        int
}

// FragNeeded reports whether a is ICMP "fragmentation needed" (type 3
// code 4): a hop could not forward the request, DF set, at its size; MTU
// is what that hop's link carries (RFC 1191).
func (a Answer) FragNeeded() bool {
	return a.Type == int(ipv4.ICMPTypeDestinationUnreachable) && a.Code == 4
}

// AnswerTo reports whether b, an ICMPv4 message from from as read from an
// ip4:icmp socket (no IP header), answers an echo request with id that
// this host sent to dst: dst's echo reply, or a destination unreachable
// or time exceeded that quotes the request (its IP header and the first
// 8 bytes of its ICMP message).
func AnswerTo(b []byte, from, dst netip.Addr, id uint16) (Answer, bool) {
	m, err := icmp.ParseMessage(protocolICMP, b)
	if err != nil {
		return Answer{}, false
	}
	var quoted []byte
	switch body := m.Body.(type) {
	case *icmp.Echo:
		ok := m.Type == ipv4.ICMPTypeEchoReply && uint16(body.ID) == id && from == dst
		return Answer{From: from, Reply: true, Seq: uint16(body.Seq)}, ok
	case *icmp.DstUnreach:
		quoted = body.Data
	case *icmp.TimeExceeded:
		quoted = body.Data
	default:
		return Answer{}, false
	}
	h, err := icmp.ParseIPv4Header(quoted)
	if err != nil || h.Protocol != protocolICMP || !h.Dst.Equal(dst.AsSlice()) {
		return Answer{}, false
	}
	req, err := icmp.ParseMessage(protocolICMP, quoted[h.Len:])
	if err != nil || req.Type != ipv4.ICMPTypeEcho {
		return Answer{}, false
	}
	if e, ok := req.Body.(*icmp.Echo); !ok || uint16(e.ID) != id {
		return Answer{}, false
	}
	a := Answer{From: from, Type: int(b[0]), Code: m.Code}
	if a.FragNeeded() {
		// RFC 1191: the next-hop MTU is in the header's last two bytes.
		a.MTU = int(binary.BigEndian.Uint16(b[6:8]))
	}
	return a, true
}
