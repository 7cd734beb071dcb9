package bgp

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/ducksnest/netd/bgp/bgptest"
	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/policy/desired"
)

// A learned route is not passed on: in a full mesh a, b, c plus an external
// router x (eBGP, peered with b only), c and a never see x's route through
// b, and x sees only b's own block, not a's or c's.
func TestNoLeakInFullMesh(t *testing.T) {
	n := nodes(t, 4)
	xAddr := n[3].addr
	n = n[:3]
	extra := pfx("10.244.102.0/24") // b's second block, announced later
	n[1].blocks = append(n[1].blocks, extra)
	xRoute := pfx("192.168.50.0/24")
	x := bgptest.NewPeer(t, xAddr, 65000)
	x.AddNeighbor(n[1].addr, testASN, bgptest.NeighborOptions{})
	x.Announce(xRoute)

	a, b, c := newSpeaker(t, nil), newSpeaker(t, nil), newSpeaker(t, nil)
	bCfg := fullMesh(n[1], n...)
	bCfg.Peers = append(bCfg.Peers, desired.Peer{
		Name: "x", Kind: desired.PeerExternal, Address: xAddr, ASN: 65000, ExportOwnBlocks: true,
		Import: desired.Import{Ranges: exact(xRoute), MaxPrefixes: 10},
	})
	reconcile(t, a, fullMesh(n[0], n...), n[0].blocks...)
	reconcile(t, b, bCfg, n[1].blocks[0])
	reconcile(t, c, fullMesh(n[2], n...), n[2].blocks...)

	testutil.Eventually(t, wait, "b learns x's route", func() bool { return hasVia(b, xRoute, xAddr, "x") })
	testutil.Eventually(t, wait, "c learns a's and b's blocks", func() bool {
		return hasVia(c, n[0].blocks[0], n[0].addr, "a") && hasVia(c, n[1].blocks[0], n[1].addr, "b")
	})
	// Barrier: b announces a new block after it learned x's route; once c
	// and x have it, anything b would have leaked before it has arrived.
	reconcile(t, b, bCfg, n[1].blocks...)
	testutil.Eventually(t, wait, "c and x learn b's new block", func() bool {
		_, ok := route(c, extra)
		return ok && x.Has(extra)
	})
	for _, s := range []*Speaker{a, c} {
		if _, ok := route(s, xRoute); ok {
			t.Errorf("x's route leaked through b: %v", s.Learned())
		}
	}
	var got []netip.Prefix
	for _, r := range x.Received() {
		got = append(got, r.Prefix)
	}
	if want := []netip.Prefix{n[1].blocks[0], extra}; !slices.Equal(got, want) {
		t.Errorf("x received %v, want only b's blocks %v", got, want)
	}
}

// With a route reflector, clients that peer only with it learn each other's
// blocks with the originator's next hop; a non-client gets nothing
// reflected.
func TestRouteReflector(t *testing.T) {
	n := nodes(t, 4)
	rrNode, cl, nonClient := n[0], n[1:3], n[3]
	rr := newSpeaker(t, nil)
	rrCfg := speakerCfg(rrNode)
	rrCfg.RouteReflector, rrCfg.ClusterID = true, rrNode.addr
	for _, c := range cl {
		p := nodePeer(c)
		p.RouteReflectorClient = true
		rrCfg.Peers = append(rrCfg.Peers, p)
	}
	rrCfg.Peers = append(rrCfg.Peers, nodePeer(nonClient))
	reconcile(t, rr, rrCfg, rrNode.blocks...)

	clients := []*Speaker{newSpeaker(t, nil), newSpeaker(t, nil)}
	for i, c := range cl {
		p := nodePeer(rrNode)
		// A client accepts every node's block from the reflector.
		p.Import.Ranges = []desired.PrefixRange{{Prefix: podCIDR, MinLen: 24, MaxLen: 24}}
		reconcile(t, clients[i], speakerCfg(c, p), c.blocks...)
	}
	nc := newSpeaker(t, nil)
	ncPeer := nodePeer(rrNode)
	ncPeer.Import.Ranges = []desired.PrefixRange{{Prefix: podCIDR, MinLen: 24, MaxLen: 24}}
	reconcile(t, nc, speakerCfg(nonClient, ncPeer), nonClient.blocks...)

	testutil.Eventually(t, wait, "clients learn each other's blocks via the reflector", func() bool {
		return hasVia(clients[0], cl[1].blocks[0], cl[1].addr, rrNode.name) &&
			hasVia(clients[1], cl[0].blocks[0], cl[0].addr, rrNode.name) &&
			hasVia(clients[0], rrNode.blocks[0], rrNode.addr, rrNode.name)
	})
	testutil.Eventually(t, wait, "the non-client learns the reflector's own block", func() bool {
		return hasVia(nc, rrNode.blocks[0], rrNode.addr, rrNode.name)
	})
	// Barrier as in TestNoLeakInFullMesh.
	extra := pfx("10.244.100.0/24")
	reconcile(t, rr, rrCfg, rrNode.blocks[0], extra)
	testutil.Eventually(t, wait, "the non-client learns the new block", func() bool { _, ok := route(nc, extra); return ok })
	if got := learnedPrefixes(nc); len(got) != 2 {
		t.Errorf("non-client learned %v, want only the reflector's blocks", got)
	}
	// RFC 4456: a non-client's route is reflected to clients.
	testutil.Eventually(t, wait, "a client learns the non-client's block", func() bool {
		return hasVia(clients[0], nonClient.blocks[0], nonClient.addr, rrNode.name)
	})
}
