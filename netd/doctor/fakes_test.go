package doctor

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"tailscale.com/ipn"
	"tailscale.com/ipn/ipnstate"
	"tailscale.com/types/views"

	"github.com/ducksnest/netd/bgp"
	"github.com/ducksnest/netd/examples"
	"github.com/ducksnest/netd/netd/daemon"
	"github.com/ducksnest/netd/netd/routes/nl"
	"github.com/ducksnest/netd/policy"
	"github.com/ducksnest/netd/policy/desired"
)

// fakes is a healthy firebat of the example policy, every fact in memory;
// a test breaks one thing and runs the checks.
type fakes struct {
	st   *desired.State
	self *desired.Node
	k    *nl.Fake
	sys  map[string]string
	fw   *Ruleset
	// sockets
	listeners []Listener
	// prober: ping answers by destination, timestamps by destination
	ping  func(dst netip.Addr, size int) PingResult
	clock map[netip.Addr]TimestampResult
	// tailscaled
	prefs    *ipn.Prefs
	tsStatus *ipnstate.Status
	// netd
	netd *daemon.Status
	bfd  map[netip.Addr]bool
	// cluster
	felix     FelixConfig
	serverOff time.Duration
}

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newFakes(t *testing.T) *fakes {
	t.Helper()
	pf, err := policy.Load("policy.yaml", examples.Ducksnest)
	if err != nil {
		t.Fatal(err)
	}
	st, err := policy.Compile(pf)
	if err != nil {
		t.Fatal(err)
	}
	self, err := st.Node("firebat")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakes{st: st, self: self, k: nl.NewFake(), clock: map[netip.Addr]TimestampResult{}, bfd: map[netip.Addr]bool{}}
	k := f.k
	k.SetMTU("eth0", 1500)
	k.SetMTU("tailscale0", 1280)
	ts0 := k.AddLink("tailscale0")
	eth0 := k.AddLink("eth0")
	cali := k.AddLink("cali1a2b3c4d5e6")
	k.AddAddr("eth0", self.LANAddr)
	k.AddAddr("tailscale0", self.OverlayAddr)
	for _, r := range []nl.Rule{{Priority: 0, Table: unix.RT_TABLE_LOCAL}, {Priority: 5260, Table: 244, Protocol: 244},
		{Priority: 5270, Table: 52}, {Priority: 32766, Table: unix.RT_TABLE_MAIN}, {Priority: 32767, Table: unix.RT_TABLE_DEFAULT}} {
		k.SetRule(r)
	}
	k.SetRoute(nl.Route{Dst: netip.MustParsePrefix("100.64.0.0/10"), Table: 52, NextHops: []nl.NextHop{{LinkIndex: ts0}}})
	k.SetRoute(nl.Route{Dst: netip.MustParsePrefix("192.168.0.0/24"), Table: unix.RT_TABLE_MAIN, Scope: unix.RT_SCOPE_LINK, NextHops: []nl.NextHop{{LinkIndex: eth0}}})
	pod := self.PodCIDRs[0].Addr().Next()
	k.SetRoute(nl.Route{Dst: netip.PrefixFrom(pod, 32), Table: unix.RT_TABLE_MAIN, Scope: unix.RT_SCOPE_LINK, NextHops: []nl.NextHop{{LinkIndex: cali}}})
	for b, owner := range otherBlocks(st, "firebat") {
		n, _ := st.Node(owner)
		k.SetRoute(nl.Route{Dst: b, Table: 52, NextHops: []nl.NextHop{{LinkIndex: ts0}}})
		k.SetRoute(nl.Route{Dst: b, Table: 244, Protocol: 244, MTU: 1280, AdvMSS: 1240,
			NextHops: []nl.NextHop{{Gateway: n.OverlayAddr, LinkIndex: ts0, Onlink: true}}})
	}
	f.sys = map[string]string{"net/ipv4/ip_forward": "1", "net/ipv4/conf/all/rp_filter": "2",
		"net/ipv4/conf/eth0/rp_filter": "0", "net/ipv4/conf/tailscale0/rp_filter": "0", "net/ipv4/conf/cali1a2b3c4d5e6/rp_filter": "1"}
	b, err := os.ReadFile("testdata/iptables-felix-policy.txt")
	if err != nil {
		t.Fatal(err)
	}
	f.fw = &Ruleset{Rules: ParseIptablesSave("iptables-nft", b), Sources: []string{"iptables-nft-save: testdata"}}
	f.listeners = []Listener{{Addr: netip.AddrPortFrom(self.OverlayAddr, 179), Inode: 1, Owner: "netd[42]"}}
	f.ping = func(dst netip.Addr, size int) PingResult {
		if size > 1280 {
			return PingResult{LocalTooBig: true}
		}
		return PingResult{Reply: true, RTT: time.Millisecond}
	}
	var peers []bgp.PeerStatus
	for _, p := range self.BGP.Peers {
		f.clock[p.Address] = TimestampResult{Reply: true, Offset: 3 * time.Millisecond, RTT: time.Millisecond}
		f.bfd[p.Address] = true
		peers = append(peers, bgp.PeerStatus{Name: p.Name, Address: p.Address, State: "established"})
	}
	f.prefs = &ipn.Prefs{RouteAll: true, NoSNAT: true, AdvertiseRoutes: slices.Clone(self.PodCIDRs)}
	allowed := views.SliceOf(append([]netip.Prefix{netip.PrefixFrom(self.OverlayAddr, 32)}, self.PodCIDRs...))
	f.tsStatus = &ipnstate.Status{BackendState: "Running", Self: &ipnstate.PeerStatus{AllowedIPs: &allowed}}
	f.netd = &daemon.Status{Node: "firebat", Policy: daemon.PolicyStatus{Digest: st.Digest}, BGP: bgp.Status{Peers: peers},
		Advertised: self.PodCIDRs, PodSource: "policy"}
	fx := st.Calico.Felix
	f.felix = FelixConfig{InterfaceExclude: &fx.InterfaceExclude, MTUIfacePattern: &fx.MTUIfacePattern, IptablesMarkMask: &fx.IptablesMarkMask}
	return f
}

