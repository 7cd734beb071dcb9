package bgp

import (
	"context"
	"testing"
	"time"

	"github.com/ducksnest/netd/internal/testutil"
)

// PeerUnreachable on an established session drops the peer's paths at
// once (and the session, so GoBGP does not keep them as stale); the
// paths come back after PeerReachable and a new session. On a session
// already down (a restart) it changes nothing.
func TestPeerUnreachable(t *testing.T) {
	n := nodes(t, 2)
	a, b := newSpeaker(t, nil), newSpeaker(t, nil)
	reconcile(t, a, fullMesh(n[0], n...), n[0].blocks...)
	reconcile(t, b, fullMesh(n[1], n...), n[1].blocks...)
	testutil.Eventually(t, wait, "a learns b's block", func() bool { return hasVia(a, n[1].blocks[0], n[1].addr, "b") })
	start := time.Now()
	if !a.PeerUnreachable(n[1].addr) {
		t.Fatal("PeerUnreachable on an established session did not cut the peer off")
	}
	testutil.Eventually(t, wait, "a drops b's block", func() bool { return len(a.Learned()) == 0 })
	t.Logf("paths dropped %v after PeerUnreachable", time.Since(start))
	if a.PeerUnreachable(n[1].addr) {
		t.Error("second PeerUnreachable cut off again")
	}
	// Still cut off when the session comes back, until reachable.
	testutil.Eventually(t, 30*time.Second, "session back", func() bool { return a.st.established(n[1].addr) })
	if len(a.Learned()) != 0 {
		t.Errorf("learned %v while cut off", a.Learned())
	}
	a.PeerReachable(n[1].addr)
	testutil.Eventually(t, wait, "a learns b's block again", func() bool { return hasVia(a, n[1].blocks[0], n[1].addr, "b") })

	// A peer whose session is already down is restarting: nothing changes.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
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
