package bgp

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ducksnest/netd/bgp/bgptest"
	ltestutil "github.com/ducksnest/netd/internal/testutil"
)

// heldSetup brings up speaker a (the lower address, so it waits for b to
// dial) and a hand-driven b advertising restart seconds of graceful
// restart, which announces its block; then b's connection drops without a
// NOTIFICATION (a's GoBGP keeps the block as stale), and a session attempt
// from b fails before it is established, which makes GoBGP drop the
// stale path. It returns a, b's block and when b dropped.
func heldSetup(t *testing.T, restart uint16) (*Speaker, []node, time.Time) {
	t.Helper()
	n := nodes(t, 2)
	a := newSpeaker(t, nil)
	reconcile(t, a, fullMesh(n[0], n...), n[0].blocks...)
	b := bgptest.DialRawRestart(t, n[1].addr, n[0].addr, testASN, restart)
	block := n[1].blocks[0]
	if err := b.Announce(block, n[1].addr); err != nil {
		t.Fatal(err)
	}
	if err := b.SendEOR(); err != nil {
		t.Fatal(err)
	}
	ltestutil.Eventually(t, wait, "a learns b's block", func() bool { return hasVia(a, block, n[1].addr, "b") })
	dropped := time.Now()
	b.Drop()
	ltestutil.Eventually(t, wait, "a sees b's session down", func() bool { return !a.st.established(n[1].addr) })
	if !slices.Contains(a.stale(), block) {
		t.Fatalf("a's GoBGP does not keep b's block as stale after the drop: %v", a.stale())
	}
	// GoBGP holds b Idle for a moment (closing what it accepts), then
	// takes the connection, sends its OPEN, and sees it fail.
	ltestutil.Every(100*time.Millisecond).Poll(t, wait, "a session attempt from b reaching OpenSent", func() (bool, error) {
		return bgptest.Attempt(n[1].addr, n[0].addr)
	})
	ltestutil.Eventually(t, wait, "a's GoBGP dropping the stale path", func() bool { return !slices.Contains(a.stale(), block) })
	return a, n, dropped
}

// TestStalePathsHeldAfterFailedAttempt: GoBGP drops a restarting peer's
// stale paths when a session attempt with it fails (the thaw of a node
// frozen past the hold time); netd keeps them in Learned until the peer's
// new session sends End-of-RIB.
func TestStalePathsHeldAfterFailedAttempt(t *testing.T) {
	a, n, _ := heldSetup(t, 120)
	block := n[1].blocks[0]
	ltestutil.Eventually(t, wait, "the held count", func() bool { return testutil.ToFloat64(a.metrics.held.WithLabelValues("b")) == 1 })
	end := time.Now().Add(2 * time.Second)
	for time.Now().Before(end) {
		if !hasVia(a, block, n[1].addr, "b") {
			t.Fatalf("a dropped b's block after GoBGP did: %v", a.Learned())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// b comes back without the block: its End-of-RIB ends the hold.
	b := bgptest.DialRaw(t, n[1].addr, n[0].addr, testASN)
	if !hasVia(a, block, n[1].addr, "b") {
		t.Errorf("a dropped b's block when b's new session came up, before its End-of-RIB")
	}
	if err := b.SendEOR(); err != nil {
		t.Fatal(err)
	}
	ltestutil.Eventually(t, wait, "b's block gone after its End-of-RIB", func() bool { _, ok := route(a, block); return !ok })
}

// TestHeldPathsEnd: a held path goes when the peer's restart time since
// its session ended has passed, and at once when the path to the peer is
// found dead.
func TestHeldPathsEnd(t *testing.T) {
	t.Run("restart time", func(t *testing.T) {
		const restart = 4
		a, n, dropped := heldSetup(t, restart)
		block := n[1].blocks[0]
		if !hasVia(a, block, n[1].addr, "b") {
			t.Fatalf("b's block not held: %v", a.Learned())
		}
		ltestutil.Eventually(t, wait+restart*time.Second, "b's block gone after its restart time", func() bool { _, ok := route(a, block); return !ok })
		if d := time.Since(dropped); d < restart*time.Second {
			t.Errorf("held path gone %v after the drop, before the restart time (%ds)", d, restart)
		}
	})
	t.Run("path dead", func(t *testing.T) {
		a, n, _ := heldSetup(t, 120)
		block := n[1].blocks[0]
		if !hasVia(a, block, n[1].addr, "b") {
			t.Fatalf("b's block not held: %v", a.Learned())
		}
		if !a.PathDead(n[1].addr) {
			t.Fatal("PathDead did not cut b off")
		}
		ltestutil.Eventually(t, wait, "b's block gone once its path is dead", func() bool { _, ok := route(a, block); return !ok })
	})
}
