package bgp

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/ducksnest/netd/internal/testutil"
)

// A second Reconcile with the same input changes nothing in GoBGP and
// resets no session.
func TestReconcileIdempotent(t *testing.T) {
	n := nodes(t, 2)
	a, b := newSpeaker(t, nil), newSpeaker(t, nil)
	reconcile(t, a, fullMesh(n[0], n...), n[0].blocks...)
	reconcile(t, b, fullMesh(n[1], n...), n[1].blocks...)
	testutil.Eventually(t, wait, "b learns a's block", func() bool { return hasVia(b, n[0].blocks[0], n[0].addr, "a") })
	before, starts := a.Mutations(), a.sessionStarts()
	for range 3 {
		reconcile(t, a, fullMesh(n[0], n...), n[0].blocks...)
	}
	if got := a.Mutations(); got != before {
		t.Errorf("repeated Reconcile made %d GoBGP changes", got-before)
	}
	if got := a.sessionStarts(); !maps.Equal(got, starts) || len(got) != 1 {
		t.Errorf("sessions %v, want unchanged %v", got, starts)
	}
	// A changed session setting is applied by re-adding the peer.
	cfg := fullMesh(n[0], n...)
	cfg.Timers.HoldTime = 6 * time.Second
	reconcile(t, a, cfg, n[0].blocks...)
	if a.Mutations() == before {
		t.Error("changed hold time made no GoBGP change")
	}
	testutil.Eventually(t, wait, "session back", func() bool { return hasVia(a, n[1].blocks[0], n[1].addr, "b") })
}

// Removing a peer withdraws what was learned from it; changing the own
// blocks advertises the new and withdraws the old.
func TestPeerRemovalAndOwnBlocks(t *testing.T) {
	n := nodes(t, 2)
	n[0].blocks = append(n[0].blocks, pfx("10.244.101.0/24"))
	a, b := newSpeaker(t, nil), newSpeaker(t, nil)
	reconcile(t, a, fullMesh(n[0], n...), n[0].blocks[0])
	reconcile(t, b, fullMesh(n[1], n...), n[1].blocks...)
	testutil.Eventually(t, wait, "b learns a's first block", func() bool { return hasVia(b, n[0].blocks[0], n[0].addr, "a") })
	testutil.Eventually(t, wait, "a learns b's block", func() bool { return hasVia(a, n[1].blocks[0], n[1].addr, "b") })

	reconcile(t, a, fullMesh(n[0], n...), n[0].blocks[1])
	testutil.Eventually(t, wait, "b has only a's second block", func() bool {
		return slices.Equal(learnedPrefixes(b), n[0].blocks[1:])
	})
	st, err := a.Status(context.Background())
	if err != nil || !slices.Equal(st.Advertised, n[0].blocks[1:]) {
		t.Errorf("advertised %v, %v", st.Advertised, err)
	}

	reconcile(t, a, speakerCfg(n[0]), n[0].blocks[1])
	testutil.Eventually(t, wait, "a forgets b's block", func() bool { return len(a.Learned()) == 0 })
	testutil.Eventually(t, wait, "b loses a's block", func() bool { return len(b.Learned()) == 0 })
}

// Stop(graceful=true) leaves a's routes at b as stale until a new speaker
// with a's config is back and has sent End-of-RIB; Stop(graceful=false)
// withdraws them at once.
func TestGracefulRestart(t *testing.T) {
	n := nodes(t, 2)
	a, b := newSpeaker(t, nil), newSpeaker(t, nil)
	aCfg := fullMesh(n[0], n...)
	reconcile(t, a, aCfg, n[0].blocks...)
	reconcile(t, b, fullMesh(n[1], n...), n[1].blocks...)
	block := n[0].blocks[0]
	testutil.Eventually(t, wait, "b learns a's block", func() bool { return hasVia(b, block, n[0].addr, "a") })
	testutil.Eventually(t, wait, "b synced", b.Synced)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stopped := time.Now()
	if err := a.Stop(ctx, true); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	testutil.Eventually(t, wait, "b sees the session down", func() bool {
		st, _ := b.Status(context.Background())
		return st.Peers[0].State != "established"
	})
	if !slices.Equal(b.stale(), []netip.Prefix{block}) || !hasVia(b, block, n[0].addr, "a") {
		t.Fatalf("after graceful stop b has %v (stale %v), want a's block kept as stale", b.Learned(), b.stale())
	}

	a2 := newSpeaker(t, nil)
	a2.MarkRestarting()
	reconcile(t, a2, aCfg, n[0].blocks...)
	// GoBGP keeps a dropped session idle for 5 s before it accepts a
	// new connection, so this takes 6-7 s.
	testutil.Eventually(t, 3*wait, "b refreshes a's block from the restarted speaker", func() bool {
		if !hasVia(b, block, n[0].addr, "a") {
			t.Fatalf("b lost a's block during the restart: %v", b.Learned())
		}
		return len(b.stale()) == 0
	})
	t.Logf("a's block refreshed at b %v after the graceful stop", time.Since(stopped))
	testutil.Eventually(t, wait, "restarted a learns b's block", func() bool { return hasVia(a2, n[1].blocks[0], n[1].addr, "b") })

	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a2.Stop(ctx, false); err != nil {
		t.Fatalf("stop: %v", err)
	}
	// Withdrawn outright: never held as stale (as after the graceful stop
	// above, where the block stays for the 30 s restart time), so it goes
	// as soon as b handles the session's end.
	d := testutil.Eventually(t, wait, "b withdraws a's block", func() bool {
		if slices.Contains(b.stale(), block) {
			t.Fatalf("after a hard stop b holds a's block as stale: %v", b.stale())
		}
		_, ok := route(b, block)
		return !ok
	})
	t.Logf("withdrawn %v after a hard stop", d)
}

// Synced waits for End-of-RIB from a peer that is up (and Learned already
// has what came before it), and for the bound on a peer that never comes
// up.
func TestSynced(t *testing.T) {
	n := nodes(t, 3) // n[2] never runs
	a := newSpeaker(t, nil, WithSyncBound(time.Minute))
	b := newSpeaker(t, nil)
	if a.Synced() {
		t.Fatal("synced before the first Reconcile")
	}
	reconcile(t, a, fullMesh(n[0], n[:2]...), n[0].blocks...)
	// Checked before b runs: once it does, End-of-RIB may come at once.
	if a.Synced() {
		t.Fatal("synced right after Reconcile")
	}
	reconcile(t, b, fullMesh(n[1], n[:2]...), n[1].blocks...)
	select {
	case <-a.Changes():
	case <-time.After(wait):
		t.Fatal("no change signalled")
	}
	testutil.Eventually(t, wait, "a synced by End-of-RIB", a.Synced)
	if !hasVia(a, n[1].blocks[0], n[1].addr, "b") {
		t.Errorf("synced before learning b's block: %v", a.Learned())
	}

	// A peer that never comes up: synced only after the bound. (The bound
	// is long enough that a busy machine cannot pass it between Reconcile
	// and the first check.)
	const bound = 3 * time.Second
	c := newSpeaker(t, nil, WithSyncBound(bound))
	start := time.Now()
	reconcile(t, c, speakerCfg(n[2], nodePeer(node{name: "nobody", addr: n[2].addr.Next()})))
	if c.Synced() {
		t.Error("synced at once with a peer down")
	}
	testutil.Eventually(t, wait, "c synced after the bound", c.Synced)
	if d := time.Since(start); d < bound {
		t.Errorf("synced after %v, before the bound", d)
	}
}
