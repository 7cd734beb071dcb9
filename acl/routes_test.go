package acl

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ducksnest/netd/acl/acltest"
)

// TestRoutes lists the nodes' subnet routes from both kinds of control
// server.
func TestRoutes(t *testing.T) {
	p, a := netip.MustParsePrefix, netip.MustParseAddr
	cmpAddr := cmp.Comparer(func(x, y netip.Addr) bool { return x == y })
	cmpPrefix := cmp.Comparer(func(x, y netip.Prefix) bool { return x == y })

	ts, err := NewClient(tsTarget(newFakeTailscale(t, defaultPolicy)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ts.Routes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []NodeRoutes{
		{Name: "firebat", Addrs: []netip.Addr{a("100.64.0.1"), a("fd7a:115c:a1e0::1")},
			Advertised: []netip.Prefix{p("10.244.1.0/24"), p("192.168.77.0/24")}, Approved: []netip.Prefix{p("10.244.1.0/24")}},
		{Name: "ultra", Addrs: []netip.Addr{a("100.64.0.2")}, Advertised: []netip.Prefix{p("10.244.2.0/24")}},
	}
	if d := cmp.Diff(want, got, cmpAddr, cmpPrefix); d != "" {
		t.Errorf("tailscale routes (-want +got):\n%s", d)
	}

	hs := acltest.NewHeadscale(t)
	hs.SetNodes([]acltest.Node{{GivenName: "old", IPAddresses: []string{"100.64.0.3"},
		AvailableRoutes: []string{"10.244.4.0/24", "10.244.3.0/24"}, ApprovedRoutes: []string{"10.244.3.0/24"}, SubnetRoutes: []string{"10.244.3.0/24"}}})
	hc, err := NewClient(Target{Kind: KindHeadscale, BaseURL: hs.URL, APIKey: acltest.APIKey})
	if err != nil {
		t.Fatal(err)
	}
	got, err = hc.Routes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want = []NodeRoutes{{Name: "old", Addrs: []netip.Addr{a("100.64.0.3")},
		Advertised: []netip.Prefix{p("10.244.3.0/24"), p("10.244.4.0/24")}, Approved: []netip.Prefix{p("10.244.3.0/24")}}}
	if d := cmp.Diff(want, got, cmpAddr, cmpPrefix); d != "" {
		t.Errorf("headscale routes (-want +got):\n%s", d)
	}
	bad, err := NewClient(Target{Kind: KindHeadscale, BaseURL: hs.URL, APIKey: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Routes(context.Background()); err == nil {
		t.Error("a refused node list is not an error")
	}
}

// TestApplyChangeConflict: a write based on a read that an edit has
// overtaken is refused (If-Match), and the edit stays.
func TestApplyChangeConflict(t *testing.T) {
	ctx := context.Background()
	f := newFakeTailscale(t, defaultPolicy)
	c, err := NewClient(tsTarget(f))
	if err != nil {
		t.Fatal(err)
	}
	want := compiled(t)
	if _, err := c.Apply(ctx, want, Options{Force: true}); err != nil {
		t.Fatal(err)
	}
	cut := withoutPodGrant(t, want)
	ch, err := c.Diff(ctx, cut)
	if err != nil || ch.Unchanged || ch.Drift != "" {
		t.Fatalf("diff: %+v %v", ch, err)
	}
	f.edit(func(p string) string { return p + "\n// edited in the admin console\n" })
	if _, err := c.ApplyChange(ctx, cut, ch, Options{}); !errors.Is(err, ErrConflict) {
		t.Fatalf("apply over an edit made after the read: %v, want ErrConflict", err)
	}
	if live, _ := f.current(); !strings.Contains(live, "edited in the admin console") {
		t.Fatal("the edit was overwritten")
	}
}
