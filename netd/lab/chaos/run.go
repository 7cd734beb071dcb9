package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"strings"
	"time"

	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/lab"
	"github.com/ducksnest/netd/policy/desired"
)

// Config says what soak to run.
type Config struct {
	Seed     uint64
	Duration time.Duration
	Classes  []Class
	// GapMin and GapMax bound the random quiet time before each fault.
	GapMin, GapMax time.Duration
	// Interval is the prober's rate per pod pair (10-20 ms).
	Interval time.Duration
	// SettleTimeout bounds the wait for the invariants after a fault.
	SettleTimeout time.Duration
	// Kube runs every netd with --kubeconfig against a real kube-apiserver
	// (its pod blocks from Calico BlockAffinities) and adds the
	// apiserver-restart and affinity-churn faults.
	Kube bool
	// Dir holds the run's files (the external peer's config and log).
	Dir string
	// Compile compiles a version of the lab's policy file (the reload
	// faults write a valid change and a broken one). The caller wires in
	// the compiler: like every part but the CLI and the daemon's loader,
	// the lab reads policy/desired.
	Compile func(name string, src []byte) (*desired.State, error)
	Logger  *slog.Logger
}

// maxFaults bounds the schedule (far more than any run executes).
const maxFaults = 100000

// run is one soak in progress.
type run struct {
	cfg     Config
	lab     *lab.Lab
	log     *slog.Logger
	dir     string
	faults  []Fault
	foreign map[string]string
	digest  string // the policy every netd must run ("" until known)
	policy  *policyFiles
	peer    *extPeer
	usage   map[string][]Usage
	results []Result
	netem   bool         // the kernel has netem (else lossy-link is an nftables drop, no delay)
	tailnet *lab.Tailnet // the lab's tailnet (nil: emulated overlay)
	prober  *Prober
	kube    *kubeLab
}

// Result is one executed fault.
type Result struct {
	Fault     Fault         `json:"fault"`
	Start     time.Time     `json:"start"`
	Restored  time.Time     `json:"restored"`
	Settled   time.Time     `json:"settled"`
	Recovery  time.Duration `json:"recovery"` // restored -> invariants hold again
	Violation string        `json:"violation,omitempty"`
}

// Run runs the soak on l (up and converged) and returns its report. An
// error is returned only when the soak could not run; a violated
// invariant or budget is in the report (Report.OK).
func Run(ctx context.Context, l *lab.Lab, cfg Config) (*Report, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = 20 * time.Millisecond
	}
	if cfg.SettleTimeout <= 0 {
		cfg.SettleTimeout = 2 * time.Minute
	}
	if len(cfg.Classes) == 0 {
		cfg.Classes = AllClasses
	}
	if cfg.Dir == "" {
		cfg.Dir = l.StateDir
	}
	r := &run{cfg: cfg, lab: l, log: cfg.Logger, dir: cfg.Dir, usage: map[string][]Usage{}}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Compile == nil {
		return nil, errors.New("chaos: Config.Compile is nil")
	}
	pf, err := loadPolicyFiles(l.PolicyPath, cfg.Compile)
	if err != nil {
		return nil, err
	}
	r.policy, r.digest = pf, pf.goodDigest
	defer pf.restore()
	var nodes, lanNodes []string
	for _, n := range l.Nodes {
		nodes = append(nodes, n.Name)
		if n.LAN != "" {
			lanNodes = append(lanNodes, n.Name)
		}
	}
	classes := cfg.Classes
	if pf.validChange == nil {
		classes = without(classes, ReloadValid)
		r.log.Warn("the policy has no maxPrefixes to change: no reload-valid faults")
	}
	if pf.peer == nil || len(l.LANs) == 0 {
		classes = without(classes, PeerFlap)
		r.log.Warn("the policy has no external peer on the lab's LAN: no peer-flap faults")
	}
	if r.tailnet, err = lab.LoadTailnet(l); err != nil {
		r.tailnet = nil
		classes = without(classes, TailscaledRest)
	}
	if r.netem = hasNetem(ctx, l.Nodes[0].NS); !r.netem && containsClass(classes, Netem) {
		r.log.Warn("no netem in this kernel: lossy-link drops packets with nftables and adds no delay")
	}
	if !cfg.Kube {
		classes = without(without(classes, APIRestart), AffinityChurn)
	}
	if len(classes) == 0 {
		return nil, errors.New("no fault class left to run")
	}
	r.faults = Schedule(cfg.Seed, maxFaults, classes, nodes, lanNodes, Timing{GapMin: cfg.GapMin, GapMax: cfg.GapMax, HoldTime: pf.holdTime})

	// Set up: every netd in the stop mode its first SIGTERM fault needs,
	// the external peer, the foreign routes; then wait for the invariants.
	if cfg.Kube {
		saved := maps.Clone(l.NetdArgs)
		defer r.stopKube()
		if err := r.startKube(ctx); err != nil {
			return nil, err
		}
		// Back to the lab's own arguments at the end (the API server is
		// gone then).
		defer func() {
			l.NetdArgs = saved
			for _, n := range nodes {
				if err := r.lab.StopNetd(context.WithoutCancel(ctx), n, 10*time.Second); err == nil {
					_ = r.lab.StartNetd(context.WithoutCancel(ctx), n)
				}
			}
		}()
	}
	for _, n := range nodes {
		if !cfg.Kube && runningMode(l, n) == nextMode(r.faults, -1, n) {
			continue
		}
		if err := r.restartNetd(ctx, n, -1, false); err != nil {
			return nil, err
		}
	}
	if pf.peer != nil && containsClass(classes, PeerFlap) {
		if err := r.startPeer(ctx, pf.peer.Name, pf.peer.Address, int(pf.peer.ASN), pf.nodeASN); err != nil {
			return nil, err
		}
		defer r.stopPeer(context.WithoutCancel(ctx))
	}
	if r.foreign, err = plantForeign(ctx, l); err != nil {
		return nil, err
	}
	defer removeForeign(context.WithoutCancel(ctx), l)
	var last error
	if _, err := testutil.Wait(cfg.SettleTimeout, "the lab to settle before the soak", func() (bool, error) {
		last = r.checkAll(ctx)
		return last == nil, ctx.Err()
	}); err != nil {
		return nil, fmt.Errorf("%w: %w", err, last)
	}
	r.sample(ctx)

	prober, err := StartProber(ctx, l.AllPods(), cfg.Interval, time.Second)
	if err != nil {
		return nil, err
	}
	r.prober = prober
	start := time.Now()
	r.log.Info("chaos soak started", "seed", cfg.Seed, "duration", cfg.Duration, "classes", classes, "pairs", len(prober.Pairs), "interval", cfg.Interval)
	var violation *Result
	for i, f := range r.faults {
		if time.Since(start)+f.Gap > cfg.Duration || ctx.Err() != nil {
			break
		}
		if err := sleep(ctx, f.Gap); err != nil {
			break
		}
		res := r.runFault(ctx, i, f)
		r.results = append(r.results, res)
		if res.Violation != "" {
			violation = &r.results[len(r.results)-1]
			break
		}
	}
	elapsed := time.Since(start)
	prober.Stop()
	rep := r.report(prober, elapsed)
	if violation == nil && ctx.Err() != nil {
		return rep, fmt.Errorf("soak interrupted after %v: %w", elapsed.Round(time.Second), ctx.Err())
	}
	return rep, nil
}

