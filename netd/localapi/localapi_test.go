package localapi

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"tailscale.com/ipn"
	"tailscale.com/ipn/ipnstate"
	"tailscale.com/types/key"
	"tailscale.com/types/views"

	"github.com/ducksnest/netd/policy/desired"
)

// fakeNode is a tailscaled with a control server behind it: EditPrefs
// applies only the masked fields, as the LocalAPI does, and Status shows
// as served (AllowedIPs) the advertised routes that control approves.
type fakeNode struct {
	prefs    ipn.Prefs
	tags     []string
	approve  func(netip.Prefix) bool
	peers    []*ipnstate.PeerStatus
	edits    int
	failEdit error
}

func (f *fakeNode) GetPrefs(context.Context) (*ipn.Prefs, error) { p := f.prefs; return &p, nil }

func (f *fakeNode) EditPrefs(_ context.Context, mp *ipn.MaskedPrefs) (*ipn.Prefs, error) {
	if f.failEdit != nil {
		return nil, f.failEdit
	}
	if mp.AdvertiseRoutesSet {
		f.prefs.AdvertiseRoutes = slices.Clone(mp.AdvertiseRoutes)
	}
	if mp.RouteAllSet {
		f.prefs.RouteAll = mp.RouteAll
	}
	f.edits++
	p := f.prefs
	return &p, nil
}

func (f *fakeNode) Status(context.Context) (*ipnstate.Status, error) {
	self := &ipnstate.PeerStatus{TailscaleIPs: []netip.Addr{netip.MustParseAddr("100.64.0.1")}}
	allowed := []netip.Prefix{netip.MustParsePrefix("100.64.0.1/32")}
	for _, r := range f.prefs.AdvertiseRoutes {
		if f.approve == nil || f.approve(r) {
			allowed = append(allowed, r)
		}
	}
	av := views.SliceOf(allowed)
	self.AllowedIPs = &av
	if f.tags != nil {
		tv := views.SliceOf(f.tags)
		self.Tags = &tv
	}
	st := &ipnstate.Status{Self: self, Peer: map[key.NodePublic]*ipnstate.PeerStatus{}}
	for _, p := range f.peers {
		st.Peer[key.NewNode().Public()] = p
	}
	return st, nil
}

var eq = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

func pfx(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func state() *desired.State {
	return &desired.State{
		Networks: desired.Networks{Pods: netip.MustParsePrefix("10.244.0.0/16"), Overlay: netip.MustParsePrefix("100.64.0.0/10")},
		Tailnet: desired.Tailnet{NodeTag: "tag:k8s-node",
			ApprovedRoutes: map[netip.Prefix][]string{netip.MustParsePrefix("10.244.0.0/16"): {"tag:k8s-node"}}},
	}
}

func TestReconcileKeepsUserRoutes(t *testing.T) {
	ctx := context.Background()
	f := &fakeNode{tags: []string{"tag:k8s-node"}, prefs: ipn.Prefs{RouteAll: true,
		AdvertiseRoutes: pfx("192.168.5.0/24", "10.244.9.0/26", "0.0.0.0/0", "::/0")}}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	a := &Advertiser{Client: f, Metrics: m}
	own := pfx("10.244.1.0/26", "10.244.1.64/26")
	s, err := a.Reconcile(ctx, own, state())
	if err != nil {
		t.Fatal(err)
	}
	want := pfx("0.0.0.0/0", "10.244.1.0/26", "10.244.1.64/26", "192.168.5.0/24", "::/0")
	if d := cmp.Diff(want, s.Advertised, eq); d != "" {
		t.Fatalf("advertised (-want +got):\n%s", d)
	}
	if d := cmp.Diff(want, sortPrefixes(slices.Clone(f.prefs.AdvertiseRoutes)), eq); d != "" {
		t.Fatalf("prefs (-want +got):\n%s", d)
	}
	if d := cmp.Diff(pfx("10.244.9.0/26"), s.Removed, eq); d != "" {
		t.Fatalf("removed: %s", d)
	}
	if d := cmp.Diff(own, s.Added, eq); d != "" {
		t.Fatalf("added: %s", d)
	}
	if len(s.Unapproved)+len(s.NotAutoApproved) != 0 || !s.AcceptRoutes {
		t.Fatalf("status %+v", s)
	}
	// Again: nothing to change, no write.
	if _, err := a.Reconcile(ctx, own, state()); err != nil || f.edits != 1 {
		t.Fatalf("second run: edits=%d err=%v", f.edits, err)
	}
	if got := testutil.ToFloat64(m.edits); got != 1 {
		t.Fatalf("edits metric %v", got)
	}
	if got := testutil.ToFloat64(m.advertised); got != 5 {
		t.Fatalf("advertised metric %v", got)
	}
}

func TestReconcileReportsUnapproved(t *testing.T) {
	ctx := context.Background()
	f := &fakeNode{tags: []string{"tag:other"}, approve: func(p netip.Prefix) bool { return p.Addr().As4()[3] == 0 }}
	reg := prometheus.NewRegistry()
	m, _ := NewMetrics(reg)
	a := &Advertiser{Client: f, Metrics: m}
	s, err := a.Reconcile(ctx, pfx("10.244.1.0/26", "10.244.1.64/26"), state())
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(pfx("10.244.1.64/26"), s.Unapproved, eq); d != "" {
		t.Fatalf("unapproved: %s", d)
	}
	if d := cmp.Diff(pfx("10.244.1.0/26", "10.244.1.64/26"), s.NotAutoApproved, eq); d != "" {
		t.Fatalf("not auto-approved (node lacks the tag): %s", d)
	}
	if s.AcceptRoutes {
		t.Fatal("accept routes reported on")
	}
	if testutil.ToFloat64(m.unapproved) != 1 || testutil.ToFloat64(m.notAuto) != 2 {
		t.Fatal("metrics")
	}
	f.failEdit = errors.New("boom")
	if _, err := a.Reconcile(ctx, pfx("10.244.2.0/26"), state()); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("edit error not returned: %v", err)
	}
}

