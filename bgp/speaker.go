// Package bgp is netd's embedded BGP speaker: the only package that imports
// GoBGP. A Speaker is reconciled to a desired.Speaker (peers, timers,
// graceful restart, route reflection) plus the node's own pod blocks; it
// exports only those blocks (and per-peer explicit prefixes), imports only
// what each peer's import filter allows, counts and logs what it rejects,
// and reports the learned best paths for the route reconciler.
//
// How it maps onto GoBGP (v3):
//   - Filters are GoBGP global import/export policies (one neighbor set per
//     peer, one prefix set per import range, default reject), replaced as a
//     whole with SetPolicies and followed by a soft reset in and out, so a
//     changed import filter applies to paths already received.
//   - One import filter definition per peer (importFilter, filter.go): an
//     ordered list of rules. The GoBGP import policy is rendered from it
//     and rejections are classified by evaluating it on each peer's
//     pre-policy Adj-RIB-In, so both always agree.
//     MaxPrefixes is enforced by netd, not by GoBGP's prefix limit (which
//     tears the session down): the lowest prefixes win, the rest are added
//     to a reject set.
//   - GoBGP keeps a dropped session idle for 5 s and closes connections it
//     accepts meanwhile; netd cuts that hold to 1 s, the least GoBGP's
//     API allows, when it sees a session drop, unless it dials a peer
//     whose stale paths it keeps (rejoin.go). A node dials
//     only peers with a lower address (the other side is passive: two
//     dialers can collide, and a graceful restart helper whose attempt
//     fails drops the stale routes it keeps). GoBGP's dialer waits a
//     random 1-2 s before its first attempt (fsm.go connectLoop, not
//     configurable), so a session comes back 1-2 s after a restart when
//     the restarting node dials, 6-7 s when its peer does.
//   - GoBGP's DeletePeer drops the stale paths it holds for a restarting
//     peer, and a changed session setting means delete and add; so a peer
//     is never re-added while GoBGP holds stale paths for it (peers.go).
//   - Synced (sync.go) follows the peers: it waits for End-of-RIB (or the
//     restart time) of every peer a route left by the previous run goes
//     through (MarkRestarting), and only a short bound for the others.
//   - GoBGP does not implement StalePathTime; Learned drops a restarted
//     peer's stale paths itself once it has been up that long without
//     End-of-RIB.
//   - GoBGP's restarting-speaker logic clears the Restart State of every
//     peer at the first End-of-RIB, counting peers that are not up yet as
//     done; netd re-adds those peers with the R-bit (restart.go), so a
//     later peer does not drop the routes it keeps for us.
//   - A fast failure detector (BFD) reports a silent peer with
//     PeerUnreachable: its paths leave Learned at once (unless the session
//     was already down: a graceful restart) until it is reachable again or
//     a new session comes up; the session is not reset (restart.go).
//   - GoBGP's Serve goroutine cannot be stopped: each GoBGP instance leaks
//     one idle goroutine after Stop (a restart happens only when the ASN,
//     router id or listen address changes).
package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ducksnest/netd/policy/desired"
)

// Learned is one accepted destination learned from peers.
type Learned struct {
	Prefix netip.Prefix
	// NextHops are the next hops of the best paths (several if equal
	// paths came from several peers), as the originating node set them.
	NextHops []netip.Addr
	// Peers are the names of the peers the best paths came from.
	Peers []string
}

// Option configures a Speaker.
type Option func(*options)

type options struct {
	grpcAddr  string
	syncBound time.Duration
}

// WithGRPC serves GoBGP's gRPC API (for the gobgp CLI) on addr, which must
// be a loopback address with a port ("127.0.0.1:50051"). Off by default.
func WithGRPC(addr string) Option { return func(o *options) { o.grpcAddr = addr } }

// WithSyncBound sets how long Synced waits for a peer it expects nothing
// from: one that is down and not coming back, or one that is up without
// graceful restart (default: the graceful restart time, at most 10 s).
func WithSyncBound(d time.Duration) Option { return func(o *options) { o.syncBound = d } }

// Speaker is one node's embedded BGP speaker.
type Speaker struct {
	log     *slog.Logger
	opts    options
	metrics *metrics
	changes chan struct{}
	refresh chan struct{}
	// mutations counts calls that change GoBGP's configuration or RIB.
	mutations atomic.Int64

	sem        chan struct{} // 1-slot lock: serialises Reconcile, Stop and policy updates
	srv        *server.BgpServer
	global     globalSpec
	peers      map[netip.Addr]peerSpec
	deferred   map[netip.Addr]bool // peers whose changed settings wait for them to come back
	cfg        desired.Speaker
	policy     policyModel
	policySet  bool
	restarting bool
	// restartActive mirrors restarting for the refresh goroutine.
	restartActive atomic.Bool
	cancel        context.CancelFunc
	done          chan struct{}

	st state // guarded by its own mutex

	// lastState is each peer's last session state seen in GoBGP's watch
	// events (rejoin.go), guarded by idleMu.
	idleMu    sync.Mutex
	lastState map[netip.Addr]api.PeerState_SessionState
}

