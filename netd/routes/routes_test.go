package routes

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	"github.com/ducksnest/netd/netd/routes/nl"
	"github.com/ducksnest/netd/policy/desired"
)

var testCfg = ConfigFor(desired.Routing{Protocol: 244, Table: 244, RulePriority: 5260})

func newFakeReconciler(t *testing.T) (*nl.Fake, *Reconciler, *prometheus.Registry) {
	t.Helper()
	f := nl.NewFake("ts0", "eth0", "lan0")
	reg := prometheus.NewRegistry()
	r, err := New(f, testCfg, slog.New(slog.NewTextHandler(t.Output(), nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	return f, r, reg
}

// others puts the state of everybody else into f: tailscaled's table 52
// and its rule, a user's static route in main, a user's rule.
func others(f *nl.Fake) {
	ts0, _ := f.LinkIndex(context.Background(), "ts0")
	eth0, _ := f.LinkIndex(context.Background(), "eth0")
	f.SetRule(nl.Rule{Priority: 0, Table: unix.RT_TABLE_LOCAL})
	f.SetRule(nl.Rule{Priority: 5270, Table: 52})
	f.SetRule(nl.Rule{Priority: 32766, Table: unix.RT_TABLE_MAIN})
	f.SetRule(nl.Rule{Priority: 5260, Table: 99, Selectors: true, Desc: "5260: from 192.168.0.0/24 lookup 99"})
	f.SetRoute(nl.Route{Dst: pfx("10.244.9.0/24"), Table: 52, Protocol: unix.RTPROT_BOOT, NextHops: []nl.NextHop{{LinkIndex: ts0}}, Scope: unix.RT_SCOPE_LINK})
	f.SetRoute(nl.Route{Dst: pfx("10.244.1.0/24"), Table: 52, Protocol: 244, NextHops: []nl.NextHop{{LinkIndex: ts0}}, Scope: unix.RT_SCOPE_LINK})
	f.SetRoute(nl.Route{Dst: pfx("10.50.0.0/16"), Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_STATIC, NextHops: []nl.NextHop{{Gateway: addr("192.168.0.1"), LinkIndex: eth0}}})
	f.SetRoute(nl.Route{Dst: pfx("10.244.2.0/24"), Table: unix.RT_TABLE_MAIN, Protocol: 244, NextHops: []nl.NextHop{{Gateway: addr("192.168.0.1"), LinkIndex: eth0}}})
}

const othersDump = `rule 0: from all lookup local
rule 5260: from 192.168.0.0/24 lookup 99
rule 5270: from all lookup 52
rule 32766: from all lookup main
route 10.244.1.0/24 dev ts0 table 52 proto 244 scope 253
route 10.244.2.0/24 via 192.168.0.1 dev eth0 table main proto 244
route 10.244.9.0/24 dev ts0 table 52 proto boot scope 253
route 10.50.0.0/16 via 192.168.0.1 dev eth0 table main proto static
`

// withOthers merges the expected lines of a state into othersDump, in the
// fake's order: rules by priority (a new rule after older ones of the same
// priority), then routes sorted.
func withOthers(lines string) string {
	var rules, routes []string
	for l := range strings.Lines(othersDump + strings.TrimSpace(lines) + "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "rule "):
			rules = append(rules, l)
		case l != "":
			routes = append(routes, l)
		}
	}
	prio := func(l string) int {
		n, _ := strconv.Atoi(strings.TrimPrefix(strings.SplitN(l, ":", 2)[0], "rule "))
		return n
	}
	slices.SortStableFunc(rules, func(a, b string) int { return prio(a) - prio(b) })
	slices.Sort(routes)
	return strings.Join(append(rules, routes...), "\n") + "\n"
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

func onlink(gw, dev string) NextHop { return NextHop{Gateway: addr(gw), Device: dev, Onlink: true} }

func rt(dst string, mtu int, hops ...NextHop) Route {
	adv := 0
	if mtu > 0 {
		adv = mtu - 40
	}
	return Route{Dst: pfx(dst), NextHops: hops, MTU: mtu, AdvMSS: adv}
}

type state struct {
	name string
	want []Route
	dump string // our lines; withOthers adds everybody else's
}

var states = []state{
	{name: "empty", dump: `rule 5260: from all lookup 244 proto 244`},
	{
		name: "one",
		want: []Route{rt("10.244.1.0/24", 1280, onlink("100.64.0.2", "ts0"))},
		dump: `rule 5260: from all lookup 244 proto 244
route 10.244.1.0/24 via 100.64.0.2 dev ts0 onlink table 244 proto 244 mtu 1280 advmss 1240`,
	},
	{
		name: "two-and-lan",
		want: []Route{
			rt("10.244.1.0/24", 1280, onlink("100.64.0.2", "ts0")),
			rt("10.244.3.0/26", 1500, NextHop{Gateway: addr("192.168.0.12"), Device: "lan0"}),
		},
		dump: `rule 5260: from all lookup 244 proto 244
route 10.244.1.0/24 via 100.64.0.2 dev ts0 onlink table 244 proto 244 mtu 1280 advmss 1240
route 10.244.3.0/26 via 192.168.0.12 dev lan0 table 244 proto 244 mtu 1500 advmss 1460`,
	},
	{
		name: "mtu-change",
		want: []Route{
			rt("10.244.1.0/24", 1200, onlink("100.64.0.2", "ts0")),
			rt("10.244.3.0/26", 1500, NextHop{Gateway: addr("192.168.0.12"), Device: "lan0"}),
		},
		dump: `rule 5260: from all lookup 244 proto 244
route 10.244.1.0/24 via 100.64.0.2 dev ts0 onlink table 244 proto 244 mtu 1200 advmss 1160
route 10.244.3.0/26 via 192.168.0.12 dev lan0 table 244 proto 244 mtu 1500 advmss 1460`,
	},
	{
		name: "ecmp",
		want: []Route{
			rt("10.244.1.0/24", 1280, onlink("100.64.0.3", "ts0"), onlink("100.64.0.2", "ts0")),
			rt("10.244.4.0/24", 0, NextHop{Device: "ts0"}),
		},
		dump: `rule 5260: from all lookup 244 proto 244
route 10.244.1.0/24 table 244 proto 244 mtu 1280 advmss 1240 nexthop via 100.64.0.2 dev ts0 onlink nexthop via 100.64.0.3 dev ts0 onlink
route 10.244.4.0/24 dev ts0 table 244 proto 244 scope 253`,
	},
	{
		name: "device-to-gateway",
		want: []Route{
			rt("10.244.4.0/24", 0, onlink("100.64.0.4", "ts0")),
		},
		dump: `rule 5260: from all lookup 244 proto 244
route 10.244.4.0/24 via 100.64.0.4 dev ts0 onlink table 244 proto 244`,
	},
}

// TestStates applies desired states in order and in random orders, with
// pruning; each must leave exactly its text, everybody else's untouched.
func TestStates(t *testing.T) {
	ctx := context.Background()
	run := func(t *testing.T, order []int) {
		f, r, _ := newFakeReconciler(t)
		others(f)
		for _, i := range order {
			st := states[i]
			if _, err := r.Reconcile(ctx, st.want, true); err != nil {
				t.Fatalf("state %s: %v", st.name, err)
			}
			if diff := cmp.Diff(withOthers(st.dump), f.Dump()); diff != "" {
				t.Fatalf("state %s (order %v): dump (-want +got):\n%s", st.name, order, diff)
			}
			before := f.Writes()
			res, err := r.Reconcile(ctx, st.want, true)
			if err != nil || f.Writes() != before || res.Writes() != 0 || res.Unchanged != len(st.want) {
				t.Fatalf("state %s again: res %+v, %d writes, err %v; want no writes", st.name, res, f.Writes()-before, err)
			}
		}
	}
	t.Run("in-order", func(t *testing.T) {
		run(t, []int{0, 1, 2, 3, 4, 5, 0})
	})
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		order := rng.Perm(len(states))
		order = append(order, rng.Perm(len(states))...)
		t.Run("random", func(t *testing.T) { run(t, order) })
	}
}

// leftover returns a route of ours as a previous netd left it.
func leftover(f *nl.Fake, dst string, mtu int) nl.Route {
	ts0, _ := f.LinkIndex(context.Background(), "ts0")
	return nl.Route{Dst: pfx(dst), Table: 244, Protocol: 244, MTU: mtu, AdvMSS: mtu - 40,
		NextHops: []nl.NextHop{{Gateway: addr("100.64.0.2"), LinkIndex: ts0, Onlink: true}}}
}

func TestAdoptLeftovers(t *testing.T) {
	ctx := context.Background()
	f, r, reg := newFakeReconciler(t)
	others(f)
	f.SetRoute(leftover(f, "10.244.1.0/24", 1280)) // wanted as is
	f.SetRoute(leftover(f, "10.244.5.0/24", 1280)) // no longer wanted
	f.SetRoute(leftover(f, "10.244.6.0/24", 1400)) // wanted with another MTU
	f.SetRule(nl.Rule{Priority: 5260, Table: 244, Protocol: 244})
	want := []Route{
		rt("10.244.1.0/24", 1280, onlink("100.64.0.2", "ts0")),
		rt("10.244.6.0/24", 1280, onlink("100.64.0.2", "ts0")),
	}
	res, err := r.Reconcile(ctx, want, false)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Result{Unchanged: 1, Replaced: 1, Kept: 1}, res); diff != "" {
		t.Errorf("start-up result (-want +got):\n%s", diff)
	}
	wantDump := withOthers(`rule 5260: from all lookup 244 proto 244
route 10.244.1.0/24 via 100.64.0.2 dev ts0 onlink table 244 proto 244 mtu 1280 advmss 1240
route 10.244.5.0/24 via 100.64.0.2 dev ts0 onlink table 244 proto 244 mtu 1280 advmss 1240
route 10.244.6.0/24 via 100.64.0.2 dev ts0 onlink table 244 proto 244 mtu 1280 advmss 1240`)
	if diff := cmp.Diff(wantDump, f.Dump()); diff != "" {
		t.Errorf("after start-up (-want +got):\n%s", diff)
	}
	if got := testutil.ToFloat64(r.m.kept); got != 1 {
		t.Errorf("netd_routes_unwanted_kept = %v, want 1", got)
	}
	if got := testutil.ToFloat64(r.m.drift); got != 1 {
		t.Errorf("netd_routes_drift = %v, want 1 (the kept leftover)", got)
	}
	// End-of-RIB: now prune.
	res, err = r.Reconcile(ctx, want, true)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Result{Unchanged: 2, Deleted: 1}, res); diff != "" {
		t.Errorf("prune result (-want +got):\n%s", diff)
	}
	if strings.Contains(f.Dump(), "10.244.5.0/24") {
		t.Errorf("leftover not pruned:\n%s", f.Dump())
	}
	if n, err := testutil.GatherAndCount(reg, "netd_routes_writes_total", "netd_routes_installed"); err != nil || n != 4 {
		t.Errorf("gathered %d series, err %v; want 4", n, err)
	}
	if got := testutil.ToFloat64(r.m.installed); got != 2 {
		t.Errorf("netd_routes_installed = %v, want 2", got)
	}
	if got := testutil.ToFloat64(r.m.drift); got != 0 {
		t.Errorf("netd_routes_drift = %v after pruning, want 0", got)
	}
}

