package bgp

import (
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ducksnest/netd/bgp/bgptest"
	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/policy/desired"
)

var testNetworks = desired.Networks{
	Pods: podCIDR, Services: pfx("10.96.0.0/12"), Overlay: pfx("127.0.0.0/8"),
	LANs: []desired.LAN{{Name: "home-lan", Prefix: pfx("192.168.0.0/24")}},
}

// externalCfg is self's configuration with a node peer b (configured, not
// running) and an external peer at ext with the given import, as a
// compiler that did not check the import might have written it.
func externalCfg(self node, b node, ext netip.Addr, imp desired.Import) desired.Speaker {
	nb := nodePeer(b)
	nb.LANAddr = netip.MustParseAddr("192.168.0.12")
	cfg := speakerCfg(self, nb, desired.Peer{Name: "router", Kind: desired.PeerExternal, Address: ext, ASN: 64600, Import: imp})
	cfg.Reserved = testNetworks.Reserved()
	return cfg
}

func TestClassifyExternal(t *testing.T) {
	self := node{name: "a", addr: netip.MustParseAddr("127.0.0.1"), blocks: []netip.Prefix{pfx("10.244.1.0/24")}}
	b := node{name: "b", addr: netip.MustParseAddr("127.0.0.2"), blocks: []netip.Prefix{pfx("10.244.2.0/24")}}
	router := netip.MustParseAddr("192.168.0.1")
	everything := desired.Import{Ranges: []desired.PrefixRange{{Prefix: pfx("0.0.0.0/0"), MinLen: 0, MaxLen: 32}},
		Exceptions: []netip.Prefix{pfx("192.168.0.128/25"), pfx("10.244.1.128/25")}}
	cfg := externalCfg(self, b, router, everything)
	f := importFilterFor(cfg, self.blocks, cfg.Peers[1])
	other := netip.MustParseAddr("192.168.0.12")
	for _, c := range []struct {
		p      string
		nh     netip.Addr
		reason string
		what   string
	}{
		{"172.16.0.0/24", router, "", ""},
		{"8.8.8.0/24", router, "", ""},
		{"172.16.0.0/24", other, ReasonNextHop, ""},
		{"0.0.0.0/0", router, ReasonReserved, "own pod block"},     // covers everything, own block first
		{"10.244.1.0/24", router, ReasonReserved, "own pod block"}, // this node's block
		{"10.244.2.128/25", router, ReasonReserved, "pod block of b"},
		{"10.244.9.0/24", router, ReasonReserved, "pod CIDR"},
		{"10.96.0.0/12", router, ReasonReserved, "service CIDR"},
		{"127.0.0.2/32", router, ReasonReserved, "address of b"},
		{"127.9.0.0/16", router, ReasonReserved, "overlay"},
		{"192.168.0.12/32", router, ReasonReserved, "address of b"},
		{"192.168.0.0/30", router, ReasonReserved, "the peer's own address"},
		{"192.168.0.64/26", router, ReasonReserved, "LAN home-lan"},
		{"192.168.0.128/25", router, "", ""},                         // an exception
		{"192.168.0.128/25", other, ReasonNextHop, ""},               // with a third-party next hop
		{"192.168.0.128/26", router, ReasonReserved, "LAN home-lan"}, // exceptions are exact
		{"10.244.1.128/25", router, ReasonReserved, "own pod block"}, // no exception lifts a node's block
	} {
		reason, what := f.classify(pfx(c.p), c.nh)
		if reason != c.reason || what != c.what {
			t.Errorf("classify(%s via %s) = %q (%q), want %q (%q)", c.p, c.nh, reason, what, c.reason, c.what)
		}
	}
	// Without an accepting range nothing is enforced beyond default reject.
	none := externalCfg(self, b, router, desired.Import{})
	if r := importFilterFor(none, nil, none.Peers[1]).enforced(); len(r) != 0 {
		t.Errorf("enforced rules of an empty import: %+v", r)
	}
}

