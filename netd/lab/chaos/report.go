package chaos

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ducksnest/netd/netd/lab"
)

// DetectionBudget is the most a silent failure may cost a pod pair whose
// path it does not cut: the BFD detection time.
const DetectionBudget = time.Second

// Pair kinds for one fault: whether a pair's loss counts against the
// fault's budget.
const (
	kindBudgeted = ""
	kindCut      = "cut"      // the fault removes the pair's only path (overlay cut or tailscaled restart of one end)
	kindDrained  = "drained"  // the fault takes one end's node out on purpose (SIGTERM withdraw)
	kindDegraded = "degraded" // the pair crosses the lossy link: random loss is the link's
	// kindReference is a pair of pods on one node: the node delivers it
	// locally, netd routes none of it, no fault here touches it. What it
	// loses, the machine lost (a starved prober or kernel): the reference
	// that tells a loaded machine from a netd fault.
	kindReference = "reference"
)

// budgetOf says what a class may lose on the pairs it budgets.
func budgetOf(c Class) string {
	switch c {
	case StopShort, StopLong, LANFlap, OverlayFlap, TailscaledRest:
		return fmt.Sprintf("<= %v per pair", DetectionBudget)
	case Netem:
		return fmt.Sprintf("0; lossy pairs: no gap > %v", DetectionBudget)
	}
	return "0 lost"
}

// pairKind classifies pair for fault f.
func pairKind(l *lab.Lab, f Fault, p Pair) string {
	if p.Src.Node == p.Dst.Node {
		return kindReference
	}
	crossesOverlay := func() bool {
		a, b := p.Src.Node, p.Dst.Node
		if (a == f.Node) == (b == f.Node) {
			return false
		}
		other := a
		if a == f.Node {
			other = b
		}
		x, _ := l.Node(f.Node)
		o, _ := l.Node(other)
		return x == nil || o == nil || x.LAN == "" || x.LAN != o.LAN
	}
	switch f.Class {
	case OverlayFlap, TailscaledRest:
		if crossesOverlay() {
			return kindCut
		}
	case Netem:
		if crossesOverlay() {
			return kindDegraded
		}
	case SigtermWithdraw:
		if p.Src.Node == f.Node || p.Dst.Node == f.Node {
			return kindDrained
		}
	}
	return kindBudgeted
}

// Row is one fault class in the report.
type Row struct {
	Class  Class `json:"class"`
	Faults int   `json:"faults"`
	// Lost is what the budgeted pairs lost; WorstPair the most one pair
	// lost in one fault (as time: requests x interval).
	Lost      int           `json:"lost"`
	WorstPair time.Duration `json:"worstPair"`
	// Excluded is what the cut, drained or degraded pairs lost (not
	// budgeted; reported).
	Excluded int `json:"excluded"`
	// SameNode is what the same-node (reference) pairs lost.
	SameNode    int           `json:"sameNode"`
	RecoveryP50 time.Duration `json:"recoveryP50"`
	RecoveryP99 time.Duration `json:"recoveryP99"`
	RecoveryMax time.Duration `json:"recoveryMax"`
	Budget      string        `json:"budget"`
	OK          bool          `json:"ok"`
}

// Report is a soak's outcome.
type Report struct {
	Seed       uint64        `json:"seed"`
	Duration   time.Duration `json:"duration"`
	Interval   time.Duration `json:"interval"`
	Pairs      int           `json:"pairs"`
	Sent       int           `json:"sent"`
	LostAtRest int           `json:"lostAtRest"`
	// SameNodeAtRest is the part of LostAtRest the same-node pairs lost.
	SameNodeAtRest int `json:"sameNodeAtRest"`
	// RestLosses are the first maxRestLosses of them: which pair, when.
	RestLosses []RestLoss `json:"restLosses,omitempty"`
	Rows       []Row      `json:"rows"`
	Results    []Result   `json:"results"`
	Leaks      []Leak     `json:"leaks,omitempty"`
	// GrowthChecked is false when the run was too short to compare
	// resource samples.
	GrowthChecked bool               `json:"growthChecked"`
	Usage         map[string][]Usage `json:"usage"`
	Violations    []string           `json:"violations,omitempty"`
}

