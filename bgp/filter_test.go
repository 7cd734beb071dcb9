package bgp

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ducksnest/netd/bgp/bgptest"
	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/policy/desired"
)

func TestClassify(t *testing.T) {
	nodePeer := desired.Peer{Kind: desired.PeerNode, Import: desired.Import{Ranges: []desired.PrefixRange{
		{Prefix: pfx("10.244.2.0/24"), MinLen: 24, MaxLen: 24},
	}}}
	wide := desired.Peer{Kind: desired.PeerNode, Import: desired.Import{Ranges: []desired.PrefixRange{
		{Prefix: pfx("10.0.0.0/8"), MinLen: 8, MaxLen: 16}, // clipped to the pod CIDR: /16 only
	}}}
	ext := desired.Peer{Kind: desired.PeerExternal, Import: desired.Import{Ranges: exact(pfx("192.168.50.0/24"))}}
	for _, tc := range []struct {
		peer desired.Peer
		p    string
		want string
	}{
		{nodePeer, "10.244.2.0/24", ""},
		{wide, "10.244.0.0/16", ""},
		{wide, "10.0.0.0/16", ReasonOutsidePodCIDR},
		{wide, "10.244.1.0/24", ReasonNotAllowed},
		{nodePeer, "10.244.2.128/25", ReasonNotAllowed},
		{nodePeer, "10.244.3.0/24", ReasonNotOwned},
		{nodePeer, "10.0.0.0/16", ReasonOutsidePodCIDR},
		{nodePeer, "192.168.50.0/24", ReasonOutsidePodCIDR},
		{ext, "192.168.50.0/24", ""},
		{ext, "10.244.2.0/24", ReasonReserved},
	} {
		f := importFilterFor(desired.Speaker{PodCIDR: podCIDR}, nil, tc.peer)
		if got, _ := f.classify(pfx(tc.p), tc.peer.Address); got != tc.want {
			t.Errorf("classify(%s, %s) = %q, want %q (filter %+v)", tc.peer.Kind, tc.p, got, tc.want, f)
		}
	}
	acc, over := limitPrefixes([]netip.Prefix{pfx("10.244.3.0/24"), pfx("10.244.1.0/24"), pfx("10.244.2.0/24")}, 2)
	if !slices.Equal(acc, []netip.Prefix{pfx("10.244.1.0/24"), pfx("10.244.2.0/24")}) || !slices.Equal(over, []netip.Prefix{pfx("10.244.3.0/24")}) {
		t.Errorf("limitPrefixes: accepted %v, over %v", acc, over)
	}
}

// A node peer (a plain GoBGP speaker here) announces its blocks and junk;
// only its blocks, up to MaxPrefixes, are accepted, and every rejected path
// is counted with its reason. Widening the import filter applies to the
// paths already received.
func TestImportFilter(t *testing.T) {
	n := nodes(t, 2)
	self, peerAddr := n[0], n[1].addr
	np := bgptest.NewPeer(t, peerAddr, testASN)
	np.AddNeighbor(self.addr, testASN, bgptest.NeighborOptions{})
	owned := []netip.Prefix{pfx("10.244.2.0/24"), pfx("10.244.3.0/24"), pfx("10.244.4.0/24")}
	np.Announce(owned...)
	np.Announce(
		pfx("10.244.9.0/24"),   // another node's block
		pfx("10.244.2.128/25"), // a more-specific of an owned block
		pfx("192.168.1.0/24"),  // outside the pod CIDR
	)

	reg := prometheus.NewPedanticRegistry()
	s := newSpeaker(t, reg)
	peer := desired.Peer{Name: "n", Kind: desired.PeerNode, Address: peerAddr, ASN: testASN, ExportOwnBlocks: true,
		Import: desired.Import{Ranges: exact(owned...), MaxPrefixes: 2}}
	cfg := speakerCfg(self, peer)
	reconcile(t, s, cfg, self.blocks...)

	want := []netip.Prefix{pfx("10.244.2.0/24"), pfx("10.244.3.0/24")} // 10.244.4.0/24 is over the limit
	testutil.Eventually(t, wait, "accepted paths", func() bool { return slices.Equal(learnedPrefixes(s), want) })
	testutil.Eventually(t, wait, "rejections counted", func() bool {
		return promtest.CollectAndCount(s.metrics.rejected) == 4
	})
	wantMetrics := `
# HELP netd_bgp_prefixes_rejected_total Paths received from a peer and rejected by its import filter, by reason.
# TYPE netd_bgp_prefixes_rejected_total counter
netd_bgp_prefixes_rejected_total{peer="n",reason="max_prefixes"} 1
netd_bgp_prefixes_rejected_total{peer="n",reason="not_allowed"} 1
netd_bgp_prefixes_rejected_total{peer="n",reason="not_owned"} 1
netd_bgp_prefixes_rejected_total{peer="n",reason="outside_pod_cidr"} 1
`
	if err := promtest.GatherAndCompare(reg, strings.NewReader(wantMetrics), "netd_bgp_prefixes_rejected_total"); err != nil {
		t.Error(err)
	}
	st, err := s.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p := st.Peers[0]
	if p.State != "established" || p.Received != 6 || p.Accepted != 2 || p.Advertised != 1 {
		t.Errorf("status = %+v", p)
	}
	if diff := cmp.Diff(map[string]int{ReasonMaxPrefixes: 1, ReasonNotAllowed: 1, ReasonNotOwned: 1, ReasonOutsidePodCIDR: 1}, p.Rejected); diff != "" {
		t.Errorf("rejected (-want +got):\n%s", diff)
	}
	if n, err := promtest.GatherAndCount(reg, "netd_bgp_peer_up", "netd_bgp_prefixes_accepted"); err != nil || n != 2 {
		t.Errorf("gauges: %d, %v", n, err)
	}

	// Ownership changes (as Calico IPAM would): the peer now owns
	// 10.244.9.0/24 too, and the limit is raised. No session reset needed.
	peer.Import = desired.Import{Ranges: exact(append(owned, pfx("10.244.9.0/24"))...), MaxPrefixes: 10}
	reconcile(t, s, speakerCfg(self, peer), self.blocks...)
	want = []netip.Prefix{pfx("10.244.2.0/24"), pfx("10.244.3.0/24"), pfx("10.244.4.0/24"), pfx("10.244.9.0/24")}
	testutil.Eventually(t, wait, "newly allowed paths accepted", func() bool { return slices.Equal(learnedPrefixes(s), want) })

	// Narrowing applies too.
	peer.Import = desired.Import{Ranges: exact(owned[0]), MaxPrefixes: 10}
	reconcile(t, s, speakerCfg(self, peer), self.blocks...)
	testutil.Eventually(t, wait, "narrowed", func() bool { return slices.Equal(learnedPrefixes(s), owned[:1]) })
	// A withdrawn path is no longer counted as received.
	np.Withdraw(pfx("192.168.1.0/24"))
	testutil.Eventually(t, wait, "withdrawal seen", func() bool {
		st, err := s.Status(context.Background())
		return err == nil && st.Peers[0].Received == 5
	})
}
