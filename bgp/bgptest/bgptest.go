// Package bgptest runs plain in-process GoBGP speakers for tests of package
// bgp: real BGP sessions over TCP on loopback addresses (127.a.b.c, all
// local on Linux), with helpers to announce, withdraw and inspect paths.
package bgptest

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/types/known/anypb"
)

var familyIPv4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}

// Port is the BGP port the helpers use on every loopback address.
const Port = 1790

// T is what the helpers need of a test: *testing.T and *testing.B have it,
// and so can an adapter for a testscript command.
type T interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
	Logf(format string, args ...any)
}

// Addrs returns n distinct loopback addresses in a random 127.a.b.0/24 whose
// port Port is free on all of them, so that parallel test runs do not meet.
func Addrs(t T, n int) []netip.Addr {
	t.Helper()
	for range 50 {
		base := netip.AddrFrom4([4]byte{127, byte(100 + rand.IntN(100)), byte(rand.IntN(256)), 0})
		out := make([]netip.Addr, 0, n)
		ok := true
		for i := range n {
			a := base
			for range i + 1 {
				a = a.Next()
			}
			l, err := net.Listen("tcp", netip.AddrPortFrom(a, Port).String())
			if err != nil {
				ok = false
				break
			}
			l.Close()
			out = append(out, a)
		}
		if ok {
			return out
		}
	}
	t.Fatalf("no free loopback addresses")
	return nil
}

// Peer is a plain GoBGP speaker (no netd filtering): a stand-in for a
// foreign router or a misbehaving node.
type Peer struct {
	t    T
	Srv  *server.BgpServer
	Addr netip.Addr
	ASN  uint32
	uuid map[netip.Prefix][]byte
}

// NewPeer starts a GoBGP speaker with the given ASN listening on addr:Port,
// stopped in t.Cleanup.
func NewPeer(t T, addr netip.Addr, asn uint32) *Peer {
	t.Helper()
	srv := server.NewBgpServer(server.LoggerOption(quiet{}))
	go srv.Serve()
	ctx := context.Background()
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: asn, RouterId: addr.String(), ListenPort: Port, ListenAddresses: []string{addr.String()},
	}}); err != nil {
		t.Fatalf("starting test bgp peer: %v", err)
	}
	p := &Peer{t: t, Srv: srv, Addr: addr, ASN: asn, uuid: map[netip.Prefix][]byte{}}
	t.Cleanup(srv.Stop)
	return p
}

// NeighborOptions tune AddNeighbor.
type NeighborOptions struct {
	GracefulRestart bool
	RestartTime     uint32
	RRClient        bool
}

// AddNeighbor configures a session with a netd speaker (or another Peer)
// at addr, with short timers.
func (p *Peer) AddNeighbor(addr netip.Addr, asn uint32, o NeighborOptions) {
	p.t.Helper()
	n := &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: addr.String(), PeerAsn: asn},
		Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: 3, KeepaliveInterval: 1, ConnectRetry: 1}},
		Transport: &api.Transport{LocalAddress: p.Addr.String(), RemotePort: Port},
		AfiSafis: []*api.AfiSafi{{
			Config:            &api.AfiSafiConfig{Family: familyIPv4, Enabled: true},
			MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: o.GracefulRestart}},
		}},
	}
	if o.GracefulRestart {
		n.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: o.RestartTime, NotificationEnabled: true}
	}
	if o.RRClient {
		n.RouteReflector = &api.RouteReflector{RouteReflectorClient: true, RouteReflectorClusterId: p.Addr.String()}
	}
	if err := p.Srv.AddPeer(context.Background(), &api.AddPeerRequest{Peer: n}); err != nil {
		p.t.Fatalf("adding neighbor %v: %v", addr, err)
	}
}

// Announce originates prefixes with next hop = the peer's address.
func (p *Peer) Announce(prefixes ...netip.Prefix) {
	p.t.Helper()
	p.AnnounceVia(p.Addr, prefixes...)
}

