package bgp

import (
	"context"
	"net/netip"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/ducksnest/netd/bgp/bgptest"
	"github.com/ducksnest/netd/internal/testutil"
)

// PeerUnreachable on an established session drops the peer's paths at
// once and keeps the session; the paths come back after PeerReachable,
// or when a new session comes up. On a session already down (a restart)
// it changes nothing; PathDead does drop such a peer's stale paths.
func TestPeerUnreachable(t *testing.T) {
	n := nodes(t, 2)
	a, b := newSpeaker(t, nil), newSpeaker(t, nil)
	reconcile(t, a, fullMesh(n[0], n...), n[0].blocks...)
	reconcile(t, b, fullMesh(n[1], n...), n[1].blocks...)
	testutil.Eventually(t, wait, "a learns b's block", func() bool { return hasVia(a, n[1].blocks[0], n[1].addr, "b") })
	upSince := sessionSince(a, n[1].addr)
	start := time.Now()
	if !a.PeerUnreachable(n[1].addr) {
		t.Fatal("PeerUnreachable on an established session did not cut the peer off")
	}
	testutil.Eventually(t, wait, "a drops b's block", func() bool { return len(a.Learned()) == 0 })
	t.Logf("paths dropped %v after PeerUnreachable", time.Since(start))
	if a.PeerUnreachable(n[1].addr) {
		t.Error("second PeerUnreachable cut off again")
	}
	a.PeerReachable(n[1].addr)
	testutil.Eventually(t, wait, "a learns b's block again", func() bool { return hasVia(a, n[1].blocks[0], n[1].addr, "b") })
	if got := sessionSince(a, n[1].addr); !got.Equal(upSince) || !a.st.established(n[1].addr) {
		t.Errorf("session changed state at %v (up since %v): a cut-off must keep it", got, upSince)
	}

	// Cut off again; a new session (b resets it) lifts the cut-off.
	if !a.PeerUnreachable(n[1].addr) {
		t.Fatal("PeerUnreachable after PeerReachable did not cut the peer off")
	}
	testutil.Eventually(t, wait, "a drops b's block again", func() bool { return len(a.Learned()) == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: n[0].addr.String()}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "a learns b's block on the new session", func() bool { return hasVia(a, n[1].blocks[0], n[1].addr, "b") })

	// A peer whose session is already down is restarting: nothing changes.
	if err := b.Stop(ctx, true); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, wait, "session down", func() bool { return !a.st.established(n[1].addr) })
	if a.PeerUnreachable(n[1].addr) {
		t.Error("PeerUnreachable cut off a peer whose session was already down")
	}
	if !hasVia(a, n[1].blocks[0], n[1].addr, "b") {
		t.Error("graceful restart: b's block dropped")
	}
	// Unless its path is dead: then the stale paths go too, and come
	// back with PeerReachable while graceful restart still keeps them.
	if !a.PathDead(n[1].addr) {
		t.Fatal("PathDead did not cut off a peer whose session is down")
	}
	testutil.Eventually(t, wait, "a drops b's stale block", func() bool { return len(a.Learned()) == 0 })
	if a.PathDead(n[1].addr) {
		t.Error("second PathDead cut off again")
	}
	a.PeerReachable(n[1].addr)
	testutil.Eventually(t, wait, "b's stale block back", func() bool { return hasVia(a, n[1].blocks[0], n[1].addr, "b") })
}

// sessionSince is when the session with peer last changed state.
func sessionSince(s *Speaker, peer netip.Addr) time.Time {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	if rt := s.st.peers[peer]; rt != nil {
		return rt.since
	}
	return time.Time{}
}

// A restarting speaker with two peers: the first peer's End-of-RIB makes
// GoBGP clear the restart state of the second, not yet connected; netd
// re-adds it with the R-bit, so its OPEN still says "restarting" and the
// second peer keeps the routes it holds as stale.
func TestRestartBitReasserted(t *testing.T) {
	n := nodes(t, 3)
	a, b := newSpeaker(t, nil), newSpeaker(t, nil)
	a.MarkRestarting()
	reconcile(t, b, fullMesh(n[1], n...), n[1].blocks...)
	// c is not up yet: only b answers.
	reconcile(t, a, fullMesh(n[0], n...), n[0].blocks...)
	testutil.Eventually(t, 30*time.Second, "a learns b's block", func() bool { return hasVia(a, n[1].blocks[0], n[1].addr, "b") })
	testutil.Eventually(t, 30*time.Second, "a re-adds c with the R-bit", a.reasserted)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	testutil.Eventually(t, 10*time.Second, "c configured as restarting", func() bool { return a.localRestarting(ctx, n[2].addr) })
}

