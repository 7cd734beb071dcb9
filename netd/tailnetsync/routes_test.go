package tailnetsync

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ducksnest/netd/acl"
	"github.com/ducksnest/netd/policy/desired"
)

func TestCheckRoutes(t *testing.T) {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	nodes := []desired.Node{
		{Name: "a", OverlayAddr: a("100.64.0.1")},
		{Name: "b", OverlayAddr: a("100.64.0.2"), Tailscale: desired.NodeTailscale{Hostname: "b-host"}},
		{Name: "c", OverlayAddr: a("100.64.0.3")},
		{Name: "d", OverlayAddr: a("100.64.0.4")},
		{Name: "e"}, // no blocks: nothing to check
	}
	blocks := map[string][]netip.Prefix{
		"a": {p("10.244.1.0/26"), p("10.244.1.128/26")},
		"b": {p("10.244.2.0/26")},
		"c": {p("10.244.3.0/26")},
		"d": {p("10.244.4.0/26")},
	}
	live := []acl.NodeRoutes{
		// a: one block approved through a covering route, one only advertised.
		{Name: "a", Addrs: []netip.Addr{a("100.64.0.1")}, Advertised: []netip.Prefix{p("10.244.1.0/24")}, Approved: []netip.Prefix{p("10.244.1.0/25"), p("192.168.77.0/24")}},
		// b: matched by its tailnet hostname (another address), all approved.
		{Name: "b-host", Addrs: []netip.Addr{a("100.64.9.9")}, Advertised: []netip.Prefix{p("10.244.2.0/26")}, Approved: []netip.Prefix{p("10.244.2.0/26")}},
		// c: advertises nothing.
		{Name: "c", Addrs: []netip.Addr{a("100.64.0.3")}},
		// d is not on the tailnet.
	}
	got, unserved := CheckRoutes(nodes, blocks, live)
	want := []RouteProblem{
		{Node: "a", Unapproved: []netip.Prefix{p("10.244.1.128/26")}},
		{Node: "c", NotAdvertised: []netip.Prefix{p("10.244.3.0/26")}},
		{Node: "d", NotOnTailnet: true},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(x, y netip.Prefix) bool { return x == y })); diff != "" || unserved != 3 {
		t.Errorf("CheckRoutes (-want +got):\n%s\nunserved %d, want 3", diff, unserved)
	}
	if s := got[0].String(); s != "a: not approved [10.244.1.128/26]" {
		t.Errorf("String() = %q", s)
	}
}