func TestPruneOnlyOurs(t *testing.T) {
	ctx := context.Background()
	f, r, _ := newFakeReconciler(t)
	others(f)
	eth0, _ := f.LinkIndex(ctx, "eth0")
	// A user's static route inside our table, and ours at another metric.
	f.SetRoute(nl.Route{Dst: pfx("10.99.0.0/16"), Table: 244, Protocol: unix.RTPROT_STATIC, NextHops: []nl.NextHop{{Gateway: addr("192.168.0.1"), LinkIndex: eth0}}})
	lo := leftover(f, "10.244.7.0/24", 1280)
	lo.Priority = 100
	f.SetRoute(lo)
	f.SetRoute(leftover(f, "10.244.8.0/24", 1280))
	// Wanting the destination the user holds must fail, not overwrite it.
	res, err := r.Reconcile(ctx, []Route{rt("10.99.0.0/16", 1280, onlink("100.64.0.2", "ts0"))}, true)
	if err == nil || !strings.Contains(err.Error(), "protocol 4") || res.Failed != 1 {
		t.Fatalf("res %+v, err %v; want a conflict error", res, err)
	}
	if res.Deleted != 2 {
		t.Errorf("deleted %d, want 2", res.Deleted)
	}
	wantDump := withOthers(`rule 5260: from all lookup 244 proto 244
route 10.99.0.0/16 via 192.168.0.1 dev eth0 table 244 proto static`)
	if diff := cmp.Diff(wantDump, f.Dump()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	f, r, _ := newFakeReconciler(t)
	boom := errors.New("boom")
	f.Fail = func(op nl.Op) error {
		if op.Route.Dst == pfx("10.244.2.0/24") {
			return boom
		}
		return nil
	}
	want := []Route{
		rt("10.244.1.0/24", 1280, onlink("100.64.0.2", "ts0")),
		rt("10.244.2.0/24", 1280, onlink("100.64.0.3", "ts0")),
		rt("10.244.3.0/24", 1280, onlink("100.64.0.4", "nosuchdev")),
		rt("2001:db8::/64", 1280, onlink("100.64.0.4", "ts0")),
		rt("10.244.4.0/24", 1280),
		rt("10.244.1.0/24", 1280, onlink("100.64.0.9", "ts0")), // differs: an error
		rt("10.244.1.0/24", 1280, onlink("100.64.0.2", "ts0")), // the same again: fine
		{Dst: pfx("10.244.5.0/24"), NextHops: []NextHop{{Gateway: addr("100.64.0.5"), Onlink: true}}},
	}
	res, err := r.Reconcile(ctx, want, true)
	if !errors.Is(err, boom) || !errors.Is(err, unix.ENODEV) {
		t.Errorf("err = %v; want boom and ENODEV in it", err)
	}
	for _, s := range []string{"10.244.2.0/24", "nosuchdev", "2001:db8::/64", "10.244.4.0/24: no next hop", "wanted twice, differently", "10.244.5.0/24: an onlink"} {
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("err does not mention %q: %v", s, err)
		}
	}
	if res.Added != 1 || res.Failed != 6 || !res.RuleAdded {
		t.Errorf("res = %+v; want 1 added, 6 failed, rule added", res)
	}
	if got := testutil.ToFloat64(r.m.drift); got != 6 {
		t.Errorf("netd_routes_drift = %v, want 6 (the failed routes)", got)
	}
	// The rule cannot be added: one more.
	f.Fail = func(nl.Op) error { return nil }
	f.FailRule = boom
	if err := f.DelRule(ctx, r.ourRule()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, want[:1], true); !errors.Is(err, boom) {
		t.Errorf("err = %v; want the rule's failure", err)
	}
	if got := testutil.ToFloat64(r.m.drift); got != 1 {
		t.Errorf("netd_routes_drift = %v with the rule missing, want 1", got)
	}
	// Deleting what is gone is not an error.
	if err := r.RemoveAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveAll(ctx); err != nil {
		t.Fatal(err)
	}
	if d := f.Dump(); d != "" {
		t.Errorf("after RemoveAll: %q", d)
	}
}

