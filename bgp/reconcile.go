package bgp

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/ducksnest/netd/policy/desired"
)

var familyIPv4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}

// globalSpec is what needs a GoBGP restart when it changes.
type globalSpec struct {
	asn        uint32
	routerID   netip.Addr
	listenAddr netip.Addr
	listenPort int
}

// peerSpec is every session setting of a peer. GoBGP negotiates timers
// and capabilities in the OPEN, so any change means delete and add.
// Import and export filters are not here: they live in the policies.
type peerSpec struct {
	addr                      netip.Addr
	asn                       uint32
	localAddr                 netip.Addr
	remotePort                uint32
	hold, keepalive, retry    uint64
	gr                        bool
	restartTime, deferralTime uint32
	rrClient                  bool
	clusterID                 string
	password                  string
	// restarting: advertise the graceful restart R-bit.
	restarting bool
	// passive: wait for the peer to connect. After a session drops GoBGP
	// keeps it idle (5 s, which netd cuts to 1 s: rejoin.go), closing
	// connections it accepts meanwhile, and a speaker whose connection
	// attempt fails that way goes idle too: two active sides can
	// ping-pong, and a graceful restart helper whose attempt fails drops
	// the stale routes it keeps. So of two nodes only the one with the
	// higher address dials, and a restarting speaker waits for external
	// peers to dial.
	passive bool
}

func seconds(d time.Duration) uint64 { return uint64(math.Ceil(d.Seconds())) }

func (s *Speaker) peerSpecFor(cfg desired.Speaker, p desired.Peer) (peerSpec, error) {
	ps := peerSpec{
		addr:       p.Address,
		asn:        p.ASN,
		localAddr:  cfg.ListenAddr,
		remotePort: 179,
		hold:       seconds(cfg.Timers.HoldTime),
		keepalive:  seconds(cfg.Timers.Keepalive),
		retry:      seconds(cfg.Timers.ConnectRetry),
		gr:         cfg.GracefulRestart.Enabled,
		restarting: s.restarting && cfg.GracefulRestart.Enabled,
	}
	if p.Kind != desired.PeerExternal {
		ps.passive = cfg.ListenAddr.Less(p.Address)
	} else {
		ps.passive = ps.restarting
	}
	if cfg.ListenPort > 0 {
		ps.remotePort = uint32(cfg.ListenPort)
	}
	if ps.gr {
		ps.restartTime = uint32(min(seconds(cfg.GracefulRestart.RestartTime), 4095))
		ps.deferralTime = s.selectionDeferral(cfg, ps.restartTime)
	}
	if cfg.RouteReflector && p.RouteReflectorClient {
		ps.rrClient = true
		id := cfg.ClusterID
		if !id.IsValid() {
			id = cfg.RouterID
		}
		ps.clusterID = id.String()
	}
	if p.PasswordFile != "" {
		b, err := os.ReadFile(p.PasswordFile)
		if err != nil {
			return ps, fmt.Errorf("reading password of peer %s: %w", p.Name, err)
		}
		ps.password = strings.TrimSpace(string(b))
	}
	return ps, nil
}

func (ps peerSpec) apiPeer() *api.Peer {
	p := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: ps.addr.String(), PeerAsn: ps.asn, AuthPassword: ps.password},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime: ps.hold, KeepaliveInterval: ps.keepalive, ConnectRetry: ps.retry,
			IdleHoldTimeAfterReset: idleHoldAfterDrop, // rejoin.go
		}},
		Transport: &api.Transport{LocalAddress: ps.localAddr.String(), RemotePort: ps.remotePort, PassiveMode: ps.passive},
		AfiSafis: []*api.AfiSafi{{
			Config:            &api.AfiSafiConfig{Family: familyIPv4, Enabled: true},
			MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: ps.gr}},
		}},
	}
	if ps.gr {
		p.GracefulRestart = &api.GracefulRestart{
			Enabled: true, RestartTime: ps.restartTime, DeferralTime: ps.deferralTime,
			NotificationEnabled: true, LocalRestarting: ps.restarting,
		}
	}
	if ps.rrClient {
		p.RouteReflector = &api.RouteReflector{RouteReflectorClient: true, RouteReflectorClusterId: ps.clusterID}
	}
	return p
}

