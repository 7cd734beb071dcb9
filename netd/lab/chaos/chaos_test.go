package chaos

import (
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/netd/netd/lab"
)

var timing = Timing{GapMin: time.Second, GapMax: 5 * time.Second, HoldTime: 9 * time.Second}

func TestScheduleReproducible(t *testing.T) {
	nodes, lan := []string{"a", "b", "c"}, []string{"b", "c"}
	s1 := Schedule(42, 500, AllClasses, nodes, lan, timing)
	s2 := Schedule(42, 500, AllClasses, nodes, lan, timing)
	if !reflect.DeepEqual(s1, s2) {
		t.Fatal("the same seed gave two schedules")
	}
	if reflect.DeepEqual(s1, Schedule(43, 500, AllClasses, nodes, lan, timing)) {
		t.Fatal("seeds 42 and 43 gave the same schedule")
	}
	// A prefix of a longer schedule is the shorter one.
	if !reflect.DeepEqual(s1[:100], Schedule(42, 100, AllClasses, nodes, lan, timing)) {
		t.Fatal("the first 100 faults depend on how many are drawn")
	}
	seen := map[Class]bool{}
	for _, f := range s1 {
		seen[f.Class] = true
		if f.Gap < timing.GapMin || f.Gap >= timing.GapMax {
			t.Errorf("%v: gap %v outside [%v, %v)", f, f.Gap, timing.GapMin, timing.GapMax)
		}
		switch f.Class {
		case StopShort:
			if f.Hold >= timing.HoldTime {
				t.Errorf("%v: not shorter than the hold time", f)
			}
		case StopLong:
			if f.Hold <= timing.HoldTime {
				t.Errorf("%v: not longer than the hold time", f)
			}
		case LANFlap:
			if !slices.Contains(lan, f.Node) {
				t.Errorf("%v: node without a LAN", f)
			}
		case Netem:
			if f.Loss < 1 || f.Loss > 5 || f.Hold <= 0 {
				t.Errorf("%v: loss or duration out of range", f)
			}
		case ReloadValid, ReloadBroken, PeerFlap:
			if f.Node != "" {
				t.Errorf("%v: a cluster-wide fault names a node", f)
			}
		}
		if f.Class.perNode() && !slices.Contains(nodes, f.Node) {
			t.Errorf("%v: no node", f)
		}
	}
	if len(seen) != len(AllClasses) {
		t.Errorf("500 faults drew only %d of %d classes", len(seen), len(AllClasses))
	}
}

func TestParseClasses(t *testing.T) {
	cs, err := ParseClasses("kill9, reload-broken")
	if err != nil || !slices.Equal(cs, []Class{Kill9, ReloadBroken}) {
		t.Fatalf("got %v, %v", cs, err)
	}
	if _, err := ParseClasses("kill9,bogus"); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("bogus class: %v", err)
	}
	if cs, _ := ParseClasses("all"); len(cs) != len(AllClasses) {
		t.Fatalf("all: %v", cs)
	}
}

func TestNextMode(t *testing.T) {
	fs := []Fault{{Class: Kill9, Node: "a"}, {Class: SigtermWithdraw, Node: "b"}, {Class: SigtermGraceful, Node: "a"}, {Class: SigtermWithdraw, Node: "a"}}
	for _, c := range []struct {
		i    int
		node string
		want string
	}{{-1, "a", "graceful"}, {-1, "b", "withdraw"}, {2, "a", "withdraw"}, {3, "a", "graceful"}, {0, "c", "graceful"}} {
		if got := nextMode(fs, c.i, c.node); got != c.want {
			t.Errorf("nextMode(%d, %s) = %s, want %s", c.i, c.node, got, c.want)
		}
	}
}