func (f *fakes) run(t *testing.T, checks ...Check) *Report {
	t.Helper()
	if len(checks) == 0 {
		checks = Checks()
	}
	in := &Input{State: f.st, Node: f.self, Host: Host{Kernel: f.k, Sysctl: fakeSysctl(f.sys), Firewall: fakeFirewall{f.fw},
		Sockets: fakeSockets(f.listeners), Prober: fakeProber{f}, Tailscale: fakeTS{f}, Netd: fakeNetd{f}, Cluster: fakeCluster{f},
		Now: func() time.Time { return now }}}
	return Run(context.Background(), in, checks)
}

type fakeSysctl map[string]string

func (s fakeSysctl) Get(name string) (string, error) {
	if v, ok := s[name]; ok {
		return v, nil
	}
	return "", errors.New("no sysctl " + name)
}

type fakeFirewall struct{ rs *Ruleset }

func (f fakeFirewall) Rules(context.Context) (*Ruleset, error) {
	if f.rs == nil {
		return nil, errors.New("iptables-nft-save: exit status 1")
	}
	return f.rs, nil
}

type fakeSockets []Listener

func (s fakeSockets) TCPListeners() ([]Listener, error) { return s, nil }

type fakeProber struct{ f *fakes }

func (p fakeProber) Ping(_ context.Context, _, dst netip.Addr, size int, _ time.Duration) (PingResult, error) {
	return p.f.ping(dst, size), nil
}

func (p fakeProber) Timestamp(_ context.Context, _, dst netip.Addr, _ time.Duration) (TimestampResult, error) {
	return p.f.clock[dst], nil
}

type fakeTS struct{ f *fakes }

func (t fakeTS) GetPrefs(context.Context) (*ipn.Prefs, error)             { return t.f.prefs, nil }
func (t fakeTS) Status(context.Context) (*ipnstate.Status, error)         { return t.f.tsStatus, nil }
func (n fakeNetd) Status(context.Context) (daemon.Status, error)          { return *n.f.netd, nil }
func (n fakeNetd) BFD(context.Context) (map[netip.Addr]bool, bool, error) { return n.f.bfd, true, nil }

type fakeNetd struct{ f *fakes }

type fakeCluster struct{ f *fakes }

func (c fakeCluster) Felix(context.Context) (FelixConfig, string, error) {
	return c.f.felix, "projectcalico.org/v3", nil
}

func (c fakeCluster) ServerTime(context.Context) (time.Time, time.Duration, error) {
	return now.Add(c.f.serverOff).Truncate(time.Second), 2 * time.Millisecond, nil
}
