package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/ducksnest/netd/policy/desired"
)

// peerRT is what the Speaker knows of a configured peer at run time.
type peerRT struct {
	name        string
	added       time.Time
	established bool
	since       time.Time // of the last session state change
	eor         bool      // End-of-RIB received since established, and Learned read after it
	eorPending  bool      // End-of-RIB received, Learned not yet re-read
	everUp      bool      // established at least once since this GoBGP started
	// grKnown: grNegotiated and peerRestart were read from GoBGP after the
	// session came up; grNegotiated: both sides have graceful restart, so
	// the peer sends End-of-RIB; peerRestart is the restart time it
	// advertised.
	grKnown, grNegotiated bool
	peerRestart           time.Duration
	lastErr               string
	received              int
	accepted              int
	rejected              map[string]int // by reason
	// adjIn is the peer's Adj-RIB-In as last read: each prefix's reason
	// for rejection ("" if allowed by the filter; ReasonMaxPrefixes is
	// kept in over). allowed counts the "" ones.
	adjIn   map[netip.Prefix]string
	allowed int
}

type rejectKey struct {
	peer   netip.Addr
	prefix netip.Prefix
	reason string
}

// state is the Speaker's view of learned paths and peers, fed by GoBGP's
// events and by re-reading its RIBs.
type state struct {
	mu      sync.Mutex
	cfg     desired.Speaker
	bound   time.Duration
	own     []netip.Prefix
	peers   map[netip.Addr]*peerRT
	learned []Learned
	seen    map[rejectKey]bool
	over    map[netip.Addr][]netip.Prefix
	// cutOff are peers a failure detector reported unreachable while
	// their session was up (PeerUnreachable): their paths are ignored.
	cutOff map[netip.Addr]bool
	// expect are the next hops of the routes a previous run left in the
	// kernel (MarkRestarting): the peers they belong to are coming back.
	expect map[netip.Addr]bool
	// syncTimer pokes changes when Synced may turn true by a deadline;
	// synced is what checkSync last saw.
	syncTimer *time.Timer
	synced    bool
	// dirty are the prefixes GoBGP's table events named since the last
	// read; delta is poked with them (a poke of Speaker.refresh asks for
	// a full re-read instead).
	dirty map[netip.Prefix]struct{}
	delta chan struct{}
}

func (st *state) init() {
	st.peers = map[netip.Addr]*peerRT{}
	st.seen = map[rejectKey]bool{}
	st.over = map[netip.Addr][]netip.Prefix{}
	st.cutOff = map[netip.Addr]bool{}
	st.expect = map[netip.Addr]bool{}
	st.dirty = map[netip.Prefix]struct{}{}
	if st.delta == nil {
		st.delta = make(chan struct{}, 1)
	}
}

func (st *state) reset() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.syncTimer != nil {
		st.syncTimer.Stop()
	}
	expect := st.expect
	st.init()
	st.expect = expect
	st.learned = nil
	st.cfg = desired.Speaker{}
}

func (st *state) setConfig(cfg desired.Speaker, bound time.Duration) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.cfg, st.bound = cfg, bound
	want := map[netip.Addr]bool{}
	now := time.Now()
	for _, p := range cfg.Peers {
		want[p.Address] = true
		rt := st.peers[p.Address]
		if rt == nil {
			rt = &peerRT{added: now, since: now}
			st.peers[p.Address] = rt
		}
		rt.name = p.Name
	}
	for a := range st.peers {
		if !want[a] {
			delete(st.peers, a)
			delete(st.over, a)
			delete(st.cutOff, a)
		}
	}
	for k := range st.seen {
		if !want[k.peer] {
			delete(st.seen, k)
		}
	}
}

func (st *state) setOwn(own []netip.Prefix) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.own = own
}

func (st *state) ownBlocks() []netip.Prefix {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.own
}

func (st *state) stalePathTime() time.Duration {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.cfg.GracefulRestart.StalePathTime
}

func (st *state) established(a netip.Addr) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	rt := st.peers[a]
	return rt != nil && rt.established
}

