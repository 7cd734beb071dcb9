package bgp

import (
	"testing"

	"github.com/ducksnest/netd/internal/testutil"
)

func TestTwoSpeakersLearnEachOther(t *testing.T) {
	n := nodes(t, 2)
	a, b := newSpeaker(t, nil), newSpeaker(t, nil)
	reconcile(t, a, fullMesh(n[0], n...), n[0].blocks...)
	reconcile(t, b, fullMesh(n[1], n...), n[1].blocks...)
	testutil.Eventually(t, wait, "a learns b's block", func() bool { return hasVia(a, n[1].blocks[0], n[1].addr, "b") })
	testutil.Eventually(t, wait, "b learns a's block", func() bool { return hasVia(b, n[0].blocks[0], n[0].addr, "a") })
	testutil.Eventually(t, wait, "both synced", func() bool { return a.Synced() && b.Synced() })
	if got := learnedPrefixes(a); len(got) != 1 {
		t.Errorf("a learned %v, want only b's block", got)
	}
}
