// Package scale measures a lab of many nodes (`netd lab scale`): the time
// from nothing to converged, each netd's memory and idle CPU, sessions and
// routes per node, how long a new pod block takes to reach every node,
// and the blast radius of restarting one node or a route reflector (route
// writes and lost packets on the other nodes). The numbers are
// observations on a possibly loaded machine, not pass/fail budgets.
package scale

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/ducksnest/netd/netd/lab"
)

// Config says what to measure on one lab.
type Config struct {
	// Lab is the lab to bring up (its generated policy, name, state dir,
	// netd); Measure brings it down again.
	Lab lab.Config
	// Topology and Sites describe the policy, for the report.
	Topology string
	Sites    int
	// Reflector is a route reflector to restart ("" in a full mesh);
	// Ordinary is a node that is not one.
	Reflector, Ordinary string
	// NewPolicy is the lab's policy with NewBlock added to BlockOwner.
	NewPolicy  []byte
	NewBlock   netip.Prefix
	BlockOwner string
	// Idle is how long idle CPU is measured (default 30s).
	Idle time.Duration
	// Pairs is how many pod pairs ping during a restart (default 20), at
	// Interval (default 20ms).
	Pairs    int
	Interval time.Duration
	// Quiet is how long no route may be written for a fault to count as
	// settled (default 3s).
	Quiet time.Duration
	// NetdArgs are added to every node's netd command line (after the
	// module's: a later flag wins), e.g. slower BFD timers.
	NetdArgs []string
}

func (c *Config) defaults() {
	if c.Idle == 0 {
		c.Idle = 30 * time.Second
	}
	if c.Pairs == 0 {
		c.Pairs = 20
	}
	if c.Interval == 0 {
		c.Interval = 20 * time.Millisecond
	}
	if c.Quiet == 0 {
		c.Quiet = 3 * time.Second
	}
}

// Result is what Measure saw on one lab.
type Result struct {
	Nodes    int    `json:"nodes"`
	Topology string `json:"topology"`
	// NetdArgs are Config.NetdArgs.
	NetdArgs   []string `json:"netdArgs,omitempty"`
	Sites      int      `json:"sites"`
	Namespaces int      `json:"namespaces"`
	// Build is the topology (namespaces, veths, bridges); Converge is from
	// starting the first netd to every node holding every block.
	Build    time.Duration `json:"build"`
	Converge time.Duration `json:"converge"`
	// HostMiB is the host memory the lab took (MemAvailable before the
	// build and after convergence): netd, namespaces and veths.
	HostMiB float64 `json:"hostMiB"`
	// RSS is each netd's VmRSS in MiB; the reflectors' separately.
	RSSMedian    float64 `json:"rssMedianMiB"`
	RSSMax       float64 `json:"rssMaxMiB"`
	RSSReflector float64 `json:"rssReflectorMiB,omitempty"`
	// CPU is idle CPU in % of one core, per netd, over Idle.
	CPUMedian    float64 `json:"cpuMedianPct"`
	CPUMax       float64 `json:"cpuMaxPct"`
	CPUReflector float64 `json:"cpuReflectorPct,omitempty"`
	CPUTotal     float64 `json:"cpuTotalPct"`
	// Sessions are established BGP sessions per node (median of the
	// nodes that are not reflectors, and of the reflectors); Routes are
	// netd's routes per node (median).
	Sessions          float64 `json:"sessions"`
	SessionsReflector float64 `json:"sessionsReflector,omitempty"`
	Routes            float64 `json:"routes"`
	// NewBlock is from writing the policy with a new block to every other
	// node routing it; NewBlockWrites the route writes that took.
	NewBlock       time.Duration `json:"newBlock"`
	NewBlockWrites int           `json:"newBlockWrites"`
	Faults         []Blast       `json:"faults"`
	// BFDDowns counts the BFD sessions that went down over the whole run
	// (every netd's log): on a starved machine, false detections.
	BFDDowns int `json:"bfdDowns"`
	// WatchErrors counts failed route watches (the write counts are then
	// a lower bound).
	WatchErrors int    `json:"watchErrors,omitempty"`
	Load        string `json:"load"`
	Err         string `json:"err,omitempty"`
}