// upSinceRestart reports whether the peer's session has been established
// since GoBGP started.
func (st *state) upSinceRestart(a netip.Addr) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	rt := st.peers[a]
	return rt != nil && rt.everUp
}

func (st *state) setPeerError(a netip.Addr, msg string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if rt := st.peers[a]; rt != nil {
		rt.lastErr = msg
	}
}

func (st *state) overLimit() map[netip.Addr][]netip.Prefix {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make(map[netip.Addr][]netip.Prefix, len(st.over))
	for a, ps := range st.over {
		out[a] = ps
	}
	return out
}

// watch subscribes to GoBGP's peer, End-of-RIB and table events and starts
// the goroutine that re-reads the RIBs when poked. done is closed when it
// has exited after ctx is cancelled.
func (s *Speaker) watch(ctx context.Context, srv *server.BgpServer, done chan struct{}) error {
	err := srv.WatchEvent(ctx, &api.WatchEventRequest{
		Peer: &api.WatchEventRequest_Peer{},
		Table: &api.WatchEventRequest_Table{Filters: []*api.WatchEventRequest_Table_Filter{
			{Type: api.WatchEventRequest_Table_Filter_BEST, Init: true},
			{Type: api.WatchEventRequest_Table_Filter_ADJIN, Init: true},
			{Type: api.WatchEventRequest_Table_Filter_EOR},
		}},
	}, s.onEvent)
	if err != nil {
		return fmt.Errorf("watching bgp events: %w", err)
	}
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.refresh:
				s.takeDirty() // read in full below
				s.refreshNow(ctx, srv, nil)
			case <-s.st.delta:
				only := s.takeDirty()
				if len(only) == 0 {
					continue
				}
				s.refreshNow(ctx, srv, only)
			}
			if s.restartActive.Load() {
				if _, err := s.reassertRestart(ctx); err != nil && ctx.Err() == nil {
					s.log.Warn("re-asserting the graceful restart bit", "err", err)
				}
			}
		}
	}()
	return nil
}

func (s *Speaker) onEvent(r *api.WatchEventResponse) {
	if pe := r.GetPeer(); pe != nil {
		if pe.Type != api.WatchEventResponse_PeerEvent_STATE {
			return
		}
		a, err := netip.ParseAddr(pe.GetPeer().GetState().GetNeighborAddress())
		if err != nil {
			return
		}
		if s.stateSeen(a, pe.GetPeer().GetState().GetSessionState()) {
			s.peerDropped(a) // rejoin.go: cut GoBGP's idle hold
		}
		up := pe.GetPeer().GetState().GetSessionState() == api.PeerState_ESTABLISHED
		st := &s.st
		st.mu.Lock()
		rt := st.peers[a]
		changed := rt != nil && rt.established != up
		var name string
		if changed {
			name = rt.name
			rt.established, rt.since, rt.eor, rt.eorPending = up, time.Now(), false, false
			if up {
				rt.grKnown = false // read again; kept while down (its restart time)
			}
			if !up {
				rt.lastErr = "session went down"
			} else {
				rt.lastErr, rt.everUp = "", true
				st.sessionUp(a) // restart.go: a new session lifts a cut-off
			}
		}
		st.mu.Unlock()
		if changed {
			s.log.Info("bgp session state changed", "peer", name, "address", a, "established", up)
			if spt := st.stalePathTime(); up && spt > 0 {
				// Stale paths without End-of-RIB expire then.
				time.AfterFunc(spt, func() { poke(s.refresh) })
			}
		}
		poke(s.refresh)
		poke(s.changes)
		return
	}
	eor := false
	s.st.mu.Lock()
	for _, p := range r.GetTable().GetPaths() {
		if p.Nlri != nil {
			if pfx, ok := pathPrefix(p); ok {
				s.st.dirty[pfx] = struct{}{}
			} else {
				eor = true // not an IPv4 prefix: read everything
			}
			continue
		}
		// End-of-RIB: read everything the peer sent before it.
		eor = true
		if a, err := netip.ParseAddr(p.NeighborIp); err == nil {
			if rt := s.st.peers[a]; rt != nil && rt.established {
				rt.eorPending = true
			}
		}
	}
	s.st.mu.Unlock()
	if eor {
		poke(s.refresh)
	} else {
		poke(s.st.delta)
	}
}

