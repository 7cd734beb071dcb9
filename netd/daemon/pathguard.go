package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ducksnest/netd/policy/desired"
)

// Path check timings: an echo request to each of the peer's addresses
// every pathGap until one answers or pathWait passed; while the detector
// stays down and the path answers, asked again every pathEvery.
const (
	pathWait  = 150 * time.Millisecond
	pathGap   = 50 * time.Millisecond
	pathEvery = 200 * time.Millisecond
	// quietValid is how long a path check started by OnQuiet that got no
	// answer stands for the Down that follows it.
	quietValid = time.Second
)

// cutter is what the path guard needs of the speaker (*bgp.Speaker).
type cutter interface {
	PeerUnreachable(a netip.Addr) bool
	PathDead(a netip.Addr) bool
	PeerReachable(a netip.Addr)
}

// echoFunc asks whether any of addrs answers ICMP echo within wait
// (probe.Echo.Answered); the zero Addr means none did.
type echoFunc func(ctx context.Context, addrs []netip.Addr, wait, gap time.Duration) (netip.Addr, error)

// pathGuard stands between BFD and the speaker. BFD says that a peer's
// netd stopped answering, not that the path did: netd is not in the
// forwarding path, so a peer whose netd is frozen or starved (SIGSTOP, a
// loaded CPU longer than the detection time, a long GC) still forwards
// pod traffic, and withdrawing its routes would cut traffic that flows.
// And an overlay that breaks between two nodes of one site takes their
// BGP and BFD sessions down, but not the LAN their routes use. So when
// BFD declares a node peer down, the guard asks the peer's node itself:
// an ICMP echo to its overlay address and, when both share a site and
// have LAN addresses, to its LAN address. If one answers within
// pathWait, the routes stay (netd_bfd_down_routes_kept_total) and the
// question is asked again every pathEvery while BFD stays down; the first
// time nothing answers, the peer is cut off (bgp.Speaker.PathDead: also
// the stale paths graceful restart keeps once the hold timer ended the
// session), until BFD is back up or a new session comes up. A peer that
// goes quiet (BFD's OnQuiet, a quarter of the detection time before the
// Down) is asked at once, so a dead path still leaves the kernel within
// the detection time. An external peer (a router) is cut off at once,
// as before: netd does not know its forwarding path.
type pathGuard struct {
	log   *slog.Logger
	sp    cutter
	echo  echoFunc
	peers func(peer netip.Addr) (addrs []netip.Addr, node bool)
	kept  *prometheus.CounterVec

	mu    sync.Mutex
	ctx   context.Context // set by Run
	state map[netip.Addr]*guarded
}

// guarded is the guard's view of one peer.
type guarded struct {
	down bool
	// gen counts the detector's reports; a verdict reached for an older
	// one is dropped (an Up beats a late "dead").
	gen    int
	cancel context.CancelFunc // the watch while down
	// quietGen and quietDead: a check started by OnQuiet (at gen
	// quietGen) found the path dead at quietDead.
	quietGen  int
	quietDead time.Time
	checking  bool // an OnQuiet check is running
}

