package nl

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// TestEncodeRoundTrip decodes what the encoder writes with the dump parser
// (an RTM_NEWROUTE request has the layout of a dumped route), without root.
func TestEncodeRoundTrip(t *testing.T) {
	gw := netip.MustParseAddr
	for _, r := range []Route{
		{Dst: netip.MustParsePrefix("10.244.1.0/24"), Table: 244, Protocol: 244, Type: unix.RTN_UNICAST, MTU: 1280, AdvMSS: 1240,
			NextHops: []NextHop{{Gateway: gw("100.64.0.2"), LinkIndex: 7, Onlink: true}}},
		{Dst: netip.MustParsePrefix("10.244.2.0/26"), Table: 1000, Protocol: 244, Type: unix.RTN_UNICAST, Priority: 20, MTU: 1400,
			NextHops: []NextHop{{Gateway: gw("100.64.0.2"), LinkIndex: 7, Onlink: true}, {Gateway: gw("192.168.0.3"), LinkIndex: 8}}},
		{Dst: netip.MustParsePrefix("10.244.3.0/24"), Table: 244, Protocol: 244, Type: unix.RTN_UNICAST, Scope: unix.RT_SCOPE_LINK,
			NextHops: []NextHop{{LinkIndex: 7}}},
	} {
		b, err := appendRouteMsg(nil, Op{Kind: Replace, Route: r}, 42)
		if err != nil {
			t.Fatal(err)
		}
		if l := binary.NativeEndian.Uint32(b); int(l) != len(b) {
			t.Errorf("%v: length field %d, message %d bytes", r, l, len(b))
		}
		if f := binary.NativeEndian.Uint16(b[6:]); f != unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_REPLACE {
			t.Errorf("%v: flags %#x", r, f)
		}
		var slab []NextHop
		got, ok, err := parseRoute(b[unix.SizeofNlMsghdr:], &slab)
		if err != nil || !ok {
			t.Fatalf("%v: parse: %v, %v", r, ok, err)
		}
		if got.String() != r.String() {
			t.Errorf("round trip:\n got %s\nwant %s", got, r)
		}
	}
	for _, bad := range []Route{
		{Dst: netip.MustParsePrefix("2001:db8::/64"), Table: 244, NextHops: []NextHop{{LinkIndex: 1}}},
		{Dst: netip.MustParsePrefix("10.0.0.0/8"), Table: 0, NextHops: []NextHop{{LinkIndex: 1}}},
		{Dst: netip.MustParsePrefix("10.0.0.0/8"), Table: 244},
		{Dst: netip.MustParsePrefix("10.0.0.0/8"), Table: 244, NextHops: []NextHop{{Gateway: gw("10.1.1.1"), Onlink: true}}},
	} {
		if b, err := appendRouteMsg([]byte("x"), Op{Kind: Replace, Route: bad}, 1); err == nil || string(b) != "x" {
			t.Errorf("%v: encoded (%q, %v); want an error and the buffer untouched", bad, b, err)
		}
	}
}
