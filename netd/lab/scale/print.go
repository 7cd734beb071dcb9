package scale

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Print writes the results as tables: one line per lab, one per restart,
// and the growth with N fitted per topology.
func Print(w io.Writer, rs []*Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "N\ttopology\tsites\tnamespaces\tbuild\tconverge\thost MiB/node\tRSS MiB med\tmax\treflector\tidle CPU % med\tmax\treflector\tsessions\treflector\troutes\tnew block\twrites\tBFD downs\tload\t")
	for _, r := range rs {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%s\t%s\t%.1f\t%.1f\t%.1f\t%s\t%.2f\t%.2f\t%s\t%.0f\t%s\t%.0f\t%s\t%d\t%d\t%s\t\n",
			r.Nodes, r.Topology, r.Sites, r.Namespaces, secs(r.Build), secs(r.Converge), r.HostMiB/float64(max(r.Nodes, 1)),
			r.RSSMedian, r.RSSMax, orDash(r.RSSReflector, "%.1f"), r.CPUMedian, r.CPUMax, orDash(r.CPUReflector, "%.2f"),
			r.Sessions, orDash(r.SessionsReflector, "%.0f"), r.Routes, secs(r.NewBlock), r.NewBlockWrites, r.BFDDowns, r.Load)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "N\ttopology\trestart\tnode\troute writes on others\tnodes written\tlost between others\tlost to the node\trecover\t")
	for _, r := range rs {
		for _, b := range r.Faults {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%d/%d\t%d/%d\t%s\t\n", r.Nodes, r.Topology, b.Fault, b.Node,
				b.Writes, b.NodesWritten, b.Lost, b.Sent, b.LostTo, b.SentTo, secs(b.Recover))
		}
	}
	tw.Flush()
	for _, r := range rs {
		if len(r.NetdArgs) > 0 {
			fmt.Fprintf(w, "\nN=%d %s: every netd with %q\n", r.Nodes, r.Topology, r.NetdArgs)
		}
		if r.Err != "" {
			fmt.Fprintf(w, "\nN=%d %s stopped: %s\n", r.Nodes, r.Topology, r.Err)
		}
		if r.WatchErrors > 0 {
			fmt.Fprintf(w, "\nN=%d %s: %d route watch errors (write counts are a lower bound)\n", r.Nodes, r.Topology, r.WatchErrors)
		}
	}
	fits := Fits(rs)
	if len(fits) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "topology\tfigure\tfit over N\tpoints")
		for _, f := range fits {
			fmt.Fprintf(tw, "%s\t%s\t%.3g + %.3g*N\t%d\n", f.Topology, f.Figure, f.Fit.Intercept, f.Fit.Slope, f.Fit.Points)
		}
		tw.Flush()
	}
}

// Growth is a figure fitted against N for one topology.
type Growth struct {
	Topology string `json:"topology"`
	Figure   string `json:"figure"`
	Fit      Fit    `json:"fit"`
}

// Fits fits per-node RSS, idle CPU, convergence and new-block time against
// N, per topology, over the labs that completed.
func Fits(rs []*Result) []Growth {
	var out []Growth
	var order []string
	by := map[string][]*Result{}
	for _, r := range rs {
		if r.Err != "" || r.Converge == 0 {
			continue
		}
		if by[r.Topology] == nil {
			order = append(order, r.Topology)
		}
		by[r.Topology] = append(by[r.Topology], r)
	}
	figures := []struct {
		name string
		y    func(*Result) float64
	}{
		{"RSS MiB per node (median)", func(r *Result) float64 { return r.RSSMedian }},
		{"idle CPU % per node (median)", func(r *Result) float64 { return r.CPUMedian }},
		{"host MiB per node", func(r *Result) float64 { return r.HostMiB / float64(r.Nodes) }},
		{"converge s", func(r *Result) float64 { return r.Converge.Seconds() }},
		{"new block s", func(r *Result) float64 { return r.NewBlock.Seconds() }},
	}
	for _, t := range order {
		for _, f := range figures {
			var xs, ys []float64
			for _, r := range by[t] {
				xs, ys = append(xs, float64(r.Nodes)), append(ys, f.y(r))
			}
			if fit := fitLine(xs, ys); fit.Points > 0 {
				out = append(out, Growth{Topology: t, Figure: f.name, Fit: fit})
			}
		}
	}
	return out
}

func secs(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

func orDash(v float64, format string) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf(format, v)
}
