package routes

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ducksnest/netd/netd/routes/nl"
	"github.com/ducksnest/netd/policy/desired"
)

// testInstaller is an Installer for node firebat of testState on the
// text fake, with the learned paths and BGP's sync state under the test's
// control.
type testInstaller struct {
	*Installer
	f       *nl.Fake
	learned []Learned
	synced  bool
}

func newTestInstaller(t *testing.T) *testInstaller {
	t.Helper()
	f := nl.NewFake("tailscale0", "eth0")
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	rec, err := New(f, testCfg, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := testState()
	self, err := st.Node("firebat")
	if err != nil {
		t.Fatal(err)
	}
	ti := &testInstaller{f: f, synced: true}
	ti.Installer = NewInstaller(rec, Sources{
		State:   func() (*desired.State, *desired.Node) { return st, self },
		Learned: func() []Learned { return ti.learned },
		Synced:  func() bool { return ti.synced },
		LANUp:   func(netip.Addr) bool { return true },
	}, log)
	return ti
}

// table244 is the fake's netd table, one "route ..." line per route.
func (ti *testInstaller) table244(t *testing.T) string {
	t.Helper()
	if err := ti.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for l := range strings.Lines(ti.f.Dump()) {
		if strings.HasPrefix(l, "route ") && strings.Contains(l, " table 244 ") {
			b.WriteString(l)
		}
	}
	return b.String()
}

// TestInstallerLANDevice: the LAN device is the one that holds the node's
// LAN address, read through nl.Kernel on every Sync; a device that takes
// the address over is used from the next Sync on, and without it the
// route falls back to the overlay.
func TestInstallerLANDevice(t *testing.T) {
	ti := newTestInstaller(t)
	ti.learned = []Learned{{Prefix: netip.MustParsePrefix("10.244.2.0/24"), NextHops: []netip.Addr{netip.MustParseAddr("100.64.0.3")}}}
	firebatLAN := netip.MustParseAddr("192.168.0.11")

	steps := []struct {
		name  string
		setup func()
		want  string
		path  PathKind
	}{
		{"address on eth0", func() { ti.f.AddAddr("eth0", firebatLAN) },
			"route 10.244.2.0/24 via 192.168.0.12 dev eth0 table 244 proto 244 mtu 1500 advmss 1460\n", PathLAN},
		{"address moved to lan1", func() { ti.f.AddAddr("lan1", firebatLAN) },
			"route 10.244.2.0/24 via 192.168.0.12 dev lan1 table 244 proto 244 mtu 1500 advmss 1460\n", PathLAN},
		{"address gone", func() { ti.f.DelAddr(firebatLAN) },
			"route 10.244.2.0/24 via 100.64.0.3 dev tailscale0 onlink table 244 proto 244 mtu 1280 advmss 1240\n", PathOverlay},
	}
	for _, s := range steps {
		s.setup()
		if diff := cmp.Diff(s.want, ti.table244(t)); diff != "" {
			t.Errorf("%s: table 244 (-want +got):\n%s", s.name, diff)
		}
		planned, bad := ti.Planned()
		if len(planned) != 1 || len(bad) != 0 || len(planned[0].Paths) != 1 || planned[0].Paths[0] != s.path {
			t.Errorf("%s: planned %+v, unroutable %+v; want one route over the %s", s.name, planned, bad, s.path)
		}
	}
}

// TestInstallerKeepsLeftovers: routes a previous netd left stay until BGP
// is synced; a leftover that BGP re-announces lives and dies with BGP from
// then on, so its withdrawal removes it at once.
func TestInstallerKeepsLeftovers(t *testing.T) {
	ti := newTestInstaller(t)
	ti.synced = false
	ts0, _ := ti.f.LinkIndex(context.Background(), "tailscale0")
	for _, dst := range []string{"10.244.2.0/24", "10.244.5.0/24"} {
		ti.f.SetRoute(nl.Route{Dst: netip.MustParsePrefix(dst), Table: 244, Protocol: 244, MTU: 1280, AdvMSS: 1240,
			NextHops: []nl.NextHop{{Gateway: netip.MustParseAddr("100.64.0.3"), LinkIndex: ts0, Onlink: true}}})
	}
	const (
		r2 = "route 10.244.2.0/24 via 100.64.0.3 dev tailscale0 onlink table 244 proto 244 mtu 1280 advmss 1240\n"
		r5 = "route 10.244.5.0/24 via 100.64.0.3 dev tailscale0 onlink table 244 proto 244 mtu 1280 advmss 1240\n"
		r7 = "route 10.244.7.0/24 via 100.64.0.1 dev tailscale0 onlink table 244 proto 244 mtu 1280 advmss 1240\n"
	)
	cp := []netip.Addr{netip.MustParseAddr("100.64.0.1")}
	steps := []struct {
		name    string
		learned []string // prefixes learned from control-plane
		synced  bool
		want    string
	}{
		{"nothing learned yet: both leftovers kept", nil, false, r2 + r5},
		{"one re-announced from another peer, one new", []string{"10.244.2.0/24", "10.244.7.0/24"}, false,
			strings.Replace(r2, "100.64.0.3", "100.64.0.1", 1) + r5 + r7},
		{"the re-announced one withdrawn: gone at once", []string{"10.244.7.0/24"}, false, r5 + r7},
		{"bgp synced: the last leftover goes", []string{"10.244.7.0/24"}, true, r7},
	}
	for _, s := range steps {
		ti.learned = nil
		for _, p := range s.learned {
			ti.learned = append(ti.learned, Learned{Prefix: netip.MustParsePrefix(p), NextHops: cp})
		}
		ti.synced = s.synced
		if diff := cmp.Diff(s.want, ti.table244(t)); diff != "" {
			t.Errorf("%s: table 244 (-want +got):\n%s", s.name, diff)
		}
	}
}