// runFault injects f, lifts it, and waits for the invariants.
func (r *run) runFault(ctx context.Context, i int, f Fault) Result {
	if f.Class == Netem && !r.netem {
		f.Delay = 0 // nftables drops; it cannot delay
	}
	res := Result{Fault: f, Start: time.Now()}
	r.log.Info("fault", "fault", f.String())
	if err := r.inject(ctx, i, f); err != nil {
		res.Restored, res.Settled = time.Now(), time.Now()
		res.Violation = "injecting the fault: " + err.Error()
		return res
	}
	res.Restored = time.Now()
	var last error
	_, err := testutil.Wait(r.cfg.SettleTimeout, "invariants after "+f.String(), func() (bool, error) {
		last = r.checkAll(ctx)
		if last == nil {
			last = r.pathsBack(res.Restored)
		}
		return last == nil, ctx.Err()
	})
	res.Settled = time.Now()
	res.Recovery = res.Settled.Sub(res.Restored)
	if err != nil {
		res.Violation = fmt.Sprintf("not settled within %v: %v", r.cfg.SettleTimeout, last)
		return res
	}
	r.sample(ctx)
	r.log.Info("settled", "fault", f.String(), "recovery", res.Recovery.Round(time.Millisecond))
	return res
}

// sample records every node's netd resources (settled state).
func (r *run) sample(ctx context.Context) {
	for _, n := range r.lab.Nodes {
		u, err := sampleUsage(ctx, r.lab, n)
		if err != nil {
			r.log.Warn("sampling netd", "node", n.Name, "err", err)
			continue
		}
		r.usage[n.Name] = append(r.usage[n.Name], u)
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func without(cs []Class, c Class) []Class {
	var out []Class
	for _, x := range cs {
		if x != c {
			out = append(out, x)
		}
	}
	return out
}

func containsClass(cs []Class, c Class) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}

// runningMode is the --stop-mode on the command line of node's netd
// (withdraw, netd's default, if none or unknown).
func runningMode(l *lab.Lab, node string) string {
	n, err := l.Node(node)
	if err != nil || n.Netd == nil {
		return ""
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", n.Netd.PID))
	if err != nil {
		return ""
	}
	mode := "withdraw"
	args := strings.Split(string(b), "\x00")
	for i, a := range args {
		if a == "--stop-mode" && i+1 < len(args) {
			mode = args[i+1]
		} else if v, ok := strings.CutPrefix(a, "--stop-mode="); ok {
			mode = v
		}
	}
	return mode
}

// pathsBack reports the pod pairs none of whose requests sent since t has
// been answered yet: the data path is not back even if the control plane
// is.
func (r *run) pathsBack(t time.Time) error {
	if r.prober == nil {
		return nil
	}
	if un := r.prober.Unanswered(t); len(un) > 0 {
		return fmt.Errorf("%d pod pairs have had no echo reply since the fault was lifted (first %s)", len(un), un[0])
	}
	return nil
}
