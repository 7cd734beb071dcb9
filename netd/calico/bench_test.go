package calico

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/netd/netd/kube"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/ducksnest/netd/internal/testutil"
)

// The measurements of the BlockAffinity watch, against a real API server.
// Each reports a ratio against a reference measured in the same run:
//
//	go test -run '^$' -bench . -benchtime 10x ./netd/calico

// BenchmarkAffinityLatency measures the delay from a BlockAffinity create
// to the source's Changes (with the block in Blocks), against a plain
// watch on BlockAffinities seeing the same create (the API server's own
// delay, the reference).
func BenchmarkAffinityLatency(b *testing.B) {
	s := server(b)
	c := clients(b, s)
	src, _ := startSource(b, c, "node-a")
	w, err := c.Dynamic.Resource(BlockAffinities).Watch(b.Context(), metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(w.Stop)
	var lat, ref []time.Duration
	for i := range b.N {
		drain(src.Changes())
		cidr := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(128 + i/256), byte(i % 256), 0}), 26)
		start := time.Now()
		name := addAffinity(b, c, "node-a", cidr.String(), "confirmed")
		seen := false
		for !seen {
			select {
			case ev := <-w.ResultChan():
				seen = ev.Type == watch.Added && objectName(ev.Object) == name
			case <-time.After(30 * time.Second):
				b.Fatalf("the watch did not see %s", name)
			}
		}
		ref = append(ref, time.Since(start))
		select {
		case <-src.Changes():
		case <-time.After(30 * time.Second):
			b.Fatalf("no change for %s", cidr)
		}
		if !slices.Contains(src.Blocks("node-a"), cidr) {
			b.Fatalf("change without %s", cidr)
		}
		lat = append(lat, time.Since(start))
	}
	b.ReportMetric(float64(medianOf(lat).Microseconds())/1000, "create-to-blocks-ms")
	b.ReportMetric(medianOf(lat).Seconds()/medianOf(ref).Seconds(), "source/watch")
}

func objectName(o any) string {
	if m, ok := o.(metav1.Object); ok {
		return m.GetName()
	}
	return ""
}

func medianOf(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkAffinityMemory measures the heap the source costs with 200
// affinities (a large cluster for a homelab), against the heap of one list
// of the same 200 objects (the reference).
func BenchmarkAffinityMemory(b *testing.B) {
	s := server(b)
	c := clients(b, s)
	for i := range 200 {
		addAffinity(b, c, fmt.Sprintf("node-%d", i%10), fmt.Sprintf("10.244.%d.%d/26", i/4, (i%4)*64), "confirmed")
	}
	var src, ref []float64
	for range b.N {
		h0 := heapInUse()
		list, err := c.Dynamic.Resource(BlockAffinities).List(b.Context(), metav1.ListOptions{})
		if err != nil || len(list.Items) != 200 {
			b.Fatalf("listing: %d objects, %v", len(list.Items), err)
		}
		h1 := heapInUse()
		runtime.KeepAlive(list)
		ctx, cancel := context.WithCancel(b.Context())
		sub := &subTB{TB: b, ctx: ctx}
		a, _ := startSource(sub, c, "node-1")
		testutil.Eventually(b, 30*time.Second, "200 blocks", func() bool {
			n := 0
			for _, ps := range a.Owners() {
				n += len(ps)
			}
			return n == 200
		})
		h2 := heapInUse()
		runtime.KeepAlive(a)
		cancel()
		sub.cleanup()
		ref = append(ref, float64(h1-h0))
		src = append(src, float64(h2-h1))
	}
	slices.Sort(src)
	slices.Sort(ref)
	b.ReportMetric(src[len(src)/2]/1024, "source-heap-KiB")
	b.ReportMetric(src[len(src)/2]/ref[len(ref)/2], "source/list")
}

// subTB runs startSource's cleanups at the end of a round, not of the
// benchmark.
type subTB struct {
	testing.TB
	ctx context.Context
	fns []func()
}

func (s *subTB) Cleanup(f func())         { s.fns = append(s.fns, f) }
func (s *subTB) Context() context.Context { return s.ctx }
func (s *subTB) cleanup() {
	for i := len(s.fns) - 1; i >= 0; i-- {
		s.fns[i]()
	}
}

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

const rssChildEnv = "NETD_CALICO_RSS_CHILD"

// BenchmarkWatchRSS measures the resident memory of a process that does
// what netd adds for Calico: the BlockAffinity watch (and its clients),
// idle, after the first sync, with 50 affinities in the cluster, against
// the same binary without the watch (the reference). It re-runs the test
// binary as those processes; each must sync and see its blocks.
func BenchmarkWatchRSS(b *testing.B) {
	s := server(b)
	c := clients(b, s)
	for i := range 50 {
		addAffinity(b, c, fmt.Sprintf("node-%d", i%5), fmt.Sprintf("10.244.%d.0/26", i), "confirmed")
	}
	child := func(mode string) (rssKB, heapKB, blocks int) {
		cmd := exec.CommandContext(b.Context(), os.Args[0], "-test.run=^$", "-test.bench=^$")
		cmd.Env = append(os.Environ(), rssChildEnv+"="+mode, "GOMEMLIMIT=", "GOGC=")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			b.Fatalf("child: %v\n%s", err, out.String())
		}
		if _, err := fmt.Sscanf(strings.TrimSpace(out.String()), "rss_kb=%d heap_kb=%d blocks=%d", &rssKB, &heapKB, &blocks); err != nil {
			b.Fatalf("child printed %q: %v", out.String(), err)
		}
		return rssKB, heapKB, blocks
	}
	var watchRSS, baseRSS []float64
	for range b.N {
		base, _, _ := child("-")
		rss, _, blocks := child(s.Kubeconfig)
		if blocks != 10 {
			b.Fatalf("the child with the watch saw %d blocks of node-1, want 10", blocks)
		}
		baseRSS = append(baseRSS, float64(base))
		watchRSS = append(watchRSS, float64(rss))
	}
	slices.Sort(watchRSS)
	slices.Sort(baseRSS)
	b.ReportMetric(watchRSS[len(watchRSS)/2]/1024, "watch-RSS-MiB")
	b.ReportMetric(watchRSS[len(watchRSS)/2]/baseRSS[len(baseRSS)/2], "watch/baseline-RSS")
}

// rssChild runs an AffinitySource until synced and idle, then prints its
// memory ("-": without the source). It returns the exit code.
func rssChild(kubeconfig string) int {
	blocks := 0
	if kubeconfig != "-" {
		cfg, err := kube.LoadConfig(kubeconfig)
		if err != nil {
			fmt.Println(err)
			return 1
		}
		c, err := kube.NewClient(cfg)
		if err != nil {
			fmt.Println(err)
			return 1
		}
		src, err := NewAffinitySource(c.Dynamic, BlockAffinities, "node-1", slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		if err != nil {
			fmt.Println(err)
			return 1
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		go func() { _ = src.Run(ctx) }()
		if err := src.WaitSynced(ctx); err != nil {
			fmt.Println(err)
			return 1
		}
		// Idle: let the watch settle for a second, then return freed memory.
		idle := time.NewTimer(time.Second)
		<-idle.C
		blocks = len(src.Blocks("node-1"))
	}
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	status, _ := os.ReadFile("/proc/self/status")
	rss := 0
	for _, l := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			_, _ = fmt.Sscanf(strings.TrimSpace(rest), "%d", &rss)
		}
	}
	fmt.Printf("rss_kb=%d heap_kb=%d blocks=%d\n", rss, ms.HeapInuse/1024, blocks)
	return 0
}
