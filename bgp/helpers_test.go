package bgp

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ducksnest/netd/bgp/bgptest"
	"github.com/ducksnest/netd/policy/desired"
)

const testASN = 64512

var podCIDR = netip.MustParsePrefix("10.244.0.0/16")

// node is a test cluster node: its address and its pod blocks.
type node struct {
	name   string
	addr   netip.Addr
	blocks []netip.Prefix
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func exact(ps ...netip.Prefix) []desired.PrefixRange {
	var out []desired.PrefixRange
	for _, p := range ps {
		out = append(out, desired.PrefixRange{Prefix: p, MinLen: p.Bits(), MaxLen: p.Bits()})
	}
	return out
}

// nodePeer is the peer entry for another cluster node: import exactly
// its blocks, export ours.
func nodePeer(n node) desired.Peer {
	return desired.Peer{
		Name: n.name, Kind: desired.PeerNode, Address: n.addr, ASN: testASN,
		ExportOwnBlocks: true, Import: desired.Import{Ranges: exact(n.blocks...), MaxPrefixes: 10},
	}
}

// speakerCfg is self's configuration with the given peers, short timers
// and graceful restart.
func speakerCfg(self node, peers ...desired.Peer) desired.Speaker {
	return desired.Speaker{
		ASN: testASN, RouterID: self.addr, ListenAddr: self.addr, ListenPort: bgptest.Port,
		Timers:          desired.Timers{HoldTime: 3 * time.Second, Keepalive: time.Second, ConnectRetry: time.Second},
		GracefulRestart: desired.GracefulRestart{Enabled: true, RestartTime: 30 * time.Second, StalePathTime: 30 * time.Second},
		PodCIDR:         podCIDR,
		Peers:           peers,
	}
}

func fullMesh(self node, all ...node) desired.Speaker {
	var peers []desired.Peer
	for _, n := range all {
		if n.addr != self.addr {
			peers = append(peers, nodePeer(n))
		}
	}
	return speakerCfg(self, peers...)
}

func newSpeaker(t testing.TB, reg prometheus.Registerer, opts ...Option) *Speaker {
	t.Helper()
	s := New(bgptest.Logger(t), reg, opts...)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Stop(ctx, false); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return s
}

func reconcile(t testing.TB, s *Speaker, cfg desired.Speaker, own ...netip.Prefix) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Reconcile(ctx, cfg, own); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
}

// route returns what s learned for p.
func route(s *Speaker, p netip.Prefix) (Learned, bool) {
	i := slices.IndexFunc(s.Learned(), func(l Learned) bool { return l.Prefix == p })
	if i < 0 {
		return Learned{}, false
	}
	return s.Learned()[i], true
}

func learnedPrefixes(s *Speaker) []netip.Prefix {
	var out []netip.Prefix
	for _, l := range s.Learned() {
		out = append(out, l.Prefix)
	}
	return out
}

// hasVia reports whether s learned p with next hop nh from peer name.
func hasVia(s *Speaker, p netip.Prefix, nh netip.Addr, peer string) bool {
	l, ok := route(s, p)
	return ok && slices.Equal(l.NextHops, []netip.Addr{nh}) && slices.Equal(l.Peers, []string{peer})
}

func nodes(t testing.TB, n int) []node {
	addrs := bgptest.Addrs(t, n)
	out := make([]node, n)
	for i, a := range addrs {
		out[i] = node{name: string(rune('a' + i)), addr: a, blocks: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i + 1), 0}), 24)}}
	}
	return out
}

const wait = 10 * time.Second