// RestLoss is a request lost between faults.
type RestLoss struct {
	Pair string    `json:"pair"`
	At   time.Time `json:"at"` // when it was sent
}

// maxRestLosses bounds Report.RestLosses.
const maxRestLosses = 1000

// OK reports whether no invariant or budget was violated.
func (rep *Report) OK() bool { return len(rep.Violations) == 0 }

func (r *run) report(p *Prober, elapsed time.Duration) *Report {
	rep := &Report{Seed: r.cfg.Seed, Duration: elapsed, Interval: r.cfg.Interval, Pairs: len(p.Pairs), Sent: p.Sent(), Results: r.results, Usage: r.usage}
	violate := func(format string, a ...any) {
		rep.Violations = append(rep.Violations, fmt.Sprintf("seed %d: ", r.cfg.Seed)+fmt.Sprintf(format, a...))
	}
	// Losses per fault window [start, settled), per pair.
	perFault := make([]map[int][]time.Time, len(r.results))
	for i := range perFault {
		perFault[i] = map[int][]time.Time{}
	}
	for _, loss := range p.Losses() {
		i := slices.IndexFunc(r.results, func(res Result) bool { return !loss.At.Before(res.Start) && loss.At.Before(res.Settled) })
		if i < 0 {
			if len(rep.RestLosses) < maxRestLosses {
				rep.RestLosses = append(rep.RestLosses, RestLoss{Pair: p.Pairs[loss.Pair].String(), At: loss.At})
			}
			rep.LostAtRest++
			if pr := p.Pairs[loss.Pair]; pr.Src.Node == pr.Dst.Node {
				rep.SameNodeAtRest++
			}
			continue
		}
		perFault[i][loss.Pair] = append(perFault[i][loss.Pair], loss.At)
	}
	rows := map[Class]*Row{}
	recov := map[Class][]time.Duration{}
	for i, res := range r.results {
		f := res.Fault
		row := rows[f.Class]
		if row == nil {
			row = &Row{Class: f.Class, Budget: budgetOf(f.Class), OK: true}
			rows[f.Class] = row
		}
		row.Faults++
		if res.Violation != "" {
			row.OK = false
			violate("fault %s: invariant: %s", f, res.Violation)
		} else {
			recov[f.Class] = append(recov[f.Class], res.Recovery)
		}
		var over []string
		var worst time.Duration
		sameNode := 0
		for pi, ats := range perFault[i] {
			pair := p.Pairs[pi]
			lostTime := time.Duration(len(ats)) * p.Interval
			switch kind := pairKind(r.lab, f, pair); kind {
			case kindBudgeted:
				row.Lost += len(ats)
				row.WorstPair = max(row.WorstPair, lostTime)
				limit := time.Duration(0)
				if strings.HasPrefix(row.Budget, "<=") {
					limit = DetectionBudget
				}
				if lostTime > limit {
					over = append(over, pair.String())
					worst = max(worst, lostTime)
				}
			case kindDegraded:
				row.Excluded += len(ats)
				if gap := longestRun(ats, p.Interval); gap > DetectionBudget {
					over = append(over, pair.String()+" (lossy link)")
					worst = max(worst, gap)
				}
			case kindReference:
				sameNode += len(ats)
			default:
				row.Excluded += len(ats)
			}
		}
		row.SameNode += sameNode
		if len(over) > 0 {
			row.OK = false
			slices.Sort(over)
			list := strings.Join(over, ", ")
			if len(over) > 4 {
				list = strings.Join(over[:4], ", ") + fmt.Sprintf(" and %d more", len(over)-4)
			}
			note := ""
			if sameNode > 0 {
				note = fmt.Sprintf(" (inconclusive: same-node pairs, which netd does not route, lost %d requests in the same window: the machine starved the prober)", sameNode)
			}
			violate("fault %s: %d pod pairs over the budget (%s), the worst lost %v: %s%s", f, len(over), row.Budget, worst, list, note)
		}
	}
	for _, c := range AllClasses {
		row := rows[c]
		if row == nil {
			continue
		}
		ds := recov[c]
		slices.Sort(ds)
		row.RecoveryP50, row.RecoveryP99 = percentile(ds, 50), percentile(ds, 99)
		if len(ds) > 0 {
			row.RecoveryMax = ds[len(ds)-1]
		}
		rep.Rows = append(rep.Rows, *row)
	}
	if rep.LostAtRest > 0 {
		violate("%d requests lost at rest (between faults, after the invariants held; %d of them by same-node pairs)", rep.LostAtRest, rep.SameNodeAtRest)
	}
	rep.Leaks, rep.GrowthChecked = checkGrowth(r.usage)
	for _, k := range rep.Leaks {
		violate("%s", k)
	}
	return rep
}