func validate(cfg desired.Speaker) error {
	var errs []error
	if cfg.ASN == 0 {
		errs = append(errs, errors.New("asn is 0"))
	}
	if !cfg.RouterID.Is4() {
		errs = append(errs, fmt.Errorf("router id %v is not an IPv4 address", cfg.RouterID))
	}
	if !cfg.ListenAddr.IsValid() || cfg.ListenAddr.IsUnspecified() {
		errs = append(errs, fmt.Errorf("listen address %v must be a specific address", cfg.ListenAddr))
	}
	seen := map[netip.Addr]bool{}
	for _, p := range cfg.Peers {
		if !p.Address.IsValid() || seen[p.Address] {
			errs = append(errs, fmt.Errorf("peer %s: bad or duplicate address %v", p.Name, p.Address))
		}
		seen[p.Address] = true
	}
	return errors.Join(errs...)
}

// Reconcile makes the running speaker match cfg and advertise exactly own
// (plus the peers' explicit exports). See the package documentation.
func (s *Speaker) Reconcile(ctx context.Context, cfg desired.Speaker, own []netip.Prefix) error {
	if err := validate(cfg); err != nil {
		return fmt.Errorf("invalid speaker config: %w", err)
	}
	if !s.lock(ctx) {
		return fmt.Errorf("reconciling bgp speaker: %w", ctx.Err())
	}
	defer s.unlock()

	g := globalSpec{asn: cfg.ASN, routerID: cfg.RouterID, listenAddr: cfg.ListenAddr, listenPort: cfg.ListenPort}
	if s.srv != nil && s.global != g {
		s.log.Info("bgp global settings changed, restarting speaker", "asn", cfg.ASN, "routerId", cfg.RouterID)
		if err := s.stopServer(ctx); err != nil {
			return err
		}
	}
	if s.srv == nil {
		if err := s.start(ctx, g); err != nil {
			return err
		}
	}
	if s.restarting && s.policySet && s.Synced() {
		s.restarting = false // restart done: dial peers again
		s.restartActive.Store(false)
	}
	s.cfg = cfg
	s.st.setConfig(cfg, s.syncBound(cfg))
	s.st.setOwn(sortedPrefixes(own))

	var errs []error
	// Policies first, so that a new peer's paths meet the right filter.
	if err := s.reconcilePolicy(ctx); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, s.reconcilePeers(ctx, cfg))
	errs = append(errs, s.reconcilePaths(ctx, cfg, own))
	poke(s.refresh)
	s.checkSync()
	return errors.Join(errs...)
}

// selectionDeferral is the longest a restarting speaker holds its updates
// for a peer that comes up while another peer's End-of-RIB is still
// outstanding (GoBGP's selection deferral timer, whole seconds). GoBGP
// releases them early only on a peer event that happens to find every
// End-of-RIB in (see TestRestartDeferralReleased): when the last
// End-of-RIB comes from a peer without the Restart State bit, it checks
// nothing, and the peer waits for the timer. A node advertises only its
// own blocks, known before any session is up: nothing is worth holding
// for, so the least GoBGP takes. A route reflector also passes on its
// clients' routes, and an early End-of-RIB would make a client drop the
// ones it keeps as stale that the reflector has not learned again yet:
// it holds for as long as netd waits for its peers to settle before it
// prunes (syncBound), within the restart time.
func (s *Speaker) selectionDeferral(cfg desired.Speaker, restartTime uint32) uint32 {
	if !cfg.RouteReflector {
		return 1
	}
	return uint32(max(min(seconds(s.syncBound(cfg)), uint64(restartTime)), 1))
}

func (s *Speaker) syncBound(cfg desired.Speaker) time.Duration {
	if s.opts.syncBound > 0 {
		return s.opts.syncBound
	}
	b := 10 * time.Second
	if cfg.GracefulRestart.Enabled && cfg.GracefulRestart.RestartTime > 0 {
		b = min(b, cfg.GracefulRestart.RestartTime)
	}
	return b
}

func (s *Speaker) start(ctx context.Context, g globalSpec) error {
	opts := []server.ServerOption{server.LoggerOption(slogAdapter{s.log.With("component", "gobgp")})}
	if s.opts.grpcAddr != "" {
		if err := checkGRPCAddr(s.opts.grpcAddr); err != nil {
			return err
		}
		opts = append(opts, server.GrpcListenAddress(s.opts.grpcAddr))
	}
	srv := server.NewBgpServer(opts...)
	go srv.Serve()
	port := int32(g.listenPort)
	if port == 0 {
		port = 179
	}
	err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: g.asn, RouterId: g.routerID.String(), ListenPort: port,
		ListenAddresses: []string{g.listenAddr.String()},
	}})
	if err != nil {
		srv.Stop()
		return fmt.Errorf("starting bgp on %v:%d: %w", g.listenAddr, port, err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	if err := s.watch(wctx, srv, done); err != nil {
		cancel()
		srv.Stop()
		return err
	}
	s.srv, s.global, s.cancel, s.done = srv, g, cancel, done
	s.mutations.Add(1)
	return nil
}

func (s *Speaker) reconcilePolicy(ctx context.Context) error {
	m := s.policyModelFor(s.cfg, s.st.overLimit())
	if s.policySet && m.equal(s.policy) {
		return nil
	}
	if err := s.applyPolicy(ctx, m); err != nil {
		return err
	}
	s.policy, s.policySet = m, true
	return nil
}

func (s *Speaker) policyModelFor(cfg desired.Speaker, over map[netip.Addr][]netip.Prefix) policyModel {
	own := sortedPrefixes(s.st.ownBlocks())
	m := policyModel{own: own, rr: cfg.RouteReflector}
	for _, p := range cfg.Peers {
		m.peers = append(m.peers, peerPolicy{
			addr: p.Address, exportOwn: p.ExportOwnBlocks, export: sortedPrefixes(p.Export),
			rrClient: p.RouteReflectorClient, rules: importFilterFor(cfg, own, p).enforced(), over: over[p.Address],
		})
	}
	return m
}

func sortedPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Masked())
	}
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out)
}

