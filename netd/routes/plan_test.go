package routes

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ducksnest/netd/policy/desired"
)

func testState() *desired.State {
	a := netip.MustParseAddr
	p := netip.MustParsePrefix
	return &desired.State{
		Networks: desired.Networks{
			Pods: p("10.244.0.0/16"), Overlay: p("100.64.0.0/10"),
			LANs: []desired.LAN{{Name: "home", Prefix: p("192.168.0.0/24"), Site: "home", MTU: 1500}},
		},
		Overlay: desired.Link{Interface: "tailscale0", MTU: 1280},
		Nodes: []desired.Node{
			{Name: "control-plane", Site: "aws", OverlayAddr: a("100.64.0.1")},
			{Name: "firebat", Site: "home", OverlayAddr: a("100.64.0.2"), LANAddr: a("192.168.0.11"), LAN: "home"},
			{Name: "old", Site: "home", OverlayAddr: a("100.64.0.4"), LANAddr: a("192.168.0.13"), LAN: "home"},
			{Name: "ultra", Site: "home", OverlayAddr: a("100.64.0.3"), LANAddr: a("192.168.0.12"), LAN: "home"},
		},
	}
}

// TestPlanTailnetCheck: a route Tailscale would not forward over the
// overlay is reported, not installed; the same next hop over the LAN is
// not subject to the check (that traffic never enters the tunnel).
func TestPlanTailnetCheck(t *testing.T) {
	a := netip.MustParseAddr
	p := netip.MustParsePrefix
	st := testState()
	learned := []Learned{
		{Prefix: p("10.244.0.0/24"), NextHops: []netip.Addr{a("100.64.0.1")}}, // control-plane: carried
		{Prefix: p("10.244.8.0/24"), NextHops: []netip.Addr{a("100.64.0.1")}}, // not carried
		{Prefix: p("10.244.2.0/24"), NextHops: []netip.Addr{a("100.64.0.3")}}, // ultra over the LAN
	}
	check := func(pfx netip.Prefix, nh netip.Addr) string {
		if pfx == p("10.244.0.0/24") {
			return ""
		}
		return "peer " + nh.String() + " does not carry " + pfx.String()
	}
	for _, lanUp := range []bool{true, false} {
		self, _ := st.Node("firebat")
		got, bad := Plan(PlanInput{State: st, Self: self, LANDev: "eth0", LANUp: func(netip.Addr) bool { return lanUp },
			Learned: learned, Check: check})
		var dsts []string
		for _, r := range got {
			dsts = append(dsts, r.Dst.String())
		}
		want := []string{"10.244.0.0/24"}
		if lanUp {
			want = append(want, "10.244.2.0/24")
		}
		if !slices.Equal(dsts, want) {
			t.Errorf("lanUp=%v: installed %v, want %v", lanUp, dsts, want)
		}
		wantBad := []Unroutable{{Prefix: p("10.244.8.0/24"), Reason: "peer 100.64.0.1 does not carry 10.244.8.0/24"}}
		if !lanUp {
			wantBad = append(wantBad, Unroutable{Prefix: p("10.244.2.0/24"), Reason: "peer 100.64.0.3 does not carry 10.244.2.0/24"})
		}
		if diff := cmp.Diff(wantBad, bad, cmpAddrs); diff != "" {
			t.Errorf("lanUp=%v: unroutable (-want +got):\n%s", lanUp, diff)
		}
	}
}

// cmpAddrs compares netip values by value.
var cmpAddrs = cmp.Options{
	cmp.Comparer(func(x, y netip.Addr) bool { return x == y }),
	cmp.Comparer(func(x, y netip.Prefix) bool { return x == y }),
}