// Issue 14.2: a speaker that has itself restarted once keeps, through a
// reload or resync (Reconcile), the routes it holds as stale for a peer
// that is restarting now; a real settings change for that peer waits
// until it is back. Before, the peer's spec differed in the restart bit
// only, and Reconcile deleted and re-added it: GoBGP's DeletePeer drops
// the stale paths.
func TestRestartedSpeakerKeepsStaleRoutes(t *testing.T) {
	n := nodes(t, 2)
	aCfg, bCfg := fullMesh(n[0], n...), fullMesh(n[1], n...)
	a, b := newSpeaker(t, nil), newSpeaker(t, nil)
	reconcile(t, a, aCfg, n[0].blocks...)
	reconcile(t, b, bCfg, n[1].blocks...)
	block := n[1].blocks[0]
	testutil.Eventually(t, wait, "a learns b's block", func() bool { return hasVia(a, block, n[1].addr, "b") })

	stop := func(s *Speaker) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Stop(ctx, true); err != nil {
			t.Fatal(err)
		}
	}
	// a restarts and finishes its restart.
	stop(a)
	a2 := newSpeaker(t, nil)
	a2.MarkRestarting()
	reconcile(t, a2, aCfg, n[0].blocks...)
	testutil.Eventually(t, 3*wait, "restarted a synced", a2.Synced)
	reconcile(t, a2, aCfg, n[0].blocks...) // the restart is over: no more R-bit
	if !hasVia(a2, block, n[1].addr, "b") {
		t.Fatalf("a2 lacks b's block: %v", a2.Learned())
	}

	// Now b restarts; a2 holds b's block as stale, through a resync and a
	// reload that changes b's session settings.
	stop(b)
	testutil.Eventually(t, wait, "a2 holds b's block as stale", func() bool { return len(a2.stale()) == 1 })
	reconcile(t, a2, aCfg, n[0].blocks...)
	changed := fullMesh(n[0], n...)
	changed.Timers.HoldTime = 6 * time.Second
	reconcile(t, a2, changed, n[0].blocks...)
	if !hasVia(a2, block, n[1].addr, "b") || len(a2.stale()) != 1 {
		t.Fatalf("a2 dropped b's stale block on Reconcile: learned %v, stale %v", a2.Learned(), a2.stale())
	}
	if got := a2.peers[n[1].addr].hold; got != 3 {
		t.Errorf("b's hold time changed to %d while b restarts, want the change deferred", got)
	}

	b2 := newSpeaker(t, nil)
	b2.MarkRestarting()
	reconcile(t, b2, bCfg, n[1].blocks...)
	testutil.Eventually(t, 3*wait, "a2 refreshes b's block from the restarted b", func() bool {
		if !hasVia(a2, block, n[1].addr, "b") {
			t.Fatalf("a2 lost b's block while b restarted: %v", a2.Learned())
		}
		return len(a2.stale()) == 0 && a2.st.established(n[1].addr)
	})
	// b is back: the deferred change is applied (a session reset).
	reconcile(t, a2, changed, n[0].blocks...)
	if got := a2.peers[n[1].addr].hold; got != 6 {
		t.Errorf("b's hold time is %d once b is back, want the deferred 6", got)
	}
	testutil.Eventually(t, 3*wait, "session with the new hold time", func() bool { return hasVia(a2, block, n[1].addr, "b") })
}

