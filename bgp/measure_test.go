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

// BenchmarkConvergence measures, per round with fresh speakers, how long
// a block takes from Reconcile to a peer's Learned when the session is new
// (join) and on an established session (change), against the same two
// steps with a plain GoBGP router announcing to the same netd receiver in
// the same round (the reference: GoBGP's own propagation). It reports the
// medians and the ratios netd/GoBGP. Run it with a round count, e.g.
//
//	go test -run '^$' -bench Convergence -benchtime 10x ./bgp
func BenchmarkConvergence(b *testing.B) {
	var join, change, refJoin, refChange []time.Duration
	for range b.N {
		n := nodes(b, 3)
		a, recv := newSpeaker(b, nil), newSpeaker(b, nil)
		n[0].blocks = append(n[0].blocks, pfx("10.244.200.0/24"))
		n[2].blocks = append(n[2].blocks, pfx("10.244.201.0/24"))
		reconcile(b, recv, fullMesh(n[1], n...), n[1].blocks...)
		start := time.Now()
		reconcile(b, a, fullMesh(n[0], n...), n[0].blocks[0])
		waitLearned(b, recv, n[0].blocks[0])
		join = append(join, time.Since(start))
		start = time.Now()
		reconcile(b, a, fullMesh(n[0], n...), n[0].blocks...)
		waitLearned(b, recv, n[0].blocks[1])
		change = append(change, time.Since(start))

		// The reference: a plain GoBGP router in n[2]'s place.
		x := bgptest.NewPeer(b, n[2].addr, testASN)
		x.Announce(n[2].blocks[0])
		start = time.Now()
		x.AddNeighbor(n[1].addr, testASN, bgptest.NeighborOptions{GracefulRestart: true, RestartTime: 30})
		waitLearned(b, recv, n[2].blocks[0])
		refJoin = append(refJoin, time.Since(start))
		start = time.Now()
		x.Announce(n[2].blocks[1])
		waitLearned(b, recv, n[2].blocks[1])
		refChange = append(refChange, time.Since(start))
	}
	b.ReportMetric(float64(median(join).Microseconds())/1000, "join-ms")
	b.ReportMetric(float64(median(change).Microseconds())/1000, "change-ms")
	b.ReportMetric(median(join).Seconds()/median(refJoin).Seconds(), "join-netd/gobgp")
	b.ReportMetric(median(change).Seconds()/median(refChange).Seconds(), "change-netd/gobgp")
}

// waitLearned waits on s.Changes (not polling) until s learned p.
func waitLearned(t testing.TB, s *Speaker, p netip.Prefix) {
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
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// BenchmarkMemory measures the heap and RSS growth of a netd speaker per
// prefix learned, with 10k prefixes from a plain GoBGP peer, against the
// heap the same GoBGP peer needs to originate them (the reference, in the
// same run). Every round also checks that all 10k are learned and synced.
//
//	go test -run '^$' -bench Memory -benchtime 1x ./bgp
func BenchmarkMemory(b *testing.B) {
	const count = 10000
	var heapPer, rssPer, refPer, allocPer, took []float64
	for range b.N {
		n := nodes(b, 2)
		var ps []netip.Prefix
		base := netip.MustParseAddr("10.0.0.0").As4()
		for i := range count {
			v := uint32(base[0])<<24 + uint32(i)*64
			ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 26))
		}
		ref0, _ := memNow()
		x := bgptest.NewPeer(b, n[1].addr, testASN)
		x.Announce(ps...) // before the session: x's own RIB is the reference
		heap0, rss0 := memNow()
		alloc0 := totalAlloc()

		s := newSpeaker(b, nil)
		cfg := speakerCfg(n[0], desired.Peer{
			Name: "x", Kind: desired.PeerNode, Address: n[1].addr, ASN: testASN,
			Import: desired.Import{Ranges: []desired.PrefixRange{{Prefix: pfx("10.0.0.0/8"), MinLen: 26, MaxLen: 26}}, MaxPrefixes: 2 * count},
		})
		cfg.PodCIDR = pfx("10.0.0.0/8")
		start := time.Now()
		reconcile(b, s, cfg, n[0].blocks...)
		x.AddNeighbor(n[0].addr, testASN, bgptest.NeighborOptions{GracefulRestart: true, RestartTime: 30})
		testutil.Eventually(b, 60*time.Second, "10k prefixes learned", func() bool { return len(s.Learned()) == count })
		took = append(took, time.Since(start).Seconds())
		testutil.Eventually(b, 60*time.Second, "synced", s.Synced)
		allocPer = append(allocPer, float64(totalAlloc()-alloc0)/count)
		heap1, rss1 := memNow()
		heapPer = append(heapPer, float64(heap1-heap0)/count)
		rssPer = append(rssPer, float64(rss1-rss0)/count)
		refPer = append(refPer, float64(heap0-ref0)/count)
	}
	med := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	b.ReportMetric(med(took), "s-to-learn-10k")
	b.ReportMetric(med(heapPer), "heap-B/prefix")
	b.ReportMetric(med(rssPer), "rss-B/prefix")
	b.ReportMetric(med(heapPer)/med(refPer), "heap-netd/gobgp-origin")
	b.ReportMetric(med(allocPer), "alloc-B/prefix")
}

// totalAlloc is the bytes allocated on the heap so far (freed or not): the
// work and garbage learning costs.
func totalAlloc() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
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