// TestPlan checks every row whole: the routes, and each unroutable prefix
// with its reason.
func TestPlan(t *testing.T) {
	a := netip.MustParseAddr
	p := netip.MustParsePrefix
	overlay := func(gw string) NextHop {
		return NextHop{Gateway: a(gw), Device: "tailscale0", Onlink: true}
	}
	lan := func(gw string) NextHop { return NextHop{Gateway: a(gw), Device: "eth0"} }
	learned := []Learned{
		{Prefix: p("10.244.2.0/24"), NextHops: []netip.Addr{a("100.64.0.3")}}, // ultra, same site
		{Prefix: p("10.244.0.0/24"), NextHops: []netip.Addr{a("100.64.0.1")}}, // control-plane, aws
		{Prefix: p("10.244.9.0/24"), NextHops: []netip.Addr{a("100.64.0.1"), a("100.64.0.3")}},
		{Prefix: p("10.244.7.0/24"), NextHops: []netip.Addr{a("100.64.0.2")}},  // ourselves
		{Prefix: p("172.16.0.0/24"), NextHops: []netip.Addr{a("192.168.0.1")}}, // home router
		{Prefix: p("172.17.0.0/24"), NextHops: []netip.Addr{a("8.8.8.8")}},
	}
	tests := []struct {
		name   string
		self   string
		lanDev string
		lanUp  bool
		want   []PlannedRoute
		bad    []Unroutable
	}{
		{
			name: "home node, lan up", self: "firebat", lanDev: "eth0", lanUp: true,
			want: []PlannedRoute{
				{Route: Route{Dst: p("10.244.0.0/24"), NextHops: []NextHop{overlay("100.64.0.1")}, MTU: 1280, AdvMSS: 1240},
					Paths: []PathKind{PathOverlay}, Peers: []string{"control-plane"}},
				{Route: Route{Dst: p("10.244.2.0/24"), NextHops: []NextHop{lan("192.168.0.12")}, MTU: 1500, AdvMSS: 1460},
					Paths: []PathKind{PathLAN}, Peers: []string{"ultra"}},
				{Route: Route{Dst: p("10.244.9.0/24"), NextHops: []NextHop{overlay("100.64.0.1"), lan("192.168.0.12")}, MTU: 1280, AdvMSS: 1240},
					Paths: []PathKind{PathOverlay, PathLAN}, Peers: []string{"control-plane", "ultra"}},
				{Route: Route{Dst: p("172.16.0.0/24"), NextHops: []NextHop{lan("192.168.0.1")}, MTU: 1500, AdvMSS: 1460},
					Paths: []PathKind{PathExternal}, Peers: []string{"192.168.0.1"}},
			},
			bad: []Unroutable{
				{Prefix: p("10.244.7.0/24"), Reason: "next hop is this node"},
				{Prefix: p("172.17.0.0/24"), Reason: "next hop 8.8.8.8 is neither a node nor on a connected network"},
			},
		},
		{
			name: "home node, lan path down falls back to overlay", self: "firebat", lanDev: "eth0", lanUp: false,
			want: []PlannedRoute{
				{Route: Route{Dst: p("10.244.0.0/24"), NextHops: []NextHop{overlay("100.64.0.1")}, MTU: 1280, AdvMSS: 1240},
					Paths: []PathKind{PathOverlay}, Peers: []string{"control-plane"}},
				{Route: Route{Dst: p("10.244.2.0/24"), NextHops: []NextHop{overlay("100.64.0.3")}, MTU: 1280, AdvMSS: 1240},
					Paths: []PathKind{PathOverlay}, Peers: []string{"ultra"}},
				{Route: Route{Dst: p("10.244.9.0/24"), NextHops: []NextHop{overlay("100.64.0.1"), overlay("100.64.0.3")}, MTU: 1280, AdvMSS: 1240},
					Paths: []PathKind{PathOverlay, PathOverlay}, Peers: []string{"control-plane", "ultra"}},
				{Route: Route{Dst: p("172.16.0.0/24"), NextHops: []NextHop{lan("192.168.0.1")}, MTU: 1500, AdvMSS: 1460},
					Paths: []PathKind{PathExternal}, Peers: []string{"192.168.0.1"}},
			},
			bad: []Unroutable{
				{Prefix: p("10.244.7.0/24"), Reason: "next hop is this node"},
				{Prefix: p("172.17.0.0/24"), Reason: "next hop 8.8.8.8 is neither a node nor on a connected network"},
			},
		},
		{
			name: "aws node has no lan: everything over the overlay", self: "control-plane", lanUp: true,
			want: []PlannedRoute{
				{Route: Route{Dst: p("10.244.2.0/24"), NextHops: []NextHop{overlay("100.64.0.3")}, MTU: 1280, AdvMSS: 1240},
					Paths: []PathKind{PathOverlay}, Peers: []string{"ultra"}},
				{Route: Route{Dst: p("10.244.7.0/24"), NextHops: []NextHop{overlay("100.64.0.2")}, MTU: 1280, AdvMSS: 1240},
					Paths: []PathKind{PathOverlay}, Peers: []string{"firebat"}},
				{Route: Route{Dst: p("10.244.9.0/24"), NextHops: []NextHop{overlay("100.64.0.3")}, MTU: 1280, AdvMSS: 1240},
					Paths: []PathKind{PathOverlay}, Peers: []string{"ultra"}},
			},
			bad: []Unroutable{
				{Prefix: p("10.244.0.0/24"), Reason: "next hop is this node"},
				{Prefix: p("172.16.0.0/24"), Reason: "next hop 192.168.0.1 is neither a node nor on a connected network"},
				{Prefix: p("172.17.0.0/24"), Reason: "next hop 8.8.8.8 is neither a node nor on a connected network"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := testState()
			self, err := st.Node(tt.self)
			if err != nil {
				t.Fatal(err)
			}
			got, bad := Plan(PlanInput{State: st, Self: self, LANDev: tt.lanDev,
				LANUp: func(netip.Addr) bool { return tt.lanUp }, Learned: learned})
			if diff := cmp.Diff(tt.want, got, cmpAddrs); diff != "" {
				t.Errorf("routes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.bad, bad, cmpAddrs); diff != "" {
				t.Errorf("unroutable (-want +got):\n%s", diff)
			}
		})
	}
}
