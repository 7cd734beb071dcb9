package scale

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestCPUTicks(t *testing.T) {
	// A command name with a space and a ')' in it, as /proc shows it.
	line := []byte("4242 (net d) x) S 1 4242 4242 0 -1 4194560 2000 0 0 0 170 35 0 0 20 0 12 0 99999 1000000 5000 18446744073709551615\n")
	got, err := cpuTicks(line)
	if err != nil {
		t.Fatal(err)
	}
	if got != 205 {
		t.Errorf("ticks = %d, want 170+35", got)
	}
	if _, err := cpuTicks([]byte("12 (x) S 1 2")); err == nil {
		t.Error("a short line gave no error")
	}
}

func TestMemAvailable(t *testing.T) {
	got, err := memAvailable([]byte("MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n"))
	if err != nil || got != 20000000*1024 {
		t.Errorf("memAvailable = %d, %v", got, err)
	}
	if _, err := memAvailable([]byte("MemTotal: 1 kB\n")); err == nil {
		t.Error("no MemAvailable gave no error")
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestFitLine(t *testing.T) {
	f := fitLine([]float64{25, 50, 100}, []float64{30 + 0.2*25, 30 + 0.2*50, 30 + 0.2*100})
	if math.Abs(f.Slope-0.2) > 1e-9 || math.Abs(f.Intercept-30) > 1e-9 || f.Points != 3 {
		t.Errorf("fit = %+v, want slope 0.2, intercept 30", f)
	}
	if f := fitLine([]float64{5}, []float64{1}); f.Points != 0 {
		t.Errorf("one point fitted: %+v", f)
	}
}

func TestPrintAndFits(t *testing.T) {
	rs := []*Result{
		{Nodes: 25, Topology: "route-reflector", Converge: 10 * time.Second, RSSMedian: 40, HostMiB: 25 * 30,
			Faults: []Blast{{Fault: KindKill, Node: "node-0024", Sent: 100, Lost: 0}}},
		{Nodes: 50, Topology: "route-reflector", Converge: 20 * time.Second, RSSMedian: 42, HostMiB: 50 * 30},
		{Nodes: 50, Topology: "full-mesh", Err: "did not converge"},
	}
	var b strings.Builder
	Print(&b, rs)
	out := b.String()
	for _, want := range []string{"kill -9", "node-0024", "N=50 full-mesh stopped: did not converge", "converge s"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	var conv Growth
	for _, g := range Fits(rs) {
		if g.Figure == "converge s" {
			conv = g
		}
		if g.Topology == "full-mesh" {
			t.Errorf("a failed lab was fitted: %+v", g)
		}
	}
	if math.Abs(conv.Fit.Slope-0.4) > 1e-9 {
		t.Errorf("convergence fit %+v, want 0.4 s per node", conv)
	}
}
