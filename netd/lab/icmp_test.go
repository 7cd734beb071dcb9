package lab

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/ducksnest/netd/netd/probe"
)

// ipPacket is an IPv4 header from src to dst around payload.
func ipPacket(src, dst string, proto byte, payload []byte) []byte {
	h := make([]byte, 20)
	h[0], h[9] = 0x45, proto
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	return append(h, payload...)
}

func marshal(t *testing.T, m icmp.Message) []byte {
	t.Helper()
	b, err := m.Marshal(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseICMP(t *testing.T) {
	dst := netip.MustParseAddr("10.244.1.20")
	router := netip.MustParseAddr("100.64.0.4")
	req, err := probe.EchoRequest(0x1234, 1, make([]byte, 1233))
	if err != nil {
		t.Fatal(err)
	}
	if len(req) != 1241 {
		t.Fatalf("echo request of %d bytes, want 1241", len(req))
	}
	// Routers quote the IP header and the first 8 bytes of the request.
	quoted := ipPacket("10.244.0.20", dst.String(), 1, req[:8])
	frag := marshal(t, icmp.Message{Type: ipv4.ICMPTypeDestinationUnreachable, Code: 4, Body: &icmp.DstUnreach{Data: quoted}})
	binary.BigEndian.PutUint16(frag[6:], 1280) // next-hop MTU
	r, ok := parseICMP(frag, router, 0x1234, dst)
	if !ok || !r.FragNeeded || r.MTU != 1280 || r.From != router {
		t.Errorf("frag-needed: %+v %v", r, ok)
	}
	if _, ok := parseICMP(frag, router, 0x9999, dst); ok {
		t.Error("frag-needed for another echo id was taken as ours")
	}
	if _, ok := parseICMP(frag, router, 0x1234, netip.MustParseAddr("10.244.1.21")); ok {
		t.Error("frag-needed for another destination was taken as ours")
	}
	reply := marshal(t, icmp.Message{Type: ipv4.ICMPTypeEchoReply, Body: &icmp.Echo{ID: 0x1234, Seq: 1}})
	if r, ok := parseICMP(reply, dst, 0x1234, dst); !ok || !r.Reply {
		t.Errorf("echo reply: %+v %v", r, ok)
	}
	if _, ok := parseICMP(reply, netip.MustParseAddr("10.244.9.9"), 0x1234, dst); ok {
		t.Error("echo reply from another host was taken as ours")
	}
	if _, ok := parseICMP(req, dst, 0x1234, dst); ok {
		t.Error("an echo request was taken as the reply")
	}
	unreach := marshal(t, icmp.Message{Type: ipv4.ICMPTypeDestinationUnreachable, Code: 1, Body: &icmp.DstUnreach{Data: quoted}})
	if r, ok := parseICMP(unreach, router, 0x1234, dst); !ok || r.Unreachable != "icmp type 3 code 1 from 100.64.0.4" {
		t.Errorf("host unreachable: %+v %v", r, ok)
	}
	ttl := marshal(t, icmp.Message{Type: ipv4.ICMPTypeTimeExceeded, Body: &icmp.TimeExceeded{Data: quoted}})
	if r, ok := parseICMP(ttl, router, 0x1234, dst); !ok || r.Unreachable != "icmp type 11 code 0 from 100.64.0.4" {
		t.Errorf("time exceeded: %+v %v", r, ok)
	}
}
