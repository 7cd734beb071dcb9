package bgp

// The RIB refresh: re-reading GoBGP's global RIB and the peers'
// Adj-RIBs-In into Learned, with the rejected paths counted and logged
// and MaxPrefixes enforced.

import (
	"context"
	"net/netip"
	"slices"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/ducksnest/netd/policy/desired"
)

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
	st.mu.Lock()
	watch := make(map[netip.Addr]bool, len(st.held))
	for a := range st.held {
		watch[a] = true
	}
	st.mu.Unlock()
	seen := map[pathKey]seenPath{}
	learned, err := readLearned(ctx, srv, names, skip, only, watch, func(sp seenPath) { seen[sp.pathKey] = sp })
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("reading learned bgp paths", "err", err)
		}
		return
	}
	st.mu.Lock()
	learned, newly, next := st.updateHeld(learned, seen, only, cut, expired, now)
	for _, a := range newly {
		s.metrics.held.WithLabelValues(names[a]).Inc()
		until := "its End-of-RIB"
		if t := st.holdWindow(st.peers[a]); !t.IsZero() {
			until = t.Format(time.RFC3339)
		}
		s.log.Warn("gobgp dropped a restarting peer's stale paths after a failed session attempt: netd keeps them until the peer is back, its restart time has passed or its path is dead",
			"peer", names[a], "address", a, "paths", len(st.held[a].paths), "until", until)
	}
	st.armHeldTimer(next, func() { poke(s.refresh) })
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