func TestRemoveAllLeavesOthers(t *testing.T) {
	ctx := context.Background()
	f, r, _ := newFakeReconciler(t)
	others(f)
	if _, err := r.Reconcile(ctx, states[4].want, true); err != nil {
		t.Fatal(err)
	}
	f.SetRoute(leftover(f, "10.244.5.0/24", 1280))
	if err := r.RemoveAll(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(othersDump, f.Dump()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// A plain rule at our priority added by somebody else is adopted (no
	// duplicate) and not removed.
	f.SetRule(nl.Rule{Priority: 5260, Table: 244})
	res, err := r.Reconcile(ctx, nil, true)
	if err != nil || res.RuleAdded {
		t.Fatalf("res %+v, err %v; want no rule added", res, err)
	}
	if err := r.RemoveAll(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(f.Dump(), "rule 5260: from all lookup 244\n") {
		t.Errorf("someone else's rule removed:\n%s", f.Dump())
	}
}

func TestInstalledAndDrift(t *testing.T) {
	ctx := context.Background()
	f, r, _ := newFakeReconciler(t)
	others(f)
	want := []Route{
		rt("10.244.3.0/24", 1280, onlink("100.64.0.3", "ts0"), onlink("100.64.0.2", "ts0")),
		rt("10.244.1.0/24", 1280, onlink("100.64.0.2", "ts0")),
	}
	d, err := r.Drift(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Missing) != 2 || !d.RuleMissing || len(d.Extra)+len(d.Different) != 0 {
		t.Errorf("drift before = %+v", d)
	}
	if _, err := r.Reconcile(ctx, want, true); err != nil {
		t.Fatal(err)
	}
	got, err := r.Installed(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantInstalled := []Route{
		rt("10.244.1.0/24", 1280, onlink("100.64.0.2", "ts0")),
		rt("10.244.3.0/24", 1280, onlink("100.64.0.2", "ts0"), onlink("100.64.0.3", "ts0")),
	}
	if diff := cmp.Diff(wantInstalled, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("Installed (-want +got):\n%s", diff)
	}
	if d, err := r.Drift(ctx, want); err != nil || !d.Empty() {
		t.Errorf("drift after = %+v, %v; want none", d, err)
	}
	f.SetRoute(leftover(f, "10.244.5.0/24", 1280))
	f.SetRoute(leftover(f, "10.244.1.0/24", 1400))
	d, err = r.Drift(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Extra) != 1 || d.Extra[0].Dst != pfx("10.244.5.0/24") || len(d.Different) != 1 ||
		d.Different[0].Have.MTU != 1400 || len(d.Missing) != 0 || d.RuleMissing {
		t.Errorf("drift = %+v", d)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, c := range []Config{{0, 244, 5260}, {244, 254, 5260}, {244, 244, 0}, {300, 244, 5260}} {
		if _, err := New(nl.NewFake(), c, log, nil); err == nil {
			t.Errorf("New(%+v) succeeded", c)
		}
	}
	reg := prometheus.NewRegistry()
	if _, err := New(nl.NewFake(), testCfg, log, reg); err != nil {
		t.Fatal(err)
	}
	if _, err := New(nl.NewFake(), testCfg, log, reg); err == nil {
		t.Error("registering the metrics twice succeeded")
	}
}
