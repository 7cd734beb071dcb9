package bgp

import (
	"context"
	"net/netip"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"

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