// An external peer announces prefixes all over (and around) the reserved
// ranges, some with a third-party next hop, to a speaker whose import
// from it is everything: GoBGP accepts exactly what classify accepts, and
// every rejection is counted with classify's reason. This checks the
// rendering of the filter, longest-match prefix sets and all, against its
// definition.
func TestImportPolicyMatchesClassify(t *testing.T) {
	n := nodes(t, 3)
	self, b, ext := n[0], n[1], n[2].addr
	imp := desired.Import{Ranges: []desired.PrefixRange{{Prefix: pfx("0.0.0.0/0"), MinLen: 0, MaxLen: 32}},
		Exceptions: []netip.Prefix{pfx("192.168.0.128/25"), pfx("10.96.5.0/24")}, MaxPrefixes: 10000}
	cfg := externalCfg(self, b, ext, imp)
	cfg.Reserved = desired.Networks{Pods: podCIDR, Services: pfx("10.96.0.0/12"), Overlay: pfx("100.64.0.0/10"),
		LANs: []desired.LAN{{Name: "home-lan", Prefix: pfx("192.168.0.0/24")}}}.Reserved()
	router := bgptest.NewPeer(t, ext, 64600)
	router.AddNeighbor(self.addr, testASN, bgptest.NeighborOptions{})

	// Prefixes near every target, at every length, plus some elsewhere.
	anchors := []netip.Prefix{podCIDR, self.blocks[0], b.blocks[0], pfx("10.96.0.0/12"), pfx("100.64.0.0/10"),
		pfx("192.168.0.0/24"), pfx("192.168.0.128/25"), pfx("10.96.5.0/24"), netip.PrefixFrom(self.addr, 32),
		netip.PrefixFrom(b.addr, 32), netip.PrefixFrom(ext, 32), pfx("192.168.0.12/32"), pfx("172.16.0.0/12")}
	rnd := rand.New(rand.NewPCG(7, 7))
	set := map[netip.Prefix]bool{pfx("0.0.0.0/0"): true}
	for _, a := range anchors {
		for l := range 33 {
			p, _ := a.Addr().Prefix(l)
			set[p] = true
		}
		for range 10 {
			v := a.Addr().As4()
			v[rnd.IntN(4)] ^= byte(1 << rnd.IntN(8))
			p, _ := netip.AddrFrom4(v).Prefix(8 + rnd.IntN(25))
			set[p] = true
		}
	}
	prefixes := slices.SortedFunc(maps.Keys(set), comparePrefix)
	third := netip.MustParseAddr("203.0.113.7")
	nh := map[netip.Prefix]netip.Addr{}
	for i, p := range prefixes {
		nh[p] = ext
		if i%7 == 3 {
			nh[p] = third
			router.AnnounceVia(third, p)
		} else {
			router.Announce(p)
		}
	}

	reg := prometheus.NewPedanticRegistry()
	s := newSpeaker(t, reg)
	reconcile(t, s, cfg, self.blocks...)
	f := importFilterFor(cfg, self.blocks, cfg.Peers[1])
	var want []netip.Prefix
	reasons := map[string]int{}
	for _, p := range prefixes {
		if r, _ := f.classify(p, nh[p]); r == "" {
			want = append(want, p)
		} else {
			reasons[r]++
		}
	}
	if len(want) < 20 || reasons[ReasonReserved] < 100 || reasons[ReasonNextHop] < 10 {
		t.Fatalf("the sample does not exercise the filter: %d accepted, rejected %v", len(want), reasons)
	}
	testutil.Eventually(t, 2*wait, "learned what classify accepts", func() bool {
		return slices.Equal(learnedPrefixes(s), want)
	})
	for r, c := range reasons {
		testutil.Eventually(t, wait, "rejections counted as "+r, func() bool {
			return promtest.ToFloat64(s.metrics.rejected.WithLabelValues("router", r)) == float64(c)
		})
	}
	t.Logf("%d prefixes: %d accepted, rejected %v", len(prefixes), len(want), reasons)
}
