package bgp

import (
	"bufio"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/netd/bgp/bgptest"
	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/policy/desired"
)

// TestMeasureConvergence logs how long a new speaker's block takes to
// reach a peer's Learned (median of 10, each with fresh speakers) and how
// long a new block takes on an established session.
func TestMeasureConvergence(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	var join, change []time.Duration
	for range 10 {
		n := nodes(t, 2)
		a, b := newSpeaker(t, nil), newSpeaker(t, nil)
		n[0].blocks = append(n[0].blocks, pfx("10.244.200.0/24"))
		reconcile(t, b, fullMesh(n[1], n...), n[1].blocks...)
		start := time.Now()
		reconcile(t, a, fullMesh(n[0], n...), n[0].blocks[0])
		waitLearned(t, b, n[0].blocks[0])
		join = append(join, time.Since(start))

		start = time.Now()
		reconcile(t, a, fullMesh(n[0], n...), n[0].blocks...)
		waitLearned(t, b, n[0].blocks[1])
		change = append(change, time.Since(start))
	}
	t.Logf("new speaker: Reconcile to block in peer's Learned: median %v (min %v, max %v)", median(join), slices.Min(join), slices.Max(join))
	t.Logf("established session: Reconcile with a new block to peer's Learned: median %v (min %v, max %v)", median(change), slices.Min(change), slices.Max(change))
}

// waitLearned waits on s.Changes (not polling) until s learned p.
func waitLearned(t *testing.T, s *Speaker, p netip.Prefix) {
	t.Helper()
	deadline := time.After(wait)
	for {
		if _, ok := route(s, p); ok {
			return
		}
		select {
		case <-s.Changes():
		case <-deadline:
			t.Fatalf("%v not learned", p)
		}
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// TestMeasureMemory logs the heap and RSS growth per learned prefix with
// 10k prefixes from a plain GoBGP peer.
func TestMeasureMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	const count = 10000
	n := nodes(t, 2)
	x := bgptest.NewPeer(t, n[1].addr, testASN)
	var ps []netip.Prefix
	base := netip.MustParseAddr("10.0.0.0").As4()
	for i := range count {
		v := uint32(base[0])<<24 + uint32(i)*64
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 26))
	}
	x.Announce(ps...) // before the session: x's own RIB is not counted
	heap0, rss0 := memNow()

	s := newSpeaker(t, nil)
	cfg := speakerCfg(n[0], desired.Peer{
		Name: "x", Kind: desired.PeerNode, Address: n[1].addr, ASN: testASN,
		Import: desired.Import{Ranges: []desired.PrefixRange{{Prefix: pfx("10.0.0.0/8"), MinLen: 26, MaxLen: 26}}, MaxPrefixes: 2 * count},
	})
	cfg.PodCIDR = pfx("10.0.0.0/8")
	start := time.Now()
	reconcile(t, s, cfg, n[0].blocks...)
	x.AddNeighbor(n[0].addr, testASN, bgptest.NeighborOptions{GracefulRestart: true, RestartTime: 30})
	testutil.Eventually(t, 60*time.Second, "10k prefixes learned", func() bool { return len(s.Learned()) == count })
	took := time.Since(start)
	testutil.Eventually(t, 60*time.Second, "synced", s.Synced)
	heap1, rss1 := memNow()
	t.Logf("%d prefixes learned in %v (Reconcile to Learned); heap +%.0f B/prefix (%.1f MiB), RSS +%.0f B/prefix (%.1f MiB)",
		count, took.Round(time.Millisecond), float64(heap1-heap0)/count, float64(heap1-heap0)/(1<<20),
		float64(rss1-rss0)/count, float64(rss1-rss0)/(1<<20))
}

func memNow() (heap, rss int64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	f, err := os.Open("/proc/self/status")
	if err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				rss = kb << 10
			}
		}
	}
	return int64(m.HeapAlloc), rss
}