// testLab has a node without a LAN (cp) and two on one LAN (a, b), one
// pod each.
func testLab() *lab.Lab {
	pod := func(node string, a string) lab.Pod {
		return lab.Pod{Name: "pod0", Node: node, Addr: netip.MustParseAddr(a)}
	}
	mk := func(name, lan, overlay, lanAddr, block, podAddr string) *lab.Node {
		n := &lab.Node{Name: name, LAN: lan, OverlayAddr: netip.MustParseAddr(overlay), PodCIDRs: []netip.Prefix{netip.MustParsePrefix(block)}, Pods: []lab.Pod{pod(name, podAddr)}}
		if lanAddr != "" {
			n.LANAddr, n.LANLink = netip.MustParseAddr(lanAddr), lab.Link{Interface: "eth0", MTU: 1500}
		}
		return n
	}
	return &lab.Lab{Overlay: lab.Link{Interface: "tailscale0", MTU: 1280}, Nodes: []*lab.Node{
		mk("cp", "", "100.64.0.4", "", "10.244.0.0/24", "10.244.0.10"),
		mk("a", "home", "100.64.0.1", "192.168.0.11", "10.244.1.0/24", "10.244.1.10"),
		mk("b", "home", "100.64.0.2", "192.168.0.12", "10.244.2.0/24", "10.244.2.10"),
	}}
}

func TestExpectedRoutes(t *testing.T) {
	l := testLab()
	var got []string
	for _, w := range expectedRoutes(l, l.Nodes[1], map[string]netip.Prefix{"b": netip.MustParsePrefix("10.244.5.0/26")}) {
		got = append(got, w.String())
	}
	want := []string{"10.244.0.0/24 via 100.64.0.4 dev tailscale0 mtu 1280", "10.244.2.0/24 via 192.168.0.12 dev eth0 mtu 1500", "10.244.5.0/26 via 192.168.0.12 dev eth0 mtu 1500"}
	if !slices.Equal(got, want) {
		t.Fatalf("routes of a: %q, want %q", got, want)
	}
}

func TestPairKind(t *testing.T) {
	l := testLab()
	ps := l.AllPods()
	pair := func(s, d int) Pair { return Pair{Src: ps[s], Dst: ps[d]} }
	for _, c := range []struct {
		f    Fault
		p    Pair
		want string
	}{
		{Fault{Class: OverlayFlap, Node: "a"}, pair(0, 1), kindCut},      // cp->a crosses a's overlay
		{Fault{Class: OverlayFlap, Node: "a"}, pair(1, 2), kindBudgeted}, // a->b takes the LAN
		{Fault{Class: OverlayFlap, Node: "cp"}, pair(1, 2), kindBudgeted},
		{Fault{Class: Netem, Node: "cp"}, pair(2, 0), kindDegraded},
		{Fault{Class: SigtermWithdraw, Node: "b"}, pair(1, 2), kindDrained},
		{Fault{Class: SigtermWithdraw, Node: "b"}, pair(0, 1), kindBudgeted},
		{Fault{Class: Kill9, Node: "b"}, pair(1, 2), kindBudgeted},
		{Fault{Class: StopLong, Node: "a"}, pair(0, 1), kindBudgeted},
		{Fault{Class: StopLong, Node: "a"}, Pair{Src: ps[1], Dst: lab.Pod{Node: "a"}}, kindReference},
	} {
		if got := pairKind(l, c.f, c.p); got != c.want {
			t.Errorf("%v, %v: %q, want %q", c.f, c.p, got, c.want)
		}
	}
}

