package nl_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ducksnest/netd/netd/routes/internal/nstest"
	"github.com/ducksnest/netd/netd/routes/nl"
)

func open(t *testing.T, opts nl.Options) (*nstest.NS, *nl.Netlink, int) {
	t.Helper()
	ns := nstest.New(t)
	ns.Script(t, `
link add ts0 mtu 1280 type veth peer name ts0p
link set ts0p up
link set ts0 up
addr add 100.64.0.1/32 dev ts0
`)
	k, err := nl.Open(ns.Handle, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	idx, err := k.LinkIndex(context.Background(), "ts0")
	if err != nil {
		t.Fatal(err)
	}
	return ns, k, idx
}

func route(i, table, link int) nl.Route {
	return nl.Route{
		Dst:      netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24),
		Table:    table,
		Protocol: 244,
		NextHops: []nl.NextHop{{Gateway: netip.MustParseAddr("100.64.0.2"), LinkIndex: link, Onlink: true}},
		MTU:      1280,
		AdvMSS:   1240,
	}
}

// TestApplyMapsErrors sends several batches (a small batch size forces many
// sendmsg calls) with bad routes among good ones: exactly the bad ones fail,
// with the kernel's error, and everything else is installed.
func TestApplyMapsErrors(t *testing.T) {
	for _, errorsOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("ackErrorsOnly=%v", errorsOnly), func(t *testing.T) {
			testApplyMapsErrors(t, nl.Options{BatchBytes: 1024, AckErrorsOnly: errorsOnly})
		})
	}
}

