package bgp

// The Speaker's state: what it knows of each configured peer and of the
// learned paths, fed by GoBGP's events (watch.go) and by re-reading the
// RIBs (refresh.go), under one mutex.

import (
	"net/netip"
	"sync"
	"time"

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
	// held are the stale paths of peers that GoBGP may drop too early
	// (held.go); heldTimer fires at heldAt, when the first of them ends.
	held      map[netip.Addr]*heldPeer
	heldTimer *time.Timer
	heldAt    time.Time
}

func (st *state) init() {
	st.peers = map[netip.Addr]*peerRT{}
	st.seen = map[rejectKey]bool{}
	st.over = map[netip.Addr][]netip.Prefix{}
	st.cutOff = map[netip.Addr]bool{}
	st.expect = map[netip.Addr]bool{}
	st.dirty = map[netip.Prefix]struct{}{}
	st.held = map[netip.Addr]*heldPeer{}
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
	if st.heldTimer != nil {
		st.heldTimer.Stop()
		st.heldTimer, st.heldAt = nil, time.Time{}
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