// reconcilePaths makes the local paths (added by us) exactly own plus the
// peers' explicit exports, with next hop = our listen address.
func (s *Speaker) reconcilePaths(ctx context.Context, cfg desired.Speaker, own []netip.Prefix) error {
	want := map[netip.Prefix]bool{}
	for _, p := range own {
		want[p.Masked()] = true
	}
	for _, p := range cfg.Peers {
		for _, e := range p.Export {
			want[e.Masked()] = true
		}
	}
	have := map[netip.Prefix]netip.Addr{} // our local paths and their next hops
	err := s.srv.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: familyIPv4}, func(d *api.Destination) {
		for _, p := range d.Paths {
			if !isLocal(p) {
				continue
			}
			if pfx, err := netip.ParsePrefix(d.Prefix); err == nil {
				have[pfx] = readPathInfo(p).nextHop
			}
		}
	})
	if err != nil {
		return fmt.Errorf("listing own paths: %w", err)
	}
	var errs []error
	for _, p := range sortedPrefixes(keys(want)) {
		if nh, ok := have[p]; ok && nh == cfg.ListenAddr {
			continue
		}
		if !p.Addr().Is4() {
			errs = append(errs, fmt.Errorf("advertising %v: only IPv4 is supported", p))
			continue
		}
		s.mutations.Add(1)
		if _, err := s.srv.AddPath(ctx, &api.AddPathRequest{Path: ownPath(p, cfg.ListenAddr)}); err != nil {
			errs = append(errs, fmt.Errorf("advertising %v: %w", p, err))
		}
	}
	for p, nh := range have {
		if want[p] {
			continue
		}
		s.mutations.Add(1)
		if err := s.srv.DeletePath(ctx, &api.DeletePathRequest{Family: familyIPv4, Path: ownPath(p, nh)}); err != nil {
			errs = append(errs, fmt.Errorf("withdrawing %v: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

func keys[K comparable, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// isLocal reports whether a path was originated here (GoBGP gives local
// paths no source).
func isLocal(p *api.Path) bool {
	_, err := netip.ParseAddr(p.NeighborIp)
	return err != nil
}

func ownPath(p netip.Prefix, nextHop netip.Addr) *api.Path {
	nlri, _ := anypb.New(&api.IPAddressPrefix{Prefix: p.Addr().String(), PrefixLen: uint32(p.Bits())})
	origin, _ := anypb.New(&api.OriginAttribute{Origin: 0})
	nh, _ := anypb.New(&api.NextHopAttribute{NextHop: nextHop.String()})
	return &api.Path{Family: familyIPv4, Nlri: nlri, Pattrs: []*anypb.Any{origin, nh}}
}

// resetForRestart resets every established session with Cease/administrative
// reset and waits until none is established, so that the NOTIFICATION
// GoBGP sends when it stops (a Hard Reset) finds no session.
func (s *Speaker) resetForRestart(ctx context.Context) error {
	var errs []error
	for a := range s.peers {
		if err := s.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: a.String(), Communication: "netd graceful restart"}); err != nil {
			errs = append(errs, fmt.Errorf("resetting peer %v for graceful restart: %w", a, err))
		}
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		up := 0
		err := s.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
			if p.GetState().GetSessionState() == api.PeerState_ESTABLISHED {
				up++
			}
		})
		if err != nil || up == 0 {
			return errors.Join(append(errs, err)...)
		}
		select {
		case <-ctx.Done():
			return errors.Join(append(errs, fmt.Errorf("waiting for sessions to close: %w", ctx.Err()))...)
		case <-t.C:
		}
	}
}