// pathPrefix is the IPv4 prefix of a path's NLRI.
func pathPrefix(p *api.Path) (netip.Prefix, bool) {
	var n api.IPAddressPrefix
	if p.Family.GetAfi() != api.Family_AFI_IP || p.Nlri.UnmarshalTo(&n) != nil {
		return netip.Prefix{}, false
	}
	a, err := netip.ParseAddr(n.Prefix)
	if err != nil || !a.Is4() {
		return netip.Prefix{}, false
	}
	pfx, err := a.Prefix(int(n.PrefixLen))
	return pfx, err == nil
}

// takeDirty returns and clears the prefixes named by table events.
func (s *Speaker) takeDirty() []netip.Prefix {
	st := &s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.dirty) == 0 {
		return nil
	}
	out := make([]netip.Prefix, 0, len(st.dirty))
	for p := range st.dirty {
		out = append(out, p)
	}
	st.dirty = map[netip.Prefix]struct{}{} // a new map: a burst's buckets are not kept
	slices.SortFunc(out, comparePrefix)
	return out
}

// refreshNow re-reads the global RIB (Learned) and every peer's pre-policy
// Adj-RIB-In (counting and logging rejected paths, and enforcing
// MaxPrefixes through the import policy): all of them if only is nil,
// else only the destinations named (sorted), which table events said
// changed. A peer whose MaxPrefixes is in play is re-read in full (which
// paths are over the limit depends on all of them), and so is the global
// RIB when that changes the over-limit set.
func (s *Speaker) refreshNow(ctx context.Context, srv *server.BgpServer, only []netip.Prefix) {
	st := &s.st
	st.mu.Lock()
	cfg, own := st.cfg, st.own
	names := map[netip.Addr]string{}
	var eor []netip.Addr // End-of-RIB seen before this read of the RIB
	expired := map[netip.Addr]bool{}
	now := time.Now()
	cut := map[netip.Addr]bool{}
	for a := range st.cutOff {
		cut[a] = true
	}
	for a, rt := range st.peers {
		names[a] = rt.name
		if rt.eorPending {
			eor = append(eor, a)
		}
		if spt := cfg.GracefulRestart.StalePathTime; spt > 0 && rt.established && !rt.eor && !rt.eorPending && now.Sub(rt.since) >= spt {
			expired[a] = true
		}
	}
	st.mu.Unlock()

	s.readRestartCaps(ctx, srv)
	defer s.checkSync()

	// The Adj-RIBs-In first: Learned then leaves out paths over a peer's
	// limit even before the import policy has caught up.
	overChanged := false
	for _, p := range cfg.Peers {
		if only != nil && !s.limitInPlay(p, len(only)) {
			paths, err := readAdjIn(ctx, srv, p.Address, only)
			if err != nil {
				continue // peer being added or removed
			}
			s.classifyDelta(cfg, own, p, only, paths)
			continue
		}
		paths, err := readAdjIn(ctx, srv, p.Address, nil)
		if err != nil {
			continue
		}
		overChanged = s.classifyPeer(cfg, own, p, paths) || overChanged
	}
	over := map[pathKey]bool{}
	for a, ps := range st.overLimit() {
		for _, p := range ps {
			over[pathKey{a, p}] = true
		}
	}
	skip := func(from netip.Addr, p netip.Prefix, stale bool) bool {
		return over[pathKey{from, p}] || stale && expired[from] || cut[from]
	}

	if overChanged {
		only = nil
	}
	learned, err := readLearned(ctx, srv, names, skip, only)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("reading learned bgp paths", "err", err)
		}
		return
	}
	st.mu.Lock()
	if st.applyLearned(learned, only) {
		poke(s.changes)
	}
	for _, a := range eor {
		if rt := st.peers[a]; rt != nil && rt.eorPending {
			rt.eor, rt.eorPending = true, false
			poke(s.changes)
		}
	}
	st.mu.Unlock()
	if overChanged {
		s.enforceLimits(ctx)
	}
}