func peer(name, addr string, tags []string, routes ...string) *ipnstate.PeerStatus {
	a := netip.MustParseAddr(addr)
	allowed := append([]netip.Prefix{netip.PrefixFrom(a, 32)}, pfx(routes...)...)
	av, pv := views.SliceOf(allowed), views.SliceOf(pfx(routes...))
	p := &ipnstate.PeerStatus{HostName: name, TailscaleIPs: []netip.Addr{a, netip.MustParseAddr("fd7a:115c:a1e0::" + strings.Split(addr, ".")[3])},
		AllowedIPs: &av, Online: true}
	if len(routes) > 0 {
		p.PrimaryRoutes = &pv
	}
	if tags != nil {
		tv := views.SliceOf(tags)
		p.Tags = &tv
	}
	return p
}

func TestCheckerAndDiscovery(t *testing.T) {
	ctx := context.Background()
	node := []string{"tag:k8s-node", "tag:onprem"}
	f := &fakeNode{peers: []*ipnstate.PeerStatus{
		peer("ultra", "100.64.0.2", node, "10.244.2.0/24"),
		peer("old", "100.64.0.3", node),
		peer("laptop", "100.64.0.9", nil, "192.168.7.0/24"),
	}}
	routes, err := PeerRoutes(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(pfx("10.244.2.0/24"), routes[netip.MustParseAddr("100.64.0.2")], eq); d != "" {
		t.Fatalf("peer routes: %s", d)
	}
	c := Checker{Overlay: netip.MustParsePrefix("100.64.0.0/10"), Routes: routes}
	nh := netip.MustParseAddr
	for _, tc := range []struct {
		p, nh string
		ok    bool
	}{
		{"10.244.2.64/26", "100.64.0.2", true},
		{"10.244.2.0/24", "100.64.0.2", true},
		{"10.244.0.0/16", "100.64.0.2", false}, // wider than what it carries
		{"10.244.3.0/24", "100.64.0.3", false}, // not advertised/approved
		{"10.244.3.0/24", "100.64.0.77", false},
		{"10.244.3.0/24", "192.168.0.13", true}, // LAN next hop: not Tailscale's business
	} {
		in := c.Check(netip.MustParsePrefix(tc.p), nh(tc.nh))
		if (in == nil) != tc.ok {
			t.Errorf("Check(%s via %s) = %+v, want ok=%v", tc.p, tc.nh, in, tc.ok)
		}
	}
	ok, bad := c.Filter(netip.MustParsePrefix("10.244.2.0/26"), []netip.Addr{nh("100.64.0.2"), nh("100.64.0.3")})
	if len(ok) != 1 || len(bad) != 1 || bad[0].NextHop != nh("100.64.0.3") {
		t.Fatalf("filter: %v %+v", ok, bad)
	}
	peers, err := DiscoverPeers(ctx, f, "tag:k8s-node")
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 2 || peers[0].HostName != "ultra" || peers[1].Addr != nh("100.64.0.3") {
		t.Fatalf("discovered %+v", peers)
	}
	self := &desired.Node{Name: "firebat", OverlayAddr: nh("100.64.0.1"), BGP: desired.Speaker{ASN: 64512, PodCIDR: netip.MustParsePrefix("10.244.0.0/16"),
		Peers: []desired.Peer{
			{Name: "home-router", Kind: desired.PeerExternal, Address: nh("192.168.0.1"), ASN: 64513},
			{Name: "ultra", Kind: desired.PeerNode, Address: nh("100.64.0.2"), ASN: 64512, ExportOwnBlocks: true,
				Import: desired.Import{Ranges: []desired.PrefixRange{{Prefix: netip.MustParsePrefix("10.244.0.0/16"), MinLen: 16, MaxLen: 28}}, MaxPrefixes: 7}},
		}}}
	bp := BGPPeers(self, append(peers, Peer{HostName: "firebat", Addr: nh("100.64.0.1")}))
	var names []string
	for _, p := range bp {
		names = append(names, p.Name)
	}
	if d := cmp.Diff([]string{"home-router", "old", "ultra"}, names, eq); d != "" {
		t.Fatalf("bgp peers: %s", d)
	}
	if bp[1].Import.MaxPrefixes != 7 || bp[1].ASN != 64512 || !bp[1].ExportOwnBlocks || bp[1].Kind != desired.PeerNode {
		t.Fatalf("new peer not templated: %+v", bp[1])
	}
}