// New returns a Speaker; GoBGP starts on the first Reconcile. Metrics are
// registered on reg (nil: none).
func New(log *slog.Logger, reg prometheus.Registerer, opts ...Option) *Speaker {
	s := &Speaker{
		log:       log,
		changes:   make(chan struct{}, 1),
		refresh:   make(chan struct{}, 1),
		sem:       make(chan struct{}, 1),
		peers:     map[netip.Addr]peerSpec{},
		deferred:  map[netip.Addr]bool{},
		lastState: map[netip.Addr]api.PeerState_SessionState{},
	}
	for _, o := range opts {
		o(&s.opts)
	}
	s.st.init()
	s.metrics = newMetrics(s)
	if reg != nil {
		reg.MustRegister(s.metrics)
	}
	return s
}

// MarkRestarting tells the Speaker that a previous instance on this node
// stopped gracefully (Stop(ctx, true)) or left its routes in the kernel:
// the first sessions advertise the graceful restart R-bit and GoBGP defers
// its own updates until the peers' End-of-RIB. nextHops are the next hops
// of the routes it left: the peers they belong to (by address or LAN
// address) are coming back, and Synced waits for their End-of-RIB or
// their restart time. Call it before the first Reconcile.
func (s *Speaker) MarkRestarting(nextHops ...netip.Addr) {
	s.lock(context.Background())
	defer s.unlock()
	s.restarting = true
	s.restartActive.Store(true)
	s.st.mu.Lock()
	for _, a := range nextHops {
		s.st.expect[a] = true
	}
	s.st.mu.Unlock()
}

// timeoutReset bounds a session reset done in the background.
const timeoutReset = 10 * time.Second

// Changes is poked (never blocking the sender) whenever Learned or a peer
// state may have changed.
func (s *Speaker) Changes() <-chan struct{} { return s.changes }

// lock takes the Speaker's lock unless ctx ends first.
func (s *Speaker) lock(ctx context.Context) bool {
	select {
	case s.sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *Speaker) unlock() { <-s.sem }

func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Learned returns the accepted best paths learned from peers, sorted by
// prefix.
func (s *Speaker) Learned() []Learned {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	out := make([]Learned, len(s.st.learned))
	for i, l := range s.st.learned {
		out[i] = Learned{Prefix: l.Prefix, NextHops: append([]netip.Addr(nil), l.NextHops...), Peers: append([]string(nil), l.Peers...)}
	}
	return out
}

func checkGRPCAddr(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("gRPC address %q: %w", addr, err)
	}
	if !ap.Addr().IsLoopback() {
		return fmt.Errorf("gRPC address %q is not a loopback address", addr)
	}
	return nil
}

// Stop shuts GoBGP down within ctx's deadline. With graceful=false every
// session is closed with a NOTIFICATION (Cease/peer de-configured, sent as
// a Hard Reset where RFC 8538 was negotiated), so peers withdraw our routes
// at once. With graceful=true each session is first reset with
// Cease/administrative reset, which a peer that negotiated graceful restart
// with the N-bit (RFC 8538, always offered by netd) treats as a restart: it
// keeps our routes as stale until we come back and send End-of-RIB, or
// until our restart time runs out.
func (s *Speaker) Stop(ctx context.Context, graceful bool) error {
	if !s.lock(ctx) {
		return fmt.Errorf("stopping bgp speaker: %w", ctx.Err())
	}
	defer s.unlock()
	if s.srv == nil {
		return nil
	}
	var errs []error
	if graceful {
		errs = append(errs, s.resetForRestart(ctx))
	}
	errs = append(errs, s.stopServer(ctx))
	return errors.Join(errs...)
}

func (s *Speaker) stopServer(ctx context.Context) error {
	srv, cancel, done := s.srv, s.cancel, s.done
	s.srv, s.cancel, s.done = nil, nil, nil
	s.peers = map[netip.Addr]peerSpec{}
	s.policySet = false
	s.global = globalSpec{}
	cancel()
	<-done
	stopped := make(chan struct{})
	go func() {
		srv.Stop()
		close(stopped)
	}()
	var err error
	select {
	case <-stopped:
	case <-ctx.Done():
		err = fmt.Errorf("stopping gobgp: %w", ctx.Err())
	}
	s.st.reset()
	s.forgetState(nil)
	poke(s.changes)
	return err
}