// longestRun is the longest stretch of consecutive losses (requests one
// interval apart) as time.
func longestRun(ats []time.Time, interval time.Duration) time.Duration {
	slices.SortFunc(ats, func(a, b time.Time) int { return a.Compare(b) })
	best, run := 0, 0
	for i := range ats {
		if i > 0 && ats[i].Sub(ats[i-1]) <= interval*3/2 {
			run++
		} else {
			run = 1
		}
		best = max(best, run)
	}
	return time.Duration(best) * interval
}

// percentile is the nearest-rank percentile of sorted ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	k := int(math.Ceil(p/100*float64(len(ds)))) - 1
	return ds[max(k, 0)]
}

// Print writes the report as a table.
func (rep *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "chaos soak: seed %d, %v, %d faults, %d pod pairs every %v, %d echo requests\n\n",
		rep.Seed, rep.Duration.Round(time.Second), len(rep.Results), rep.Pairs, rep.Interval, rep.Sent)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLASS\tFAULTS\tLOST\tWORST PAIR\tEXCLUDED\tSAME-NODE\tRECOVERY P50\tP99\tMAX\tBUDGET\tVERDICT")
	for _, r := range rep.Rows {
		verdict := "ok"
		if !r.OK {
			verdict = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%v\t%d\t%d\t%v\t%v\t%v\t%s\t%s\n", r.Class, r.Faults, r.Lost, r.WorstPair, r.Excluded, r.SameNode,
			r.RecoveryP50.Round(10*time.Millisecond), r.RecoveryP99.Round(10*time.Millisecond), r.RecoveryMax.Round(10*time.Millisecond), r.Budget, verdict)
	}
	rest := "ok"
	if rep.LostAtRest > 0 {
		rest = "FAIL"
	}
	fmt.Fprintf(tw, "at rest\t-\t%d\t-\t-\t%d\t-\t-\t-\t0 lost\t%s\n", rep.LostAtRest, rep.SameNodeAtRest, rest)
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "LOST: requests lost by the pairs the class budgets. EXCLUDED: lost by pairs whose only path the fault cuts")
	fmt.Fprintln(w, "(overlay-flap, tailscaled-restart), drains (sigterm-withdraw) or makes lossy (lossy-link).")
	fmt.Fprintln(w, "SAME-NODE: lost by pairs of pods on one node (the reference: netd routes none of it; a loss there is the machine's).")
	fmt.Fprintln(w, "RECOVERY: fault lifted -> every invariant holds again.")
	nodes := slices.Sorted(maps.Keys(rep.Usage))
	for _, node := range nodes {
		if us := rep.Usage[node]; len(us) > 0 {
			a, b := us[0], us[len(us)-1]
			fmt.Fprintf(w, "netd on %s: goroutines %.0f -> %.0f, open fds %.0f -> %.0f, RSS %.1f -> %.1f MiB (%d samples)\n",
				node, a.Goroutines, b.Goroutines, a.FDs, b.FDs, a.RSS/(1<<20), b.RSS/(1<<20), len(us))
		}
	}
	if !rep.GrowthChecked {
		fmt.Fprintf(w, "resource growth not checked: fewer than %d settled samples per node\n", minGrowthSamples)
	}
	if rep.OK() {
		fmt.Fprintln(w, "\nno invariant or budget violated")
		return
	}
	fmt.Fprintf(w, "\n%d violations:\n", len(rep.Violations))
	for _, v := range rep.Violations {
		fmt.Fprintln(w, "  "+v)
	}
}