// A peer is re-added with the R-bit only when no session with it is up or
// being opened: closing an OpenSent or OpenConfirm session would make a
// GoBGP peer drop the routes it keeps for us.
func TestNeedsReassert(t *testing.T) {
	peer := func(st api.PeerState_SessionState, localRestarting bool) *api.Peer {
		return &api.Peer{
			State:           &api.PeerState{SessionState: st},
			GracefulRestart: &api.GracefulRestart{LocalRestarting: localRestarting},
		}
	}
	for _, tc := range []struct {
		state           api.PeerState_SessionState
		localRestarting bool
		upSinceRestart  bool
		want            bool
	}{
		{api.PeerState_IDLE, false, false, true},
		{api.PeerState_CONNECT, false, false, true},
		{api.PeerState_ACTIVE, false, false, true},
		{api.PeerState_OPENSENT, false, false, false},
		{api.PeerState_OPENCONFIRM, false, false, false},
		{api.PeerState_ESTABLISHED, false, false, false},
		{api.PeerState_ACTIVE, true, false, false},
		{api.PeerState_ACTIVE, false, true, false},
	} {
		if got := needsReassert(peer(tc.state, tc.localRestarting), tc.upSinceRestart); got != tc.want {
			t.Errorf("%v, local restarting %v, up since restart %v: needsReassert %v, want %v",
				tc.state, tc.localRestarting, tc.upSinceRestart, got, tc.want)
		}
	}
}

// Two speakers that restart at once (a site's power cut, a rolling
// restart that overlaps) meet each with the Restart State bit set toward
// the other. GoBGP's restarting speaker holds its updates to such a peer
// until every peer has sent End-of-RIB or the selection deferral timer
// fires, and counts the new peer as not done until its End-of-RIB: each
// side waits for the other's End-of-RIB before sending its own, so
// neither sends anything until the deferral timer (RFC 4724 4.1 excludes
// peers that set the Restart State bit; GoBGP does not). Both must learn
// each other's blocks well before the restart time (30 s here) runs out.
func TestSimultaneousRestart(t *testing.T) {
	n := nodes(t, 2)
	a, b := newSpeaker(t, nil), newSpeaker(t, nil)
	a.MarkRestarting()
	b.MarkRestarting()
	start := time.Now()
	reconcile(t, a, fullMesh(n[0], n...), n[0].blocks...)
	reconcile(t, b, fullMesh(n[1], n...), n[1].blocks...)
	testutil.Eventually(t, 20*time.Second, "both restarted speakers learn each other's block", func() bool {
		return hasVia(a, n[1].blocks[0], n[1].addr, "b") && hasVia(b, n[0].blocks[0], n[0].addr, "a")
	})
	t.Logf("MEASURE two speakers restarting at once: routes exchanged %v after both started", time.Since(start).Round(time.Millisecond))
}

// GoBGP releases the updates a restarting speaker holds for a peer with
// the Restart State bit only when that peer comes up or sends End-of-RIB
// while every peer is done; an End-of-RIB from a peer without the bit
// (one whose session dropped and came back after the restart ended for
// it) checks nothing. Here: a restarts; b's End-of-RIB ends the restart
// for every peer and netd re-asserts the bit for c, not up yet; b's
// session drops and comes back, its End-of-RIB outstanding; c comes up
// (held back: b is not done) and sends its End-of-RIB (still held); b's
// End-of-RIB then releases nothing. c must still get a's block long
// before the restart time (30 s): netd's selection deferral is short.
func TestRestartDeferralReleased(t *testing.T) {
	n := nodes(t, 3)
	a := newSpeaker(t, nil)
	a.MarkRestarting()
	reconcile(t, a, fullMesh(n[0], n...), n[0].blocks...) // n[0] is the lowest address: a waits for b and c to dial
	b := bgptest.DialRaw(t, n[1].addr, n[0].addr, testASN)
	if err := b.SendEOR(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, wait, "a re-adds c with the R-bit", a.reasserted)
	b.Drop()
	testutil.Eventually(t, wait, "a sees b's session down", func() bool { return !a.st.established(n[1].addr) })
	b = bgptest.DialRaw(t, n[1].addr, n[0].addr, testASN)

	c := bgptest.NewPeer(t, n[2].addr, testASN)
	c.AddNeighbor(n[0].addr, testASN, bgptest.NeighborOptions{GracefulRestart: true, RestartTime: 30})
	c.Announce(n[2].blocks...)
	testutil.Eventually(t, wait, "a learns c's block", func() bool { return hasVia(a, n[2].blocks[0], n[2].addr, "c") })
	up := time.Now()
	if err := b.SendEOR(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, "c gets a's block", func() bool { return c.Has(n[0].blocks[0]) })
	t.Logf("MEASURE c got a's block %v after a learned c's", time.Since(up).Round(time.Millisecond))
	if !b.Has(n[0].blocks[0]) {
		t.Errorf("b lacks a's block")
	}
}