type pathKey struct {
	from   netip.Addr
	prefix netip.Prefix
}

// classifyPeer counts and logs the rejected paths of one peer and reports
// whether the set over its MaxPrefixes changed.
func (s *Speaker) classifyPeer(cfg desired.Speaker, own []netip.Prefix, p desired.Peer, paths []received) bool {
	filter := importFilterFor(cfg, own, p)
	var allowed []netip.Prefix
	reasons := map[netip.Prefix]string{}
	reaches := map[netip.Prefix]string{}
	for _, r := range paths {
		if why, what := filter.classify(r.prefix, r.nextHop); why != "" {
			reasons[r.prefix], reaches[r.prefix] = why, what
		} else {
			allowed = append(allowed, r.prefix)
		}
	}
	accepted, over := limitPrefixes(allowed, p.Import.MaxPrefixes)
	for _, pfx := range over {
		reasons[pfx] = ReasonMaxPrefixes
	}
	st := &s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	rt := st.peers[p.Address]
	if rt == nil {
		return false
	}
	rt.received, rt.accepted = len(paths), len(accepted)
	rt.rejected = map[string]int{}
	rt.adjIn, rt.allowed = make(map[netip.Prefix]string, len(paths)), len(allowed)
	for _, r := range paths {
		rt.adjIn[r.prefix] = ""
	}
	for pfx, r := range reasons {
		if r != ReasonMaxPrefixes {
			rt.adjIn[pfx] = r
		}
	}
	current := map[rejectKey]bool{}
	for pfx, r := range reasons {
		k := rejectKey{p.Address, pfx, r}
		current[k] = true
		rt.rejected[r]++
		if !st.seen[k] {
			st.seen[k] = true
			s.metrics.rejected.WithLabelValues(p.Name, r).Inc()
			if what := reaches[pfx]; what != "" {
				s.log.Warn("bgp path rejected", "peer", p.Name, "prefix", pfx, "reason", r, "reaches", what)
			} else {
				s.log.Warn("bgp path rejected", "peer", p.Name, "prefix", pfx, "reason", r)
			}
		}
	}
	for k := range st.seen {
		if k.peer == p.Address && !current[k] {
			delete(st.seen, k)
		}
	}
	slices.SortFunc(over, comparePrefix)
	if slices.Equal(over, st.over[p.Address]) {
		return false
	}
	if len(over) == 0 {
		delete(st.over, p.Address)
	} else {
		st.over[p.Address] = over
	}
	return true
}

// enforceLimits re-applies the import policy with the current over-limit
// sets; it gives up if the speaker is being stopped or reconciled for
// longer than ctx allows.
func (s *Speaker) enforceLimits(ctx context.Context) {
	if !s.lock(ctx) {
		return
	}
	defer s.unlock()
	if s.srv == nil {
		return
	}
	if err := s.reconcilePolicy(ctx); err != nil && ctx.Err() == nil {
		s.log.Error("applying bgp prefix limits", "err", err)
	}
}

// received is a path in a peer's Adj-RIB-In.
type received struct {
	prefix  netip.Prefix
	nextHop netip.Addr
}

// readAdjIn lists a peer's Adj-RIB-In: all of it if only is nil, else the
// destinations named.
func readAdjIn(ctx context.Context, srv *server.BgpServer, a netip.Addr, only []netip.Prefix) ([]received, error) {
	var out []received
	req := &api.ListPathRequest{TableType: api.TableType_ADJ_IN, Name: a.String(), Family: familyIPv4, Prefixes: lookups(only)}
	if only != nil && len(only) == 0 {
		return nil, nil
	}
	err := srv.ListPath(ctx, req, func(d *api.Destination) {
		for _, p := range d.Paths {
			if !p.IsWithdraw {
				if pfx, err := netip.ParsePrefix(d.Prefix); err == nil {
					out = append(out, received{pfx, readPathInfo(p).nextHop})
				}
				break
			}
		}
	})
	return out, err
}
