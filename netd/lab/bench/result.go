package bench

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"
	"time"
)

// Result is what one run measured, by daemon (Netd, GoBGPd, BIRD).
type Result struct {
	Started       time.Time
	Load, LoadEnd string
	CPUs          int
	Idle          map[string]Idle
	Growth        map[string]Growth
	Rejoin        map[string]map[string][]time.Duration
	Install       []Install
	Errors        []string
}

func newResult(load string, cpus int) *Result {
	return &Result{
		Started: time.Now(), Load: load, CPUs: cpus,
		Idle: map[string]Idle{}, Growth: map[string]Growth{}, Rejoin: map[string]map[string][]time.Duration{},
	}
}

// Print writes the table.
func (res *Result) Print(w io.Writer) {
	fmt.Fprintf(w, "\nnetd lab bench %s, load average %s at the start, %s at the end, %d CPUs\n\n",
		res.Started.UTC().Format("2006-01-02 15:04 MST"), res.Load, res.LoadEnd, res.CPUs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tnetd\tgobgpd\tBIRD\tnetd/gobgpd\tnetd/BIRD")
	n, g, b := res.Idle[Netd], res.Idle[GoBGPd], res.Idle[BIRD]
	row(tw, "idle VmRSS per node (median of the nodes)", orNaN(float64(n.Mem.RSS)), orNaN(float64(g.Mem.RSS)), orNaN(float64(b.Mem.RSS)), mib)
	if n.Mem.RSS > 0 {
		fmt.Fprintf(tw, "  netd RssAnon / RssFile / Go heap in use\t%s / %s / %s\t\t\t\t\n", mib(float64(n.Mem.Anon)), mib(float64(n.Mem.File)), mib(n.Heap))
	}
	row(tw, fmt.Sprintf("idle CPU of the 4 nodes, CPU-s per minute (over %s)", n.Window.Round(time.Second)), orNaN(n.PerMinute()), orNaN(g.PerMinute()), orNaN(b.PerMinute()),
		func(v float64) string { return fmt.Sprintf("%.2f", v) })
	gn, gg, gb := res.Growth[Netd], res.Growth[GoBGPd], res.Growth[BIRD]
	prefixes := max(gn.N, gg.N, gb.N)
	bpp := func(v float64) string { return fmt.Sprintf("%.0f B", v) }
	for _, f := range []struct {
		name string
		get  func(Growth) int64
	}{
		{"peak", func(x Growth) int64 { return x.Peak }},
		{"steady", func(x Growth) int64 { return x.Steady }},
		{"after withdrawal", func(x Growth) int64 { return x.After }},
	} {
		v := func(x Growth) float64 {
			if x.N == 0 {
				return math.NaN()
			}
			return perPrefix(f.get(x), x.Base, x.N)
		}
		row(tw, fmt.Sprintf("VmRSS growth per prefix, %d learned: %s", prefixes, f.name), v(gn), v(gg), v(gb), bpp)
	}
	sec := func(v float64) string { return fmt.Sprintf("%.2f s", v) }
	row(tw, fmt.Sprintf("learn %d prefixes (into the kernel; gobgpd: its RIB)", prefixes), orNaN(gn.Learn.Seconds()), orNaN(gg.Learn.Seconds()), orNaN(gb.Learn.Seconds()), sec)
	for _, kind := range []string{kill9, sigterm} {
		tn, tb := res.Rejoin[Netd][kind], res.Rejoin[BIRD][kind]
		row(tw, fmt.Sprintf("restart (%s) -> sessions up, routes back (median of %d)", kind, max(len(tn), len(tb))),
			orNaN(medianDuration(tn).Seconds()), math.NaN(), orNaN(medianDuration(tb).Seconds()), sec)
	}
	tw.Flush()
	if len(res.Install) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "kernel install (median)\tnetd\tip -batch\tBIRD\tnetd/ip -batch\tnetd/BIRD")
		for _, in := range res.Install {
			fmt.Fprintf(tw, "%d routes\t%s\t%s\t%s\t%.2f×\t%.2f×\n", in.N, in.Netd.Round(time.Millisecond), in.IPBatch.Round(time.Millisecond),
				in.BIRD.Round(time.Millisecond), in.VsIPBatch, in.VsBIRD)
		}
		tw.Flush()
	}
	for _, e := range res.Errors {
		fmt.Fprintf(w, "FAILED: %s\n", e)
	}
}

// row prints one figure: the three values and the two ratios.
func row(w io.Writer, name string, n, g, b float64, f func(float64) string) {
	cell := func(v float64) string {
		if math.IsNaN(v) {
			return "—"
		}
		return f(v)
	}
	fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", name, cell(n), cell(g), cell(b), ratio(n, g), ratio(n, b))
}

// orNaN marks a figure that was not measured (0) as missing.
func orNaN(v float64) float64 {
	if v == 0 {
		return math.NaN()
	}
	return v
}