// TestReportBudgets feeds the report losses and checks each budget.
func TestReportBudgets(t *testing.T) {
	l := testLab()
	ps := l.AllPods()
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	ms := func(d int) time.Time { return t0.Add(time.Duration(d) * time.Millisecond) }
	p := &Prober{Interval: 20 * time.Millisecond}
	for s := range ps {
		for d := range ps {
			if s != d {
				p.Pairs = append(p.Pairs, Pair{Src: ps[s], Dst: ps[d]})
			}
		}
	}
	idx := func(s, d string) int {
		return slices.IndexFunc(p.Pairs, func(x Pair) bool { return x.Src.Node == s && x.Dst.Node == d })
	}
	lose := func(pair, from, n int) {
		for i := range n {
			p.losses = append(p.losses, Loss{Pair: pair, At: ms(from + 20*i)})
		}
	}
	r := &run{cfg: Config{Seed: 7, Interval: p.Interval}, lab: l, results: []Result{
		{Fault: Fault{Index: 1, Class: Kill9, Node: "a"}, Start: ms(0), Settled: ms(1000), Recovery: 900 * time.Millisecond},
		{Fault: Fault{Index: 2, Class: OverlayFlap, Node: "a"}, Start: ms(2000), Settled: ms(6000), Recovery: 2 * time.Second},
		{Fault: Fault{Index: 3, Class: StopShort, Node: "b"}, Start: ms(7000), Settled: ms(9000), Recovery: time.Second},
		{Fault: Fault{Index: 4, Class: StopShort, Node: "b"}, Start: ms(10000), Settled: ms(12000), Recovery: 3 * time.Second},
	}}
	lose(idx("a", "cp"), 2100, 150) // cut by the overlay flap: excluded
	lose(idx("a", "b"), 7100, 40)   // 800ms under the 1s budget
	rep := r.report(p, time.Minute)
	if !rep.OK() {
		t.Fatalf("violations: %v", rep.Violations)
	}
	// Rows come in AllClasses order.
	if rep.Rows[2].Class != OverlayFlap || rep.Rows[2].Excluded != 150 || rep.Rows[2].Lost != 0 {
		t.Errorf("overlay-flap row: %+v", rep.Rows[2])
	}
	if rep.Rows[1].Class != StopShort || rep.Rows[1].RecoveryP50 != time.Second || rep.Rows[1].RecoveryP99 != 3*time.Second || rep.Rows[1].Lost != 40 {
		t.Errorf("sigstop-short row: %+v", rep.Rows[1])
	}

	lose(idx("cp", "b"), 100, 1)   // one lost in a kill9: over 0
	lose(idx("a", "b"), 10100, 60) // 1.2s in a silent failure: over 1s
	lose(idx("b", "a"), 20000, 2)  // at rest
	rep = r.report(p, time.Minute)
	want := []string{"seed 7: fault #1 kill9 on a: 1 pod pairs over the budget (0 lost)", "seed 7: fault #4 sigstop-short on b for 0s: 1 pod pairs over the budget (<= 1s per pair), the worst lost 1.2s", "seed 7: 2 requests lost at rest"}
	if len(rep.Violations) != len(want) {
		t.Fatalf("violations: %q", rep.Violations)
	}
	for i, w := range want {
		if !strings.HasPrefix(rep.Violations[i], w) {
			t.Errorf("violation %d: %q, want prefix %q", i, rep.Violations[i], w)
		}
	}
}

func TestLongestRun(t *testing.T) {
	t0 := time.Now()
	at := func(ms ...int) []time.Time {
		var out []time.Time
		for _, m := range ms {
			out = append(out, t0.Add(time.Duration(m)*time.Millisecond))
		}
		return out
	}
	if got := longestRun(at(0, 20, 40, 100, 120, 500), 20*time.Millisecond); got != 60*time.Millisecond {
		t.Errorf("longest run %v, want 60ms", got)
	}
	if got := longestRun(nil, 20*time.Millisecond); got != 0 {
		t.Errorf("no losses: %v", got)
	}
}

func TestCheckGrowth(t *testing.T) {
	flat := []Usage{}
	for range 9 {
		flat = append(flat, Usage{Goroutines: 50, FDs: 20, RSS: 40 << 20})
	}
	leaky := []Usage{}
	for i := range 9 {
		leaky = append(leaky, Usage{Goroutines: 50 + float64(20*i), FDs: 20, RSS: 40 << 20})
	}
	leaks, checked := checkGrowth(map[string][]Usage{"a": flat, "b": leaky})
	if !checked || len(leaks) != 1 || leaks[0].Node != "b" || leaks[0].What != "goroutines" {
		t.Fatalf("leaks %v (checked %v), want b's goroutines", leaks, checked)
	}
	if _, checked := checkGrowth(map[string][]Usage{"a": flat[:3]}); checked {
		t.Error("3 samples were enough to check growth")
	}
}