func testApplyMapsErrors(t *testing.T, opts nl.Options) {
	ctx := context.Background()
	ns, k, ts0 := open(t, opts)
	const n = 600
	var ops []nl.Op
	bad := map[int]bool{}
	unencodable := map[int]bool{300: true, 301: true}
	for i := range n {
		r := route(i, 1000, ts0)
		if unencodable[i] {
			r.Dst = netip.MustParsePrefix("2001:db8::/64")
		}
		if i%97 == 5 || i == 12 { // 12: the last of the first batch (13 messages of 80 bytes)
			r.NextHops[0].LinkIndex = 999 // no such device
			bad[i] = true
		}
		ops = append(ops, nl.Op{Kind: nl.Replace, Route: r})
	}
	// Deleting what is not there is fine.
	ops = append(ops, nl.Op{Kind: nl.Delete, Route: route(4000, 1000, ts0)})
	errs := k.Apply(ctx, ops)
	for i, err := range errs {
		switch {
		case unencodable[i]:
			if err == nil || !strings.Contains(err.Error(), "not an IPv4 prefix") {
				t.Errorf("op %d: err %v, want an encoding error", i, err)
			}
		case bad[i] && !errors.Is(err, unix.ENODEV):
			t.Errorf("op %d: err %v, want ENODEV", i, err)
		case !bad[i] && err != nil:
			t.Errorf("op %d: %v", i, err)
		}
	}
	got, err := k.ListRoutes(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n-len(bad)-len(unencodable) {
		t.Fatalf("listed %d routes, want %d", len(got), n-len(bad)-len(unencodable))
	}
	want := ops[0].Route
	want.Type = unix.RTN_UNICAST
	if s := fmt.Sprint(got[0]); s != fmt.Sprint(want) {
		t.Errorf("read back %s, want %s", s, want)
	}
	out := ns.IP(t, "-d", "route", "show", "table", "1000", "10.0.0.0/24")
	if !strings.Contains(out, "10.0.0.0/24 via 100.64.0.2 dev ts0 proto 244 scope global onlink mtu 1280 advmss 1240") {
		t.Errorf("ip route shows %q", out)
	}
	// Delete them all again, in batches.
	for i := range ops {
		ops[i].Kind = nl.Delete
	}
	for i, err := range k.Apply(ctx, ops) {
		if err != nil && !unencodable[i] {
			t.Errorf("delete %d: %v", i, err)
		}
	}
	if got, err := k.ListRoutes(ctx, 1000); err != nil || len(got) != 0 {
		t.Errorf("after delete: %d routes, err %v", len(got), err)
	}
}

// TestDeleteMatchesProtocol: a delete of protocol 244 must not remove
// another protocol's route at the same destination.
func TestDeleteMatchesProtocol(t *testing.T) {
	ctx := context.Background()
	ns, k, ts0 := open(t, nl.Options{})
	ns.IP(t, "route", "add", "10.0.5.0/24", "dev", "ts0", "table", "244", "proto", "static")
	if errs := k.Apply(ctx, []nl.Op{{Kind: nl.Delete, Route: route(5, 244, ts0)}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if out := ns.IP(t, "route", "show", "table", "244"); !strings.Contains(out, "10.0.5.0/24 dev ts0 proto static") {
		t.Errorf("static route deleted: %q", out)
	}
}

func TestMultipathAndRules(t *testing.T) {
	ctx := context.Background()
	ns, k, ts0 := open(t, nl.Options{})
	r := route(1, 244, ts0)
	r.NextHops = append(r.NextHops, nl.NextHop{Gateway: netip.MustParseAddr("100.64.0.3"), LinkIndex: ts0, Onlink: true})
	if errs := k.Apply(ctx, []nl.Op{{Kind: nl.Replace, Route: r}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	got, err := k.ListRoutes(ctx, 244)
	if err != nil || len(got) != 1 {
		t.Fatalf("got %v, %v", got, err)
	}
	r.Type = unix.RTN_UNICAST
	if got[0].String() != r.String() {
		t.Errorf("read back %s, want %s", got[0], r)
	}
	out := ns.IP(t, "route", "show", "table", "244")
	for _, s := range []string{"nexthop via 100.64.0.2 dev ts0 weight 1 onlink", "nexthop via 100.64.0.3 dev ts0 weight 1 onlink", "mtu 1280 advmss 1240"} {
		if !strings.Contains(out, s) {
			t.Errorf("ip route shows %q, want %q in it", out, s)
		}
	}

	rule := nl.Rule{Priority: 5260, Table: 244, Protocol: 244}
	for range 2 { // the second add is a no-op, not an error
		if err := k.AddRule(ctx, rule); err != nil {
			t.Fatal(err)
		}
	}
	rules, err := k.ListRules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var found []nl.Rule
	for _, r := range rules {
		if r.Priority == 5260 {
			r.Desc = ""
			found = append(found, r)
		}
	}
	if len(found) != 1 || found[0] != rule {
		t.Errorf("rules at 5260: %+v, want %+v", found, rule)
	}
	if out := ns.IP(t, "rule"); !strings.Contains(out, "5260:\tfrom all lookup 244 proto 244") {
		t.Errorf("ip rule shows %q", out)
	}
	for range 2 {
		if err := k.DelRule(ctx, rule); err != nil {
			t.Fatal(err)
		}
	}
	if out := ns.IP(t, "rule"); strings.Contains(out, "5260") {
		t.Errorf("rule still there: %q", out)
	}
}

// TestAddrDevice finds the device that holds an address, on the fake and
// on a real kernel alike: the device is read again on every call, so an
// address moved to another device (or a device renamed, on the kernel) is
// found where it is now, and an address nobody holds is a clear error.
func TestAddrDevice(t *testing.T) {
	lan := netip.MustParseAddr("192.168.0.11")
	type step struct {
		name   string
		want   string // "" : not found
		kernel string // ip commands before the step
		fake   func(f *nl.Fake)
	}
	steps := []step{
		{name: "on eth0", want: "eth0",
			kernel: "link add eth0 type veth peer name eth0p\naddr add 192.168.0.11/24 dev eth0\nlink add eth1 type veth peer name eth1p",
			fake:   func(f *nl.Fake) { f.AddAddr("eth0", lan); f.AddLink("eth1") }},
		{name: "moved to eth1", want: "eth1",
			kernel: "addr del 192.168.0.11/24 dev eth0\naddr add 192.168.0.11/24 dev eth1",
			fake:   func(f *nl.Fake) { f.AddAddr("eth1", lan) }},
		{name: "gone", kernel: "addr del 192.168.0.11/24 dev eth1",
			fake: func(f *nl.Fake) { f.DelAddr(lan) }},
	}
	run := func(t *testing.T, k nl.Kernel, setup func(step)) {
		for _, s := range steps {
			setup(s)
			dev, err := k.AddrDevice(context.Background(), lan)
			switch {
			case s.want == "" && (err == nil || !strings.Contains(err.Error(), "no device has address 192.168.0.11")):
				t.Errorf("%s: got %q, %v; want the error that no device has the address", s.name, dev, err)
			case s.want != "" && (err != nil || dev != s.want):
				t.Errorf("%s: got %q, %v; want %s", s.name, dev, err, s.want)
			}
		}
	}
	t.Run("fake", func(t *testing.T) {
		f := nl.NewFake()
		run(t, f, func(s step) { s.fake(f) })
	})
	t.Run("kernel", func(t *testing.T) {
		ns, k, _ := open(t, nl.Options{})
		run(t, k, func(s step) { ns.Script(t, s.kernel) })
		// A renamed device is found under its new name.
		ns.Script(t, "addr add 192.168.0.11/24 dev eth0\nlink set eth0 name lan0")
		if dev, err := k.AddrDevice(context.Background(), lan); err != nil || dev != "lan0" {
			t.Errorf("after rename: got %q, %v; want lan0", dev, err)
		}
	})
}
