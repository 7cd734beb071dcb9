package bgp

// Stale paths GoBGP drops too early. While a peer restarts (its session
// ended gracefully, or its hold timer expired with graceful restart on),
// GoBGP keeps its paths as stale until the peer is back and has sent
// End-of-RIB, or its restart time has passed. But when a session attempt
// with that peer fails before it is established, GoBGP drops every stale
// path at once (pkg/server/server.go, handleFSMMessage, nextStateIdle).
// That happens when the peer is alive but cannot take the session yet: a
// node whose netd was frozen past the hold time is dialled while frozen
// (its kernel accepts the connection), and at the thaw its GoBGP, Idle
// after its own hold timers expired, closes that connection. The routes
// then left the kernel for the ~3 s until the next session.
//
// So the Speaker remembers each peer's stale paths as it reads them, and
// when GoBGP drops them while the peer's session is down, it keeps them in
// Learned ("held") for as long as graceful restart promised: until the
// peer's new session has sent End-of-RIB (or passed StalePathTime), until
// its restart time since the session went down has passed, or until a
// failure detector cut the peer off (bgp.Speaker.PathDead: its node no
// longer answers). A held path is used only for a destination with no
// other path.

import (
	"net/netip"
	"slices"
	"time"
)

// seenPath is a path readLearned reported: its peer and prefix, whether
// GoBGP marks it stale, and (for a stale one) its next hop.
type seenPath struct {
	pathKey
	nextHop netip.Addr
	stale   bool
}

// heldPeer is what the Speaker keeps of one peer's stale paths.
type heldPeer struct {
	paths map[netip.Prefix]netip.Addr // prefix -> next hop
	// dropped: GoBGP dropped some of them while the peer was down, and
	// they are in Learned only because netd holds them (logged once).
	dropped bool
}

// holdWindow returns until when a down peer's stale paths may be held:
// its session's end plus the restart time it advertised (else the
// policy's). The zero time: not held (the peer is up, or has no restart
// time).
func (st *state) holdWindow(rt *peerRT) time.Time {
	if rt.established {
		return time.Time{}
	}
	restart := st.cfg.GracefulRestart.RestartTime
	if rt.grKnown && rt.peerRestart > 0 {
		restart = rt.peerRestart
	}
	if restart <= 0 || !rt.everUp {
		return time.Time{}
	}
	return rt.since.Add(restart)
}

// updateHeld folds one read of the global RIB (the prefixes in only, or
// all when only is nil) into the held paths, adds to learned the held
// paths of destinations it lacks, and returns learned, the peers whose
// held paths newly stand in for dropped ones, and the earliest time a
// held path must go (zero: none held). Called under st.mu.
func (st *state) updateHeld(learned []Learned, seen map[pathKey]seenPath, only []netip.Prefix, cut, expired map[netip.Addr]bool, now time.Time) ([]Learned, []netip.Addr, time.Time) {
	inScope := func(p netip.Prefix) bool {
		if only == nil {
			return true
		}
		_, ok := slices.BinarySearchFunc(only, p, comparePrefix)
		return ok
	}
	// Forget the peers whose promise ended.
	for a := range st.held {
		rt := st.peers[a]
		if rt == nil || cut[a] || expired[a] || rt.established && (rt.eor || rt.eorPending) ||
			!rt.established && !now.Before(st.holdWindow(rt)) {
			delete(st.held, a)
		}
	}
	// Remember the stale paths GoBGP has now.
	for k, sp := range seen {
		if !sp.stale || !sp.nextHop.IsValid() || st.peers[k.from] == nil || cut[k.from] || expired[k.from] {
			continue
		}
		h := st.held[k.from]
		if h == nil {
			h = &heldPeer{paths: map[netip.Prefix]netip.Addr{}}
			st.held[k.from] = h
		}
		h.paths[k.prefix] = sp.nextHop
	}
	gobgpStale := func(a netip.Addr, p netip.Prefix) bool {
		sp, ok := seen[pathKey{a, p}]
		return ok && sp.stale
	}
	var newly []netip.Addr
	var next time.Time
	add := map[netip.Prefix]*Learned{}
	have := map[netip.Prefix]bool{}
	for _, l := range learned {
		have[l.Prefix] = true
	}
	for a, h := range st.held {
		rt := st.peers[a]
		for p := range h.paths {
			if !inScope(p) {
				continue
			}
			if sp, ok := seen[pathKey{a, p}]; ok && !sp.stale {
				delete(h.paths, p) // announced again: GoBGP's path now
			}
		}
		if len(h.paths) == 0 {
			delete(st.held, a)
			continue
		}
		used := false
		for p, nh := range h.paths {
			if !inScope(p) || have[p] || gobgpStale(a, p) {
				continue
			}
			l := add[p]
			if l == nil {
				l = &Learned{Prefix: p}
				add[p] = l
			}
			if !slices.Contains(l.NextHops, nh) {
				l.NextHops = append(l.NextHops, nh)
			}
			if !slices.Contains(l.Peers, rt.name) {
				l.Peers = append(l.Peers, rt.name)
			}
			used = true
		}
		if used {
			if !h.dropped {
				h.dropped = true
				newly = append(newly, a)
			}
			// A peer back up keeps its held paths until its End-of-RIB or
			// StalePathTime; a down one, until its restart time.
			if until := st.holdWindow(rt); !until.IsZero() && (next.IsZero() || until.Before(next)) {
				next = until
			}
		}
	}
	if len(add) == 0 {
		return learned, newly, next
	}
	for _, l := range add {
		slices.SortFunc(l.NextHops, netip.Addr.Compare)
		slices.Sort(l.Peers)
		learned = append(learned, *l)
	}
	slices.SortFunc(learned, func(a, b Learned) int { return comparePrefix(a.Prefix, b.Prefix) })
	return learned, newly, next
}

// armHeldTimer makes sure fire runs once at next (the earliest end of a
// held path), so that held paths leave Learned on time without another
// event. Called under st.mu.
func (st *state) armHeldTimer(next time.Time, fire func()) {
	if next.IsZero() || next.Equal(st.heldAt) {
		return
	}
	if st.heldTimer != nil {
		st.heldTimer.Stop()
	}
	st.heldAt = next
	st.heldTimer = time.AfterFunc(time.Until(next)+10*time.Millisecond, fire)
}