func newPathGuard(log *slog.Logger, sp cutter, echo echoFunc, peers func(netip.Addr) ([]netip.Addr, bool), reg prometheus.Registerer) (*pathGuard, error) {
	g := &pathGuard{
		log: log, sp: sp, echo: echo, peers: peers, state: map[netip.Addr]*guarded{},
		kept: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "netd_bfd_down_routes_kept_total",
			Help: "BFD declared a node peer down while its node still answered on the path its routes use (a stalled netd, or an overlay cut with the LAN up): its routes were kept.",
		}, []string{"peer"}),
	}
	if reg != nil {
		if err := reg.Register(g.kept); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// Run keeps the guard's context (its path checks end with it).
func (g *pathGuard) Run(ctx context.Context) error {
	g.mu.Lock()
	g.ctx = ctx
	g.mu.Unlock()
	<-ctx.Done()
	g.mu.Lock()
	for _, s := range g.state {
		if s.cancel != nil {
			s.cancel()
		}
	}
	g.mu.Unlock()
	return nil
}

func (g *pathGuard) peerLocked(peer netip.Addr) *guarded {
	s := g.state[peer]
	if s == nil {
		s = &guarded{}
		g.state[peer] = s
	}
	return s
}

// changed is BFD's OnChange: a peer declared down or (re-)admitted up.
func (g *pathGuard) changed(peer netip.Addr, up bool) {
	addrs, node := g.peers(peer)
	g.mu.Lock()
	s := g.peerLocked(peer)
	s.gen++
	s.down = !up
	if s.cancel != nil {
		s.cancel()
		s.cancel = nil
	}
	if up {
		g.mu.Unlock()
		g.sp.PeerReachable(peer)
		return
	}
	if !node || len(addrs) == 0 || g.ctx == nil {
		g.mu.Unlock()
		g.sp.PeerUnreachable(peer)
		return
	}
	if s.quietGen == s.gen-1 && !s.quietDead.IsZero() && time.Since(s.quietDead) < quietValid {
		g.mu.Unlock()
		g.log.Info("bfd peer down and its path did not answer when it went quiet", "peer", peer, "asked", addrs)
		g.sp.PathDead(peer)
		return
	}
	ctx, cancel := context.WithCancel(g.ctx)
	s.cancel = cancel
	gen := s.gen
	g.mu.Unlock()
	go g.watch(ctx, peer, addrs, gen)
}

// watch asks the path while the detector says the peer is down: while it
// answers, the routes stay; the first time it does not, the peer is cut
// off.
func (g *pathGuard) watch(ctx context.Context, peer netip.Addr, addrs []netip.Addr, gen int) {
	kept := false
	for {
		start := time.Now()
		a, err := g.echo(ctx, addrs, pathWait, pathGap)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			g.log.Warn("cannot check the path to a peer bfd declared down; its routes are withdrawn", "peer", peer, "err", err)
		}
		if !a.IsValid() {
			g.mu.Lock()
			if s := g.state[peer]; s != nil && s.gen == gen && s.down {
				g.sp.PathDead(peer) // under mu: an Up that follows runs after it
				if err == nil {
					g.log.Info("bfd peer down and its path does not answer: routes withdrawn", "peer", peer, "asked", addrs, "routesKeptFor", time.Since(start).Round(time.Millisecond))
				}
			}
			g.mu.Unlock()
			return
		}
		if !kept {
			kept = true
			g.kept.WithLabelValues(peer.String()).Inc()
			g.log.Warn("bfd peer down but its node answers on the path its routes use: routes kept while it does", "peer", peer, "answered", a,
				"rtt", time.Since(start).Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pathEvery):
		}
	}
}

// quiet is BFD's OnQuiet: the session heard nothing for three quarters
// of the detection time. The path is asked now, so that a Down that
// follows with a dead path cuts at once.
func (g *pathGuard) quiet(peer netip.Addr) {
	addrs, node := g.peers(peer)
	g.mu.Lock()
	s := g.peerLocked(peer)
	if !node || len(addrs) == 0 || g.ctx == nil || s.checking || s.down {
		g.mu.Unlock()
		return
	}
	s.checking = true
	gen, ctx := s.gen, g.ctx
	g.mu.Unlock()
	go func() {
		a, err := g.echo(ctx, addrs, pathWait, pathGap)
		g.mu.Lock()
		defer g.mu.Unlock()
		s.checking = false
		if err == nil && !a.IsValid() && s.gen == gen {
			s.quietGen, s.quietDead = gen, time.Now()
		}
	}()
}

// guardedPaths returns the addresses the path to a node peer is asked on:
// its overlay address and, when it shares this node's site and both have
// a LAN address, its LAN address. An external peer is no node.
func guardedPaths(current func() (*desired.State, *desired.Node)) func(netip.Addr) ([]netip.Addr, bool) {
	return func(peer netip.Addr) ([]netip.Addr, bool) {
		_, self := current()
		for _, p := range self.BGP.Peers {
			if p.Address != peer {
				continue
			}
			if p.Kind != desired.PeerNode {
				return nil, false
			}
			addrs := []netip.Addr{p.Address}
			if p.Site == self.Site && p.LANAddr.IsValid() && self.LANAddr.IsValid() {
				addrs = append(addrs, p.LANAddr)
			}
			return addrs, true
		}
		return nil, false
	}
}