// Measure brings the lab up (no netd first: the build is timed alone),
// measures, and brings it down, also on error; a partial Result comes
// with the error.
func Measure(ctx context.Context, c Config) (res *Result, err error) {
	c.defaults()
	res = &Result{Nodes: len(c.Lab.State.Nodes), Topology: c.Topology, Sites: c.Sites, NetdArgs: c.NetdArgs}
	before, err := hostMemAvailable()
	if err != nil {
		return res, err
	}
	for _, n := range c.Lab.State.Nodes {
		c.Lab.Hold = append(c.Lab.Hold, n.Name)
	}
	start := time.Now()
	l, err := lab.Up(ctx, c.Lab)
	defer func() {
		var derr error
		if l != nil {
			derr = l.Down(context.WithoutCancel(ctx))
		} else {
			derr = lab.Down(context.WithoutCancel(ctx), c.Lab.Name, c.Lab.StateDir, c.Lab.Logger)
		}
		err = errors.Join(err, derr)
	}()
	if err != nil {
		return res, err
	}
	// Runs before the lab goes down (with its logs).
	defer func() { res.BFDDowns = bfdDowns(l) }()
	res.Build, res.Namespaces = time.Since(start), len(l.Namespaces)
	if len(c.NetdArgs) > 0 {
		l.NetdArgs = map[string][]string{}
		for _, n := range l.Nodes {
			l.NetdArgs[n.Name] = c.NetdArgs
		}
	}
	start = time.Now()
	var all []string
	for _, n := range l.Nodes {
		if err := l.StartNetd(ctx, n.Name); err != nil {
			return res, err
		}
		all = append(all, n.Name)
	}
	if err := waitConverged(ctx, l, all, c.Lab.ConvergeTimeout); err != nil {
		return res, err
	}
	res.Converge = time.Since(start)
	w, err := countWrites(l)
	if err != nil {
		return res, err
	}
	defer w.stop()
	w.waitQuiet(ctx, c.Quiet, time.Minute)
	if after, err := hostMemAvailable(); err == nil {
		res.HostMiB = float64(before-after) / (1 << 20)
	}
	if err := idle(ctx, l, c, res); err != nil {
		return res, err
	}
	if err := newBlock(ctx, l, c, w, res); err != nil {
		return res, err
	}
	faults := []struct{ kind, node string }{{KindKill, c.Ordinary}, {KindTerm, c.Ordinary}}
	if c.Reflector != "" {
		faults = append(faults, struct{ kind, node string }{KindKill, c.Reflector}, struct{ kind, node string }{KindTerm, c.Reflector})
	}
	for _, f := range faults {
		b, err := blast(ctx, l, c, w, f.kind, f.node)
		res.Faults = append(res.Faults, b)
		if err != nil {
			return res, err
		}
	}
	res.WatchErrors = w.errors()
	res.Load = LoadAvg()
	return res, nil
}

func waitConverged(ctx context.Context, l *lab.Lab, nodes []string, d time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return l.WaitConverged(cctx, nodes)
}

func isReflector(c Config, node string) bool {
	for _, n := range c.Lab.State.Nodes {
		if n.Name == node {
			return n.BGP.RouteReflector
		}
	}
	return false
}

