package lab

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

func ipv4(src, dst string, proto byte, payload []byte) []byte {
	h := make([]byte, 20)
	h[0], h[9] = 0x45, proto
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	return append(h, payload...)
}

func TestParseICMP(t *testing.T) {
	dst := netip.MustParseAddr("10.244.1.20")
	req := echoRequest(0x1234, 1, 1261)
	if checksum(req) != 0 {
		t.Fatalf("echo request checksum does not verify")
	}
	quoted := ipv4("10.244.0.20", dst.String(), 1, req[:8])
	frag := append([]byte{3, 4, 0, 0, 0, 0, 0x05, 0x00}, quoted...) // mtu 1280
	r, ok := parseICMP(ipv4("100.64.0.4", "10.244.0.20", 1, frag), 0x1234, dst)
	if !ok || !r.FragNeeded || r.MTU != 1280 || r.From != netip.MustParseAddr("100.64.0.4") {
		t.Errorf("frag-needed: %+v %v", r, ok)
	}
	if _, ok := parseICMP(ipv4("100.64.0.4", "10.244.0.20", 1, frag), 0x9999, dst); ok {
		t.Error("frag-needed for another echo id was taken as ours")
	}
	reply := append([]byte{0, 0, 0, 0}, req[4:8]...)
	if r, ok := parseICMP(ipv4(dst.String(), "10.244.0.20", 1, reply), 0x1234, dst); !ok || !r.Reply {
		t.Errorf("echo reply: %+v %v", r, ok)
	}
	if _, ok := parseICMP(ipv4("10.244.9.9", "10.244.0.20", 1, reply), 0x1234, dst); ok {
		t.Error("echo reply from another host was taken as ours")
	}
	unreach := append([]byte{3, 1, 0, 0, 0, 0, 0, 0}, quoted...)
	if r, ok := parseICMP(ipv4("100.64.0.4", "10.244.0.20", 1, unreach), 0x1234, dst); !ok || r.Unreachable == "" {
		t.Errorf("host unreachable: %+v %v", r, ok)
	}
}
