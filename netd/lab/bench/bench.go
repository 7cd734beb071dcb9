package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/ducksnest/netd/netd/lab"
	"github.com/ducksnest/netd/policy/desired"
)

// Config says what to measure.
type Config struct {
	// Name is the lab's name (namespace prefix), StateDir its state dir.
	Name, StateDir string
	// Policy is the lab's policy (the example's); Run adds the external
	// peer that announces the prefixes.
	Policy []byte
	// Netd is the netd binary the nodes run.
	Netd string
	// Idle is how long idle CPU is measured (after Settle).
	Idle, Settle time.Duration
	// Runs is the number of restarts of each kind (kill -9, SIGTERM).
	Runs int
	// Prefixes is how many prefixes the external peer announces (at most
	// 16384: /24s of 10.128.0.0/10).
	Prefixes int
	// Install lists the route counts of the kernel install figure;
	// InstallRounds how many rounds of each (median).
	Install       []int
	InstallRounds int
	// BFD are the BFD timers of the lab's netd, given to BIRD.
	BFD BFDTimers
	// Compile compiles the lab's policy (with the external peer added).
	// The caller wires in the compiler: the lab reads policy/desired.
	Compile func(name string, src []byte) (*desired.State, error)
	Log     *slog.Logger
}

// The external peer that announces the prefixes, on the overlay.
const (
	edgeName = "edge"
	edgeAS   = 64515
	// edgeBase is the range it announces /24s from.
	edgeBase = "10.128.0.0/10"
	// benchNode is the node that learns them and is restarted.
	benchNode = "firebat"
)

var edgeAddr = netip.MustParsePrefix("100.64.0.50/10")

// edgePeer is the policy's entry for the edge peer.
func edgePeer(max int) string {
	return fmt.Sprintf(`      - name: %s
        address: %s
        asn: %d
        nodes: [%s]
        export: [pods]
        import: ["%s le 24"]
        maxPrefixes: %d
`, edgeName, edgeAddr.Addr(), edgeAS, benchNode, edgeBase, max)
}

// withEdge adds the edge peer to the policy's external peers.
func withEdge(pol []byte, n int) ([]byte, error) {
	const anchor = "    externalPeers:\n"
	s := string(pol)
	if !strings.Contains(s, anchor) {
		return nil, errors.New("the lab policy has no spec.bgp.externalPeers list to add the edge peer to")
	}
	return []byte(strings.Replace(s, anchor, anchor+edgePeer(n+1000), 1)), nil
}

// Run builds a lab, measures, prints the table to w and removes the lab
// (also on error).
func Run(ctx context.Context, cfg Config, w io.Writer) (err error) {
	if cfg.Prefixes > 16384 {
		return fmt.Errorf("at most 16384 prefixes (/24s of %s), not %d", edgeBase, cfg.Prefixes)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pol, err := withEdge(cfg.Policy, cfg.Prefixes)
	if err != nil {
		return err
	}
	if cfg.Compile == nil {
		return errors.New("bench: Config.Compile is nil")
	}
	st, err := cfg.Compile("policy.yaml", pol)
	if err != nil {
		return fmt.Errorf("lab policy: %w", err)
	}
	r := &run{cfg: cfg, log: log, st: st, w: w, res: newResult(loadavg(), runtime.NumCPU())}
	r.dir = filepath.Join(cfg.StateDir, "bench")
	holdAll := make([]string, 0, len(st.Nodes))
	for _, n := range st.Nodes {
		holdAll = append(holdAll, n.Name)
	}
	lcfg := lab.Config{Name: cfg.Name, State: st, Policy: pol, Netd: cfg.Netd, StateDir: cfg.StateDir, Hold: holdAll, Logger: log}
	r.lab, err = lab.Up(ctx, lcfg)
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if derr := lab.Down(dctx, cfg.Name, cfg.StateDir, log); derr != nil {
			err = errors.Join(err, fmt.Errorf("lab down: %w", derr))
		}
	}()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		return fmt.Errorf("making %s: %w", r.dir, err)
	}
	if r.edge, err = r.lab.AddRouter(ctx, edgeName, lab.OnWAN, edgeAddr); err != nil {
		return err
	}
	fmt.Fprintf(w, "netd lab bench, %s: load average %s, %d CPUs; idle %s after %s, %d restarts of each kind, %d prefixes\n",
		r.res.Started.UTC().Format("2006-01-02 15:04 MST"), r.res.Load, r.res.CPUs, cfg.Idle, cfg.Settle, cfg.Runs, cfg.Prefixes)
	for _, ph := range []struct {
		name string
		fn   func(context.Context) error
	}{
		{"BIRD", r.birdPhase},
		{"gobgpd", r.gobgpdPhase},
		{"netd", r.netdPhase},
		{"kernel install", r.installPhase},
	} {
		log.Info("bench phase", "phase", ph.name, "load", loadavg())
		fmt.Fprintf(w, "  %s ... (load %s)\n", ph.name, loadavg())
		if err := ph.fn(ctx); err != nil {
			r.res.Errors = append(r.res.Errors, fmt.Sprintf("%s: %v", ph.name, err))
			log.Error("bench phase failed", "phase", ph.name, "err", err)
			if ctx.Err() != nil {
				break
			}
		}
	}
	r.res.LoadEnd = loadavg()
	r.res.Print(w)
	if len(r.res.Errors) > 0 {
		return fmt.Errorf("%d of the figures failed: %s", len(r.res.Errors), strings.Join(r.res.Errors, "; "))
	}
	return nil
}

// run is one bench run.
type run struct {
	cfg  Config
	log  *slog.Logger
	st   *desired.State
	w    io.Writer
	lab  *lab.Lab
	edge *lab.Router
	dir  string
	res  *Result
	seq  int
}

// key returns a new process key with prefix p.
func (r *run) key(p string) string {
	r.seq++
	return fmt.Sprintf("%s-%d", p, r.seq)
}

// node returns the compiled node called name.
func (r *run) node(name string) *desired.Node {
	for i := range r.st.Nodes {
		if r.st.Nodes[i].Name == name {
			return &r.st.Nodes[i]
		}
	}
	return nil
}