// idle measures memory, CPU, sessions and routes of the settled lab.
func idle(ctx context.Context, l *lab.Lab, c Config, res *Result) error {
	t0 := map[string]uint64{}
	for _, n := range l.Nodes {
		t, err := pidTicks(n.Netd.PID)
		if err != nil {
			return err
		}
		t0[n.Name] = t
	}
	start := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(c.Idle):
	}
	secs := time.Since(start).Seconds()
	var rss, cpu, sessions, routes, rrRSS, rrCPU, rrSessions []float64
	for _, n := range l.Nodes {
		t, err := pidTicks(n.Netd.PID)
		if err != nil {
			return err
		}
		pct := float64(t-t0[n.Name]) / clockTicks / secs * 100
		b, err := l.RSS(n.Name)
		if err != nil {
			return err
		}
		mib := float64(b) / (1 << 20)
		ps, err := peerStates(ctx, l, n.Name)
		if err != nil {
			return err
		}
		up := 0
		for _, s := range ps {
			if s == "established" {
				up++
			}
		}
		rs, err := l.Routes(n.Name)
		if err != nil {
			return err
		}
		res.CPUTotal += pct
		rss, cpu, routes = append(rss, mib), append(cpu, pct), append(routes, float64(len(rs)))
		if isReflector(c, n.Name) {
			rrRSS, rrCPU, rrSessions = append(rrRSS, mib), append(rrCPU, pct), append(rrSessions, float64(up))
		} else {
			sessions = append(sessions, float64(up))
		}
	}
	res.RSSMedian, res.RSSMax, res.RSSReflector = median(rss), slices.Max(rss), median(rrRSS)
	res.CPUMedian, res.CPUMax, res.CPUReflector = median(cpu), slices.Max(cpu), median(rrCPU)
	res.Sessions, res.SessionsReflector, res.Routes = median(sessions), median(rrSessions), median(routes)
	return nil
}

// newBlock writes the policy with a new block (as a deployment would:
// a new file renamed over the old, which every netd watches) and waits
// until every other node routes it.
func newBlock(ctx context.Context, l *lab.Lab, c Config, w *writeCounter, res *Result) error {
	before := w.snapshot()
	tmp := l.PolicyPath + ".new"
	if err := os.WriteFile(tmp, c.NewPolicy, 0o600); err != nil {
		return fmt.Errorf("writing the new policy: %w", err)
	}
	start := time.Now()
	if err := os.Rename(tmp, filepath.Clean(l.PolicyPath)); err != nil {
		return fmt.Errorf("replacing the policy: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		missing, err := missingBlock(l, c.NewBlock, c.BlockOwner)
		if err != nil {
			return err
		}
		if missing == 0 {
			break
		}
		select {
		case <-cctx.Done():
			return fmt.Errorf("new block %s: %d nodes still without it: %w", c.NewBlock, missing, cctx.Err())
		case <-tick.C:
		}
	}
	res.NewBlock = time.Since(start)
	w.waitQuiet(ctx, c.Quiet, time.Minute)
	res.NewBlockWrites, _ = delta(before, w.snapshot(), "")
	return nil
}

func missingBlock(l *lab.Lab, block netip.Prefix, owner string) (int, error) {
	missing := 0
	for _, n := range l.Nodes {
		if n.Name == owner {
			continue
		}
		rs, err := l.Routes(n.Name)
		if err != nil {
			return 0, err
		}
		if !slices.ContainsFunc(rs, func(r netlink.Route) bool { return r.Dst != nil && r.Dst.String() == block.String() }) {
			missing++
		}
	}
	return missing, nil
}

// bfdDowns counts "bfd session state changed ... to down" lines in the
// nodes' netd logs (JSON lines, as the module runs netd).
func bfdDowns(l *lab.Lab) int {
	total := 0
	for _, n := range l.Nodes {
		b, err := os.ReadFile(n.Log)
		if err != nil {
			continue
		}
		for line := range bytes.Lines(b) {
			if bytes.Contains(line, []byte(`"msg":"bfd session state changed"`)) && bytes.Contains(line, []byte(`"to":"down"`)) {
				total++
			}
		}
	}
	return total
}

// peerStates asks a node's netd for its sessions, trying again a few times:
// a reflector with a hundred peers on a starved host can take longer than
// the lab's 2-second status timeout.
func peerStates(ctx context.Context, l *lab.Lab, node string) (map[string]string, error) {
	var err error
	for range 5 {
		var ps map[string]string
		if ps, err = l.PeerStates(ctx, node); err == nil {
			return ps, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("sessions of %s (5 tries): %w", node, err)
}
