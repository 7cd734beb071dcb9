package nl_test

import (
	"context"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ducksnest/netd/netd/routes/nl"
)

// TestRouteGet asks the same questions of the kernel and of the fake set up
// alike (netd's rule 5260 ahead of tailscaled's 5270, a throw route, the
// main table): both answer with the same table, device and gateway.
func TestRouteGet(t *testing.T) {
	type want struct {
		table int
		dev   string
		gw    string
	}
	queries := map[string]want{
		"10.244.1.5":  {244, "ts0", "100.64.0.2"}, // netd's table
		"10.244.2.5":  {52, "ts0", ""},            // thrown from 244, found in 52
		"100.64.0.9":  {52, "ts0", ""},            // tailscaled's table
		"192.168.0.7": {unix.RT_TABLE_MAIN, "eth0", ""},
	}
	check := func(t *testing.T, k nl.Kernel) {
		for dst, w := range queries {
			lk, err := k.RouteGet(context.Background(), nl.RouteQuery{Dst: netip.MustParseAddr(dst)})
			if err != nil {
				t.Errorf("%s: %v", dst, err)
				continue
			}
			gw := ""
			if lk.Gateway.IsValid() {
				gw = lk.Gateway.String()
			}
			if lk.Table != w.table || lk.Device != w.dev || gw != w.gw {
				t.Errorf("%s: table %d dev %q via %q; want table %d dev %q via %q", dst, lk.Table, lk.Device, gw, w.table, w.dev, w.gw)
			}
		}
		links, err := k.Links(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		mtu := 0
		for _, l := range links {
			if l.Name == "ts0" {
				mtu = l.MTU
			}
		}
		if mtu != 1280 {
			t.Errorf("ts0 mtu %d, want 1280 (links %+v)", mtu, links)
		}
	}
	t.Run("kernel", func(t *testing.T) {
		ns, k, _ := open(t, nl.Options{})
		ns.Script(t, `
link add eth0 type veth peer name eth0p
link set eth0 up
link set eth0p up
addr add 192.168.0.11/24 dev eth0
route add 10.244.1.0/24 via 100.64.0.2 dev ts0 onlink table 244 proto 244
route add throw 10.244.2.0/24 table 244
route add 10.244.0.0/16 dev ts0 table 52
route add 100.64.0.0/10 dev ts0 table 52
rule add priority 5260 lookup 244
rule add priority 5270 lookup 52
`)
		check(t, k)
	})
	t.Run("fake", func(t *testing.T) {
		f := nl.NewFake()
		f.SetMTU("ts0", 1280)
		ts0 := f.AddLink("ts0")
		eth0 := f.AddLink("eth0")
		f.AddAddr("eth0", netip.MustParseAddr("192.168.0.11"))
		for _, r := range []nl.Rule{{Priority: 0, Table: unix.RT_TABLE_LOCAL}, {Priority: 5260, Table: 244}, {Priority: 5270, Table: 52},
			{Priority: 32766, Table: unix.RT_TABLE_MAIN}, {Priority: 32767, Table: unix.RT_TABLE_DEFAULT}} {
			f.SetRule(r)
		}
		f.SetRoute(nl.Route{Dst: netip.MustParsePrefix("10.244.1.0/24"), Table: 244, Protocol: 244,
			NextHops: []nl.NextHop{{Gateway: netip.MustParseAddr("100.64.0.2"), LinkIndex: ts0, Onlink: true}}})
		f.SetRoute(nl.Route{Dst: netip.MustParsePrefix("10.244.2.0/24"), Table: 244, Type: unix.RTN_THROW})
		f.SetRoute(nl.Route{Dst: netip.MustParsePrefix("10.244.0.0/16"), Table: 52, NextHops: []nl.NextHop{{LinkIndex: ts0}}})
		f.SetRoute(nl.Route{Dst: netip.MustParsePrefix("100.64.0.0/10"), Table: 52, NextHops: []nl.NextHop{{LinkIndex: ts0}}})
		f.SetRoute(nl.Route{Dst: netip.MustParsePrefix("192.168.0.0/24"), Table: unix.RT_TABLE_MAIN, Scope: unix.RT_SCOPE_LINK,
			NextHops: []nl.NextHop{{LinkIndex: eth0}}})
		check(t, f)
	})
}
