package e2e

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/lab"
)

// stableMem waits until a node's VmRSS has not moved by more than 64 KiB
// over 5 samples a second apart (or limit has passed) and returns the
// last sample.
func stableMem(t *testing.T, l *lab.Lab, node string, limit time.Duration) memSample {
	t.Helper()
	var last []float64
	var m memSample
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		var err error
		if m, err = readMem(l, node); err != nil {
			t.Fatal(err)
		}
		last = append(last, m.rss)
		if k := len(last); k >= 5 && spread(last[k-5:]) < 1.0/16 {
			break
		}
		<-tick.C
	}
	return m
}

// peakRSS samples a node's VmRSS every 50 ms until stop is called, which
// returns the highest sample in MiB.
func peakRSS(t *testing.T, l *lab.Lab, node string) (stop func() float64) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var peak float64
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss, err := l.RSS(node); err == nil {
				peak = max(peak, float64(rss)/(1<<20))
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() float64 {
		cancel()
		wg.Wait()
		return peak
	}
}

// TestPrefixMemory measures what 10,000 prefixes learned from an external
// peer (BIRD on the overlay, announcing to firebat) and installed in the
// kernel cost firebat's netd: VmRSS at idle, its peak while they arrive,
// at steady state once they are all installed, and after they are
// withdrawn, for three announce/withdraw cycles. It is a measurement, not
// a check: it runs only with NETD_MEASURE=1 (NETD_MEASURE_BIN: another
// netd binary).
func TestPrefixMemory(t *testing.T) {
	if os.Getenv("NETD_MEASURE") != "1" {
		t.Skip("a measurement: set NETD_MEASURE=1 (and NETD_MEASURE_BIN for another binary)")
	}
	needRoot(t)
	needBin(t, "bird", "birdc")
	if b := os.Getenv("NETD_MEASURE_BIN"); b != "" {
		saved := netdBin
		netdBin = b
		t.Cleanup(func() { netdBin = saved })
	}
	const n = 10000
	l := upLabWith(t, examplePolicy(t, "maxPrefixes: 1000 ", "maxPrefixes: 20000 ", examplePeer, examplePeer+scalePeer))
	r, err := l.AddRouter(t.Context(), "edge", lab.OnWAN, netip.MustParsePrefix("100.64.0.50/10"))
	if err != nil {
		t.Fatal(err)
	}
	idle := stableMem(t, l, "firebat", 60*time.Second)
	t.Logf("MEASURE firebat idle: %s", idle)
	count := func(want int) func() (bool, error) {
		return func() (bool, error) {
			c, err := countIn(l, "firebat")
			return c == want, err
		}
	}
	perPrefix := func(m memSample) float64 { return (m.rss - idle.rss) * (1 << 20) / n }
	conf := scaleBIRD(n)
	var birdc func(...string) string
	for cycle := 1; cycle <= 3; cycle++ {
		stop := peakRSS(t, l, "firebat")
		start := time.Now()
		if birdc == nil {
			birdc = startBIRD(t, l, r, conf)
		} else {
			birdc("enable", "firebat")
		}
		testutil.Poll(t, 180*time.Second, "10k routes in firebat's kernel", count(n))
		took := time.Since(start)
		full := stableMem(t, l, "firebat", 60*time.Second)
		peak := stop()
		t.Logf("MEASURE cycle %d: %d prefixes installed in %v; peak VmRSS %.1f MiB (%.0f B/prefix above idle); steady %s: %.0f B/prefix above idle",
			cycle, n, took.Round(time.Millisecond), peak, (peak-idle.rss)*(1<<20)/n, full, perPrefix(full))
		out := birdc("disable", "firebat")
		if !strings.Contains(out, "disabled") {
			t.Logf("birdc disable: %s", out)
		}
		testutil.Poll(t, 120*time.Second, "10k routes withdrawn", count(0))
		after := stableMem(t, l, "firebat", 60*time.Second)
		t.Logf("MEASURE cycle %d: after withdrawal %s: %.0f B/prefix above idle", cycle, after, perPrefix(after))
	}
}
