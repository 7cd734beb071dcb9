package routes

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ducksnest/netd/netd/routes/internal/nstest"
	"github.com/ducksnest/netd/netd/routes/nl"
)

// kernelNS is a fresh namespace with an overlay device ts0 (MTU 1280, a
// /32 address, like tailscale0), a LAN device eth0, and everybody else's
// state: tailscaled's table 52 and rule 5270, a user's static route in
// main.
func kernelNS(t *testing.T) *nstest.NS {
	t.Helper()
	ns := nstest.New(t)
	ns.Script(t, `
link add ts0 mtu 1280 type veth peer name ts0p
link set ts0p up
link set ts0 up
addr add 100.64.0.1/32 dev ts0
link add eth0 type veth peer name eth0p
link set eth0p up
link set eth0 up
addr add 192.168.0.10/24 dev eth0
route add 10.244.9.0/24 dev ts0 table 52
route add 100.64.0.5 dev ts0 table 52
rule add pref 5270 lookup 52
route add 10.50.0.0/16 via 192.168.0.1 dev eth0 proto static
rule add pref 5260 from 192.168.0.0/24 lookup 99
`)
	return ns
}

func kernelReconciler(t *testing.T, ns *nstest.NS) *Reconciler {
	t.Helper()
	k, err := nl.Open(ns.Handle, nl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	r, err := New(k, testCfg, slog.New(slog.NewTextHandler(t.Output(), nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// othersState is what the namespace shows of everybody else.
func othersState(t *testing.T, ns *nstest.NS) string {
	return ns.IP(t, "route", "show", "table", "52") + ns.IP(t, "route", "show", "table", "main") +
		ns.IP(t, "route", "show", "table", "244", "proto", "static") +
		grepOut(ns.IP(t, "rule"), "5260:\tfrom all lookup 244 proto 244")
}

func grepOut(s, drop string) string {
	var b strings.Builder
	for l := range strings.Lines(s) {
		if !strings.Contains(l, drop) {
			b.WriteString(l)
		}
	}
	return b.String()
}

func TestKernelReconcile(t *testing.T) {
	ctx := context.Background()
	ns := kernelNS(t)
	// A user's route inside our table: never ours to touch.
	ns.IP(t, "route", "add", "10.99.0.0/16", "via", "192.168.0.1", "table", "244", "proto", "static")
	before := othersState(t, ns)
	r := kernelReconciler(t, ns)

	want := []Route{
		rt("10.244.1.0/24", 1280, onlink("100.64.0.2", "ts0")),
		rt("10.244.2.0/24", 1280, onlink("100.64.0.3", "ts0"), onlink("100.64.0.2", "ts0")),
		rt("10.244.3.0/26", 1500, NextHop{Gateway: addr("192.168.0.12"), Device: "eth0"}),
		rt("10.244.4.0/24", 0, NextHop{Device: "ts0"}),
	}
	res, err := r.Reconcile(ctx, want, true)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Result{Added: 4, RuleAdded: true}, res); diff != "" {
		t.Errorf("first run (-want +got):\n%s", diff)
	}
	const wantTable = `unicast 10.99.0.0/16 via 192.168.0.1 dev eth0 proto static scope global 
unicast 10.244.1.0/24 via 100.64.0.2 dev ts0 proto 244 scope global onlink mtu 1280 advmss 1240 
unicast 10.244.2.0/24 proto 244 scope global mtu 1280 advmss 1240 
	nexthop via 100.64.0.2 dev ts0 weight 1 onlink 
	nexthop via 100.64.0.3 dev ts0 weight 1 onlink 
unicast 10.244.3.0/26 via 192.168.0.12 dev eth0 proto 244 scope global mtu 1500 advmss 1460 
unicast 10.244.4.0/24 dev ts0 proto 244 scope link 
`
	if diff := cmp.Diff(wantTable, ns.IP(t, "-d", "route", "show", "table", "244")); diff != "" {
		t.Errorf("ip -d route show table 244 (-want +got):\n%s", diff)
	}
	if out := ns.IP(t, "rule"); !strings.Contains(out, "5260:\tfrom all lookup 244 proto 244\n") {
		t.Errorf("ip rule shows no rule of ours:\n%s", out)
	}
	// The kernel routes by it: a pod address goes through ts0.
	if out := ns.IP(t, "route", "get", "10.244.1.7"); !strings.Contains(out, "via 100.64.0.2 dev ts0 table 244") {
		t.Errorf("ip route get: %s", out)
	}

	// Idempotent: nothing to write.
	res, err = r.Reconcile(ctx, want, true)
	if err != nil || res.Writes() != 0 || res.Unchanged != 4 {
		t.Errorf("second run: %+v, %v; want 4 unchanged, no writes", res, err)
	}
	got, err := r.Installed(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantN, wantIdx, _ := normalize(want)
	for _, g := range got {
		if diff := cmp.Diff(wantN[wantIdx[keyOf(g.Dst)]], g, cmp.Comparer(routeEqual)); diff != "" {
			t.Errorf("Installed %v (-want +got):\n%s", g.Dst, diff)
		}
	}

	// MTU change and a lost ECMP path are replaces; a dropped route is
	// pruned; everybody else's state stays.
	want[0].MTU, want[0].AdvMSS = 1200, 1160
	want[1].NextHops = want[1].NextHops[:1]
	res, err = r.Reconcile(ctx, want[:3], true)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Result{Replaced: 2, Deleted: 1, Unchanged: 1}, res); diff != "" {
		t.Errorf("change (-want +got):\n%s", diff)
	}
	if out := ns.IP(t, "route", "show", "table", "244", "10.244.2.0/24"); out != "10.244.2.0/24 via 100.64.0.3 dev ts0 proto 244 onlink mtu 1280 advmss 1240 \n" {
		t.Errorf("after losing a path: %q", out)
	}
	if diff := cmp.Diff(before, othersState(t, ns)); diff != "" {
		t.Errorf("others' state changed (-before +after):\n%s", diff)
	}

	if err := r.RemoveAll(ctx); err != nil {
		t.Fatal(err)
	}
	if out := ns.IP(t, "route", "show", "table", "244", "proto", "244"); out != "" {
		t.Errorf("routes left after RemoveAll: %q", out)
	}
	if out := ns.IP(t, "rule"); strings.Contains(out, "lookup 244") {
		t.Errorf("rule left after RemoveAll: %q", out)
	}
	if diff := cmp.Diff(before, othersState(t, ns)); diff != "" {
		t.Errorf("others' state changed by RemoveAll (-before +after):\n%s", diff)
	}
}

func routeEqual(a, b Route) bool { return sameRoute(a, b) }

// TestKernelAdoption: a restarted netd (a new Reconciler on a new socket)
// keeps the routes its predecessor left until it is told to prune.
func TestKernelAdoption(t *testing.T) {
	ctx := context.Background()
	ns := kernelNS(t)
	old := kernelReconciler(t, ns)
	want := []Route{
		rt("10.244.1.0/24", 1280, onlink("100.64.0.2", "ts0")),
		rt("10.244.2.0/24", 1280, onlink("100.64.0.3", "ts0")),
		rt("10.244.3.0/24", 1280, onlink("100.64.0.4", "ts0")),
	}
	if _, err := old.Reconcile(ctx, want, true); err != nil {
		t.Fatal(err)
	}
	before := ns.IP(t, "route", "show", "table", "244")

	r := kernelReconciler(t, ns)
	// Before BGP has converged the new netd knows only one route.
	res, err := r.Reconcile(ctx, want[:1], false)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Result{Unchanged: 1, Kept: 2}, res); diff != "" {
		t.Errorf("start-up (-want +got):\n%s", diff)
	}
	if after := ns.IP(t, "route", "show", "table", "244"); after != before {
		t.Errorf("start-up changed the table:\n%s\nwas:\n%s", after, before)
	}
	d, err := r.Drift(ctx, want[:1])
	if err != nil || len(d.Extra) != 2 || len(d.Missing)+len(d.Different) != 0 || d.RuleMissing {
		t.Errorf("drift %+v, %v; want 2 extra", d, err)
	}
	// End-of-RIB: prune.
	res, err = r.Reconcile(ctx, want[:2], true)
	if err != nil || res.Deleted != 1 || res.Unchanged != 2 {
		t.Errorf("after End-of-RIB: %+v, %v; want 1 deleted, 2 unchanged", res, err)
	}
}

// TestFakeMatchesKernel replays the fake-tested states on a real kernel:
// what Installed reads back must be the same from both, so the fake's
// behaviour is the kernel's where the reconciler depends on it.
func TestFakeMatchesKernel(t *testing.T) {
	ctx := context.Background()
	ns := kernelNS(t)
	ns.Script(t, `
link add lan0 type veth peer name lan0p
link set lan0p up
link set lan0 up
addr add 192.168.0.20/24 dev lan0
`)
	kr := kernelReconciler(t, ns)
	_, fr, _ := newFakeReconciler(t)
	for _, i := range []int{1, 2, 3, 4, 5, 2, 0, 4} {
		st := states[i]
		for name, r := range map[string]*Reconciler{"kernel": kr, "fake": fr} {
			if _, err := r.Reconcile(ctx, st.want, true); err != nil {
				t.Fatalf("%s, state %s: %v", name, st.name, err)
			}
		}
		k, err := kr.Installed(ctx)
		if err != nil {
			t.Fatal(err)
		}
		f, err := fr.Installed(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(f, k, cmp.Comparer(routeEqual)); diff != "" {
			t.Errorf("state %s: Installed (-fake +kernel):\n%s", st.name, diff)
		}
		if d, err := kr.Drift(ctx, st.want); err != nil || !d.Empty() {
			t.Errorf("state %s: kernel drift %+v, %v", st.name, d, err)
		}
	}
}
