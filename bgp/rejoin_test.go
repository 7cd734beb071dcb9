package bgp

import (
	"context"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ducksnest/netd/internal/testutil"
)

// TestIdleHoldCutKeepsStale: b stops gracefully; a sees the session drop,
// cuts GoBGP's idle hold (ResetPeer, disable, enable while Idle) and still
// holds b's block as stale afterwards; the restarted b is accepted, and a
// re-learns the block from it.
func TestIdleHoldCutKeepsStale(t *testing.T) {
	n := nodes(t, 2)
	aCfg, bCfg := fullMesh(n[0], n...), fullMesh(n[1], n...)
	a, b := newSpeaker(t, nil), newSpeaker(t, nil)
	reconcile(t, a, aCfg, n[0].blocks...)
	reconcile(t, b, bCfg, n[1].blocks...)
	block := n[1].blocks[0]
	testutil.Eventually(t, wait, "a learns b's block", func() bool { return hasVia(a, block, n[1].addr, "b") })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Stop(ctx, true); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, wait, "a cuts the idle hold of b's dropped session", func() bool {
		return promtest.ToFloat64(a.metrics.idleHoldCut) == 1
	})
	if !hasVia(a, block, n[1].addr, "b") || len(a.stale()) != 1 {
		t.Fatalf("after the idle hold cut a has learned %v, stale %v; want b's block kept as stale", a.Learned(), a.stale())
	}
	if ss, admin, err := a.peerAdmin(ctx, n[1].addr); err != nil || admin.String() != "UP" {
		t.Fatalf("b's peer on a: session %v, admin %v, err %v; want admin up", ss, admin, err)
	}

	b2 := newSpeaker(t, nil)
	b2.MarkRestarting()
	start := time.Now()
	reconcile(t, b2, bCfg, n[1].blocks...)
	testutil.Eventually(t, 3*wait, "a re-learns b's block from the restarted b", func() bool {
		return a.st.established(n[1].addr) && hasVia(a, block, n[1].addr, "b") && len(a.stale()) == 0
	})
	t.Logf("restarted b: session up and block fresh on a after %v", time.Since(start))
}
