package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"github.com/ducksnest/netd/internal/testutil"
)

// Idle is one daemon's idle figures over the lab's nodes.
type Idle struct {
	// Mem per node (median over the nodes of each field).
	Mem Mem
	// Heap is the Go heap in use (netd only; median over the nodes).
	Heap float64
	// CPU is the CPU time all nodes' processes used in Window.
	CPU    time.Duration
	Window time.Duration
}

// measureIdle reads the memory of pids and the CPU they use in window.
func measureIdle(ctx context.Context, pids []int, window time.Duration) (Idle, error) {
	var rss, anon, file []float64
	for _, pid := range pids {
		m, err := readMem(pid)
		if err != nil {
			return Idle{}, err
		}
		rss, anon, file = append(rss, float64(m.RSS)), append(anon, float64(m.Anon)), append(file, float64(m.File))
	}
	before, err := cpuOf(pids)
	if err != nil {
		return Idle{}, err
	}
	start := time.Now()
	if err := pause(ctx, window); err != nil {
		return Idle{}, err
	}
	after, err := cpuOf(pids)
	if err != nil {
		return Idle{}, err
	}
	return Idle{
		Mem:    Mem{RSS: int64(median(rss)), Anon: int64(median(anon)), File: int64(median(file))},
		CPU:    time.Duration(after-before) * time.Second / clockTicks,
		Window: time.Since(start),
	}, nil
}

func cpuOf(pids []int) (int64, error) {
	var sum int64
	for _, pid := range pids {
		t, err := readCPU(pid)
		if err != nil {
			return 0, err
		}
		sum += t
	}
	return sum, nil
}

// PerMinute is the idle CPU scaled to CPU-seconds per minute.
func (i Idle) PerMinute() float64 {
	if i.Window <= 0 {
		return 0
	}
	return i.CPU.Seconds() * float64(time.Minute) / float64(i.Window)
}

// Growth is a receiver's VmRSS while it learns and loses N prefixes.
type Growth struct {
	N                         int
	Base, Peak, Steady, After int64
	Learn, Withdraw           time.Duration
}

// growth starts the edge sender and measures pid's VmRSS: before, the
// peak while learning and settling, at steady state, and after the
// sender stopped and count fell back to zero.
func (r *run) growth(ctx context.Context, pid func() int, count func() (int, error)) (Growth, error) {
	g := Growth{N: r.cfg.Prefixes}
	base, err := readMem(pid())
	if err != nil {
		return g, err
	}
	g.Base, g.Peak = base.RSS, base.RSS
	sample := func() error {
		m, err := readMem(pid())
		if err == nil && m.RSS > g.Peak {
			g.Peak = m.RSS
		}
		return err
	}
	self := r.node(benchNode)
	sender, err := r.startBIRD(r.edge.NS, "sender", senderConf(edgeAddr.Addr(), edgeAS, self.OverlayAddr, self.BGP.ASN, r.cfg.Prefixes))
	if err != nil {
		return g, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = r.lab.StopProc(context.WithoutCancel(ctx), sender.key, 5*time.Second)
		}
	}()
	// A count that fails (a CLI timing out on a loaded machine) is
	// retried until the deadline; the last failure is reported with it.
	var lastErr error
	counted := func(done func(int) bool) func() (bool, error) {
		return func() (bool, error) {
			c, err := count()
			if err != nil {
				lastErr = err
				return false, ctx.Err()
			}
			return done(c), nil
		}
	}
	start := time.Now()
	learned := counted(func(c int) bool { return c >= r.cfg.Prefixes })
	_, err = testutil.Every(50*time.Millisecond).Wait(ctx, 3*time.Minute, "the prefixes learned", func() (bool, error) {
		if err := sample(); err != nil {
			return false, err
		}
		return learned()
	})
	if err != nil {
		return g, fmt.Errorf("learning %d prefixes: %w", r.cfg.Prefixes, errors.Join(err, lastErr))
	}
	g.Learn = time.Since(start)
	end := time.Now().Add(r.cfg.Settle)
	for time.Now().Before(end) {
		if err := sample(); err != nil {
			return g, err
		}
		if err := pause(ctx, 100*time.Millisecond); err != nil {
			return g, err
		}
	}
	steady, err := readMem(pid())
	if err != nil {
		return g, err
	}
	g.Steady = steady.RSS
	stopped = true
	start = time.Now()
	// A clean Cease (the routes withdrawn at once), then the process.
	if _, err := sender.birdc(ctx, "disable", "receiver"); err != nil {
		r.log.Warn("disabling the sender's session", "err", err)
	}
	if err := r.lab.StopProc(ctx, sender.key, 5*time.Second); err != nil {
		return g, err
	}
	_, err = testutil.Every(50*time.Millisecond).Wait(ctx, 2*time.Minute, "the prefixes withdrawn", counted(func(c int) bool { return c == 0 }))
	if err != nil {
		return g, fmt.Errorf("withdrawing %d prefixes: %w", r.cfg.Prefixes, errors.Join(err, lastErr))
	}
	g.Withdraw = time.Since(start)
	if err := pause(ctx, r.cfg.Settle); err != nil {
		return g, err
	}
	after, err := readMem(pid())
	if err != nil {
		return g, err
	}
	g.After = after.RSS
	return g, nil
}

// kernelCount counts the edge's prefixes in the bench node's kernel table
// (proto 0: any protocol).
func (r *run) kernelCount(proto int) func() (int, error) {
	ns := r.lab.Name + "-" + benchNode
	within := netip.MustParsePrefix(edgeBase)
	return func() (int, error) {
		ps, err := kernelRoutes(ns, r.st.Routing.Table, proto)
		return countWithin(ps, within), err
	}
}

// Restart kinds.
const (
	kill9   = "kill -9"
	sigterm = "SIGTERM"
)

// restarter stops and starts the bench node's daemon and says when it is
// back: its sessions Established and every route back on it and its
// peers.
type restarter struct {
	stop  func(ctx context.Context, sig syscall.Signal) error
	start func(ctx context.Context) error
	back  func(ctx context.Context) (bool, error)
}

// rejoin restarts the bench node's daemon Runs times with each signal and
// returns the time from starting it to back, per kind.
func (r *run) rejoin(ctx context.Context, rs restarter) (map[string][]time.Duration, error) {
	out := map[string][]time.Duration{}
	for _, kind := range []string{kill9, sigterm} {
		sig := syscall.SIGKILL
		if kind == sigterm {
			sig = syscall.SIGTERM
		}
		for range r.cfg.Runs {
			if _, err := testutil.Every(50*time.Millisecond).Wait(ctx, time.Minute, "convergence", func() (bool, error) { return rs.back(ctx) }); err != nil {
				return out, fmt.Errorf("not converged before a restart: %w", err)
			}
			if err := rs.stop(ctx, sig); err != nil {
				return out, err
			}
			start := time.Now()
			if err := rs.start(ctx); err != nil {
				return out, err
			}
			// Three minutes: BIRD may wait 60 s (its error wait time)
			// before it reconnects a session that BFD took down.
			if _, err := testutil.Every(10*time.Millisecond).Wait(ctx, 3*time.Minute, "sessions and routes back", func() (bool, error) { return rs.back(ctx) }); err != nil {
				return out, fmt.Errorf("back after %s: %w", kind, err)
			}
			out[kind] = append(out[kind], time.Since(start))
		}
	}
	return out, nil
}
