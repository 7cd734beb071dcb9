package bgp

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ducksnest/netd/bgp/bgptest"
	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/policy/desired"
)

// Equal paths from two external peers are both kept: two next hops.
func TestECMP(t *testing.T) {
	n := nodes(t, 3)
	anycast := pfx("192.168.60.0/24")
	s := newSpeaker(t, nil)
	var peers []desired.Peer
	for i, x := range n[1:] {
		asn := uint32(65001 + i)
		p := bgptest.NewPeer(t, x.addr, asn)
		p.AddNeighbor(n[0].addr, testASN, bgptest.NeighborOptions{})
		p.Announce(anycast)
		peers = append(peers, desired.Peer{Name: x.name, Kind: desired.PeerExternal, Address: x.addr, ASN: asn,
			Import: desired.Import{Ranges: exact(anycast), MaxPrefixes: 1}})
	}
	reconcile(t, s, speakerCfg(n[0], peers...))
	testutil.Eventually(t, wait, "two equal paths", func() bool {
		l, ok := route(s, anycast)
		return ok && slices.Equal(l.NextHops, []netip.Addr{n[1].addr, n[2].addr}) && slices.Equal(l.Peers, []string{"b", "c"})
	})
}

func TestGRPCLoopbackOnly(t *testing.T) {
	n := nodes(t, 1)
	bad := newSpeaker(t, nil, WithGRPC("0.0.0.0:50051"))
	if err := bad.Reconcile(context.Background(), speakerCfg(n[0]), nil); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("non-loopback gRPC address: err = %v", err)
	}
	addr := net.JoinHostPort(n[0].addr.String(), "50051")
	s := newSpeaker(t, nil, WithGRPC(addr))
	reconcile(t, s, speakerCfg(n[0]))
	testutil.Eventually(t, wait, "gRPC listening", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func TestReconcileErrors(t *testing.T) {
	n := nodes(t, 3)
	s := newSpeaker(t, nil)
	cfg := speakerCfg(n[0])
	cfg.ListenAddr = netip.Addr{}
	if err := s.Reconcile(context.Background(), cfg, nil); err == nil {
		t.Error("no error for a missing listen address")
	}
	// A peer whose password cannot be read fails alone.
	bad := nodePeer(n[1])
	bad.PasswordFile = filepath.Join(t.TempDir(), "missing")
	err := s.Reconcile(context.Background(), speakerCfg(n[0], bad, nodePeer(n[2])), n[0].blocks)
	if err == nil || !strings.Contains(err.Error(), "password") {
		t.Errorf("err = %v, want a password error", err)
	}
	st, _ := s.Status(context.Background())
	if len(st.Peers) != 2 || st.Peers[0].State != "unknown" || st.Peers[1].State == "unknown" {
		t.Errorf("peers %+v: want only the good one configured", st.Peers)
	}
}

func TestCamelKey(t *testing.T) {
	for in, want := range map[string]string{"Topic": "topic", "Remote Addr": "remoteAddr", "Err": "err", "Key": "key", "AdminState": "adminState"} {
		if got := camelKey(in); got != want {
			t.Errorf("camelKey(%q) = %q, want %q", in, got, want)
		}
	}
}