// AnnounceVia originates prefixes with the given next hop (kept as is
// towards an eBGP neighbor: a third-party next hop).
func (p *Peer) AnnounceVia(nextHop netip.Addr, prefixes ...netip.Prefix) {
	p.t.Helper()
	for _, pfx := range prefixes {
		nlri, _ := anypb.New(&api.IPAddressPrefix{Prefix: pfx.Addr().String(), PrefixLen: uint32(pfx.Bits())})
		origin, _ := anypb.New(&api.OriginAttribute{Origin: 0})
		nh, _ := anypb.New(&api.NextHopAttribute{NextHop: nextHop.String()})
		r, err := p.Srv.AddPath(context.Background(), &api.AddPathRequest{Path: &api.Path{
			Family: familyIPv4, Nlri: nlri, Pattrs: []*anypb.Any{origin, nh},
		}})
		if err != nil {
			p.t.Fatalf("announcing %v: %v", pfx, err)
		}
		p.uuid[pfx] = r.Uuid
	}
}

// Withdraw withdraws prefixes announced with Announce.
func (p *Peer) Withdraw(prefixes ...netip.Prefix) {
	p.t.Helper()
	for _, pfx := range prefixes {
		if err := p.Srv.DeletePath(context.Background(), &api.DeletePathRequest{Family: familyIPv4, Uuid: p.uuid[pfx]}); err != nil {
			p.t.Fatalf("withdrawing %v: %v", pfx, err)
		}
		delete(p.uuid, pfx)
	}
}

// Route is a best path in the peer's RIB.
type Route struct {
	Prefix  netip.Prefix
	NextHop netip.Addr
	From    netip.Addr // neighbor it came from
	Stale   bool
}

func (r Route) String() string {
	return fmt.Sprintf("%v via %v from %v stale=%v", r.Prefix, r.NextHop, r.From, r.Stale)
}

// Received returns the best paths the peer learned from neighbors, sorted.
func (p *Peer) Received() []Route {
	p.t.Helper()
	var out []Route
	err := p.Srv.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: familyIPv4}, func(d *api.Destination) {
		for _, path := range d.Paths {
			if _, err := netip.ParseAddr(path.NeighborIp); !path.Best || err != nil {
				continue
			}
			r := Route{Stale: path.Stale}
			r.Prefix, _ = netip.ParsePrefix(d.Prefix)
			r.From, _ = netip.ParseAddr(path.NeighborIp)
			for _, a := range path.Pattrs {
				var nh api.NextHopAttribute
				if a.MessageIs(&nh) && a.UnmarshalTo(&nh) == nil {
					r.NextHop, _ = netip.ParseAddr(nh.NextHop)
				}
			}
			out = append(out, r)
		}
	})
	if err != nil {
		p.t.Fatalf("listing paths: %v", err)
	}
	slices.SortFunc(out, func(a, b Route) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	return out
}

// Has reports whether the peer has a best path for pfx.
func (p *Peer) Has(pfx netip.Prefix) bool {
	for _, r := range p.Received() {
		if r.Prefix == pfx {
			return true
		}
	}
	return false
}

// Established reports whether the session with addr is up.
func (p *Peer) Established(addr netip.Addr) bool {
	up := false
	_ = p.Srv.ListPeer(context.Background(), &api.ListPeerRequest{Address: addr.String()}, func(x *api.Peer) {
		up = x.GetState().GetSessionState() == api.PeerState_ESTABLISHED
	})
	return up
}

// Logger returns a slog logger writing to the test log (or discarding,
// for benchmarks).
func Logger(t T) *slog.Logger {
	if _, ok := t.(*testing.B); ok {
		return slog.New(slog.DiscardHandler)
	}
	w := &testWriter{t: t}
	t.Cleanup(func() { w.done.Store(true) })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// testWriter writes to the test log until the test ends (GoBGP goroutines
// may still log after that, which testing does not allow).
type testWriter struct {
	t    T
	done atomic.Bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	if !w.done.Load() {
		w.t.Logf("%s", strings.TrimSuffix(string(b), "\n"))
	}
	return len(b), nil
}

// quiet drops GoBGP's log.
type quiet struct{}

func (quiet) Panic(msg string, _ gobgplog.Fields) { panic(msg) }
func (quiet) Fatal(string, gobgplog.Fields)       {}
func (quiet) Error(string, gobgplog.Fields)       {}
func (quiet) Warn(string, gobgplog.Fields)        {}
func (quiet) Info(string, gobgplog.Fields)        {}
func (quiet) Debug(string, gobgplog.Fields)       {}
func (quiet) SetLevel(gobgplog.LogLevel)          {}
func (quiet) GetLevel() gobgplog.LogLevel         { return gobgplog.InfoLevel }
