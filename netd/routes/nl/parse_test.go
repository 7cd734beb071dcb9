package nl

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ducksnest/netd/internal/testutil"
)

func fromNetlink(r *netlink.Route) (Route, error) {
	kr := Route{
		Table:    r.Table,
		Protocol: int(r.Protocol),
		Priority: r.Priority,
		Tos:      r.Tos,
		Type:     r.Type,
		Scope:    int(r.Scope),
		MTU:      r.MTU,
		AdvMSS:   r.AdvMSS,
	}
	if r.Dst != nil {
		p, err := prefixOf(r.Dst)
		if err != nil {
			return kr, err
		}
		kr.Dst = p
	} else {
		kr.Dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	if len(r.MultiPath) == 0 {
		gw, _ := netip.AddrFromSlice(r.Gw)
		if r.Gw == nil && r.LinkIndex == 0 {
			return kr, nil // blackhole, unreachable, ...
		}
		kr.NextHops = []NextHop{{Gateway: gw.Unmap(), LinkIndex: r.LinkIndex, Onlink: r.Flags&unix.RTNH_F_ONLINK != 0}}
		return kr, nil
	}
	kr.NextHops = make([]NextHop, 0, len(r.MultiPath))
	for _, h := range r.MultiPath {
		gw, _ := netip.AddrFromSlice(h.Gw)
		kr.NextHops = append(kr.NextHops, NextHop{Gateway: gw.Unmap(), LinkIndex: h.LinkIndex, Onlink: h.Flags&unix.RTNH_F_ONLINK != 0})
	}
	return kr, nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, error) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, fmt.Errorf("bad address %v", n.IP)
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits), nil
}

// TestParseMatchesNetlink installs routes of many shapes with iproute2 and
// checks that the in-place dump parser reads them exactly as
// vishvananda/netlink's deserializer does.
func TestParseMatchesNetlink(t *testing.T) {
	testutil.NeedRoot(t, "creates a network namespace")
	name := fmt.Sprintf("netdrt-parse-%d", os.Getpid())
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"-n", name}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	script := `link add ts0 type veth peer name ts0p
link set ts0 up
link set ts0p up
addr add 192.168.7.1/24 dev ts0
route add 10.1.0.0/24 via 100.64.0.2 dev ts0 onlink table 1000 proto 244 mtu 1280 advmss 1240
route add 10.2.0.0/24 table 1000 proto 244 mtu 1400 nexthop via 100.64.0.2 dev ts0 onlink nexthop via 100.64.0.3 dev ts0 onlink
route add 10.3.0.0/24 dev ts0 table 1000
route add blackhole 10.4.0.0/24 table 1000 proto static
route add 10.5.0.0/24 via 192.168.7.9 table 1000 metric 50
route add 0.0.0.0/0 via 192.168.7.9 table 1000
route add 10.6.0.0/24 via 192.168.7.9 table 244
route add 10.7.0.0/24 via 192.168.7.9 table 1001`
	for l := range strings.Lines(script) {
		ip(strings.Fields(l)...)
	}
	k, err := Open(ns, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	for _, table := range []int{1000, 244, 1002} {
		got, err := k.ListRoutes(context.Background(), table)
		if err != nil {
			t.Fatal(err)
		}
		lib, err := k.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Fatal(err)
		}
		var want []Route
		for i := range lib {
			r, err := fromNetlink(&lib[i])
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, r)
		}
		str := func(rs []Route) []string {
			var out []string
			for _, r := range rs {
				out = append(out, r.String())
			}
			slices.Sort(out)
			return out
		}
		if diff := cmp.Diff(str(want), str(got)); diff != "" {
			t.Errorf("table %d (-netlink +ours):\n%s", table, diff)
		}
		if table == 1000 && len(got) != 6 {
			t.Errorf("table 1000: %d routes, want 6: %v", len(got), got)
		}
	}
}
