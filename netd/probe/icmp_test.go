package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

func marshal(t *testing.T, m icmp.Message) []byte {
	t.Helper()
	b, err := m.Marshal(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// quote is what a router puts in an ICMP error about a packet from src
// to dst carrying msg: its IP header and the first 8 bytes of msg.
func quote(t *testing.T, src, dst netip.Addr, msg []byte) []byte {
	t.Helper()
	h, err := (&ipv4.Header{Version: 4, Len: 20, TotalLen: 20 + len(msg), TTL: 64, Protocol: protocolICMP, Src: src.AsSlice(), Dst: dst.AsSlice()}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return append(h, msg[:8]...)
}

// TestAnswerTo: the destination's echo reply to our id, and the ICMP
// errors (frag-needed with its MTU, other unreachables, time exceeded)
// that quote our request are answers; replies and errors about another
// id, destination or message, and our own request, are not.
func TestAnswerTo(t *testing.T) {
	src, dst, other := netip.MustParseAddr("10.244.0.20"), netip.MustParseAddr("10.244.1.20"), netip.MustParseAddr("10.244.1.21")
	router := netip.MustParseAddr("100.64.0.4")
	const id = 0x1234
	req, err := EchoRequest(id, 7, make([]byte, 1252))
	if err != nil {
		t.Fatal(err)
	}
	otherReq, err := EchoRequest(0x9999, 7, nil)
	if err != nil {
		t.Fatal(err)
	}
	stamp := marshal(t, icmp.Message{Type: ipv4.ICMPTypeTimestamp, Body: &icmp.RawBody{Data: []byte{0x12, 0x34, 0, 7, 0, 0, 0, 0}}})
	ours, toOther := quote(t, src, dst, req), quote(t, src, other, req)
	frag := func(quoted []byte) []byte {
		b := marshal(t, icmp.Message{Type: ipv4.ICMPTypeDestinationUnreachable, Code: 4, Body: &icmp.DstUnreach{Data: quoted}})
		binary.BigEndian.PutUint16(b[6:], 1200) // the next-hop MTU
		return b
	}
	for _, c := range []struct {
		name string
		b    []byte
		from netip.Addr
		want Answer
		ok   bool
	}{
		{"reply", marshal(t, icmp.Message{Type: ipv4.ICMPTypeEchoReply, Body: &icmp.Echo{ID: id, Seq: 7}}), dst, Answer{From: dst, Reply: true, Seq: 7}, true},
		{"reply to another id", marshal(t, icmp.Message{Type: ipv4.ICMPTypeEchoReply, Body: &icmp.Echo{ID: 0x9999, Seq: 7}}), dst, Answer{}, false},
		{"reply from another host", marshal(t, icmp.Message{Type: ipv4.ICMPTypeEchoReply, Body: &icmp.Echo{ID: id, Seq: 7}}), other, Answer{}, false},
		{"our own request", req, dst, Answer{}, false},
		{"frag-needed", frag(ours), router, Answer{From: router, Type: 3, Code: 4, MTU: 1200}, true},
		{"frag-needed for another destination", frag(toOther), router, Answer{}, false},
		{"frag-needed for another id", frag(quote(t, src, dst, otherReq)), router, Answer{}, false},
		{"frag-needed for a timestamp request", frag(quote(t, src, dst, stamp)), router, Answer{}, false},
		{"host unreachable", marshal(t, icmp.Message{Type: ipv4.ICMPTypeDestinationUnreachable, Code: 1, Body: &icmp.DstUnreach{Data: ours}}), router, Answer{From: router, Type: 3, Code: 1}, true},
		{"time exceeded", marshal(t, icmp.Message{Type: ipv4.ICMPTypeTimeExceeded, Body: &icmp.TimeExceeded{Data: ours}}), router, Answer{From: router, Type: 11}, true},
		{"a truncated quote", marshal(t, icmp.Message{Type: ipv4.ICMPTypeTimeExceeded, Body: &icmp.TimeExceeded{Data: ours[:24]}}), router, Answer{}, false},
		{"not icmp", []byte{1, 2}, dst, Answer{}, false},
	} {
		got, ok := AnswerTo(c.b, c.from, dst, id)
		if ok != c.ok || ok && got != c.want {
			t.Errorf("%s: %+v %v, want %+v %v", c.name, got, ok, c.want, c.ok)
		}
		if ok && got.FragNeeded() != (c.name == "frag-needed") {
			t.Errorf("%s: FragNeeded %v", c.name, got.FragNeeded())
		}
	}
}

// scriptConn returns what it is given, one read at a time, then fails
// with its end error.
type scriptConn struct {
	reads []reply
	errs  map[int]error // the read at this index fails instead
	n     int
	end   error
}

func (c *scriptConn) ReadFrom(b []byte) (int, net.Addr, error) {
	defer func() { c.n++ }()
	if err := c.errs[c.n]; err != nil {
		return 0, nil, err
	}
	if len(c.reads) == 0 {
		return 0, nil, c.end
	}
	r := c.reads[0]
	c.reads = c.reads[1:]
	return copy(b, r.b), r.from, nil
}

func (c *scriptConn) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }
func (c *scriptConn) Close() error                              { return nil }

// TestReadEchoReplies: every echo reply with the id is handed over with
// its sender, sequence number and data; other messages and a transient
// read error are passed over; a closed socket or a passed read deadline
// ends the reading, and so does fn returning true.
func TestReadEchoReplies(t *testing.T) {
	const id = 0x1234
	peer := &net.IPAddr{IP: net.IPv4(192, 168, 0, 12)}
	echo := func(typ ipv4.ICMPType, id, seq int, data string) reply {
		return reply{marshal(t, icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte(data)}}), peer}
	}
	reads := []reply{
		echo(ipv4.ICMPTypeEchoReply, id, 1, "one"),
		echo(ipv4.ICMPTypeEchoReply, 0x9999, 2, "another prober's"),
		echo(ipv4.ICMPTypeEcho, id, 3, "a request"),
		{[]byte{0xff}, peer},
		echo(ipv4.ICMPTypeEchoReply, id, 4, "four"),
	}
	for _, end := range []error{
		net.ErrClosed,
		&net.OpError{Op: "read", Net: "ip4:icmp", Err: os.ErrDeadlineExceeded},
	} {
		c := &scriptConn{reads: slices.Clone(reads), errs: map[int]error{1: errors.New("a transient error")}, end: end}
		var got []string
		ReadEchoReplies(c, id, func(from netip.Addr, seq uint16, data []byte) bool {
			got = append(got, fmt.Sprintf("%v %d %s", from, seq, data))
			return false
		})
		if want := []string{"192.168.0.12 1 one", "192.168.0.12 4 four"}; !slices.Equal(got, want) {
			t.Errorf("ending with %v: got %q, want %q", end, got, want)
		}
	}
	c := &scriptConn{reads: slices.Clone(reads), end: net.ErrClosed}
	n := 0
	ReadEchoReplies(c, id, func(netip.Addr, uint16, []byte) bool { n++; return true })
	if n != 1 || len(c.reads) != 4 {
		t.Errorf("fn returned true: %d calls, %d messages left unread, want 1 and 4", n, len(c.reads))
	}
}
