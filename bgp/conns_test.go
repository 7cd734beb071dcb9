package bgp

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/ducksnest/netd/internal/testutil"
)

// TestOpeningConns opens a real TCP connection on loopback, as a peer
// dialling our BGP port would, and checks that the kernel's socket list
// names that peer (inbound, by our listening port) and the address we
// dialled (outbound, by its port), not an idle peer, and neither once
// the connection is closed.
func TestOpeningConns(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	listen := uint16(ln.Addr().(*net.TCPAddr).Port)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ours, dialer, idle := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")
	// From 127.0.0.1's view, 127.0.0.2 dials our listening port; from
	// 127.0.0.2's, we dial 127.0.0.1's port: one namespace shows both.
	ports := map[netip.Addr]uint16{ours: listen, dialer: 179, idle: 179}
	busy, err := openingConns(listen, ports)
	if err != nil {
		t.Fatal(err)
	}
	if !busy[dialer] || !busy[ours] || busy[idle] {
		t.Fatalf("openingConns = %v, want %v and %v (not %v)", busy, dialer, ours, idle)
	}
	// Accepted and closed on both ends: the peer is no longer opening.
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	a.Close()
	testutil.Poll(t, 10*time.Second, "closed connection no longer listed", func() (bool, error) {
		busy, err := openingConns(listen, ports)
		return err == nil && !busy[dialer] && !busy[ours], err
	})
}
