package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/lab"
)

// needMeasure skips a measurement unless NETD_MEASURE=1: measurements
// report numbers (for the README) and are not part of the test stage.
// NETD_MEASURE_BIN names another netd binary to measure (a build of an
// earlier commit, for a before/after), so a measurement is not parallel.
func needMeasure(t *testing.T) {
	t.Helper()
	if os.Getenv("NETD_MEASURE") != "1" {
		t.Skip("a measurement: set NETD_MEASURE=1 (and NETD_MEASURE_BIN for another binary)")
	}
	if b := os.Getenv("NETD_MEASURE_BIN"); b != "" {
		saved := netdBin
		netdBin = b
		t.Cleanup(func() { netdBin = saved })
	}
}

// rejoinReps is how many restarts of each kind TestRejoinMeasure times
// (NETD_MEASURE_REPS, default 10).
func rejoinReps() int {
	n, err := strconv.Atoi(os.Getenv("NETD_MEASURE_REPS"))
	if err != nil || n < 1 {
		return 10
	}
	return n
}

// TestRejoinMeasure times a node's netd coming back: after kill -9, after
// SIGTERM (graceful stop mode, as the NixOS module runs it) and joining
// for the first time (no routes left, peers waiting for it). Each run is
// timed from the new netd's start, and from the signal, to every session
// of the node Established on both ends and every node's blocks in every
// kernel. It prints median and p90; it asserts nothing about the times.
func TestRejoinMeasure(t *testing.T) {
	needMeasure(t)
	l := upLab(t)
	ctx := t.Context()
	const node = "ultra"
	converged := func() (bool, error) {
		ok, err := sessionsUp(t, l, node)
		if !ok || err != nil {
			return ok, err
		}
		return blocksEverywhere(l, names(l), names(l))
	}
	waitConverged := func(what string) {
		testutil.Poll(t, 120*time.Second, what, converged)
	}
	type timing struct{ fromStart, fromSignal []time.Duration }
	report := func(kind string, tm timing) {
		t.Logf("%s, %d runs: converged after the new netd started: median %v, p90 %v, min %v, max %v; after the signal: median %v, p90 %v (all %v)",
			kind, len(tm.fromStart), median(tm.fromStart), p90(tm.fromStart), slices.Min(tm.fromStart), slices.Max(tm.fromStart),
			median(tm.fromSignal), p90(tm.fromSignal), tm.fromStart)
	}
	// run stops the node's netd with stop, starts it with args, and
	// times the convergence.
	run := func(kind string, stop func() error, settled func() (bool, error), args ...string) timing {
		var tm timing
		for rep := range rejoinReps() {
			waitConverged(fmt.Sprintf("%s rep %d: converged before", kind, rep))
			signal := time.Now()
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if settled != nil {
				testutil.Poll(t, 60*time.Second, fmt.Sprintf("%s rep %d: gone", kind, rep), settled)
			}
			start := time.Now()
			if err := l.StartNetdArgs(ctx, node, args...); err != nil {
				t.Fatal(err)
			}
			testutil.Poll(t, 120*time.Second, fmt.Sprintf("%s rep %d: converged after", kind, rep), converged)
			tm.fromStart = append(tm.fromStart, time.Since(start))
			tm.fromSignal = append(tm.fromSignal, time.Since(signal))
		}
		return tm
	}
	kill := run("kill -9", func() error { return l.KillNetd(ctx, node) }, nil)
	report("kill -9 + start", kill)

	// Graceful stop mode from here on (one restart to switch).
	if err := l.StopNetd(ctx, node, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.StartNetdArgs(ctx, node, "--stop-mode", "graceful"); err != nil {
		t.Fatal(err)
	}
	term := run("SIGTERM", func() error { return l.StopNetd(ctx, node, 10*time.Second) }, nil, "--stop-mode", "graceful")
	report("SIGTERM (graceful) + start", term)

	// First join: the node's netd stops withdrawing and removing its
	// routes, its peers see it gone, then it starts with nothing left.
	if err := l.StopNetd(ctx, node, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.StartNetdArgs(ctx, node, "--flush-on-exit"); err != nil {
		t.Fatal(err)
	}
	// Gone: no routes left on the node, its blocks gone from its peers,
	// which wait for it in Active; then 5 s more, so that their first
	// attempts to reach it have failed, as for a node that was never up.
	gone := func() (bool, error) {
		if rs, err := l.Routes(node); err != nil || len(rs) > 0 {
			return false, err
		}
		if ok, err := blocksGone(l, node, others(l, node)); !ok || err != nil {
			return ok, err
		}
		for _, o := range others(l, node) {
			if ps, err := l.PeerStates(ctx, o); err != nil || ps[node] != "active" {
				return false, err
			}
		}
		time.Sleep(5 * time.Second) // the scenario: peers have waited a while
		return true, nil
	}
	join := run("first join", func() error { return l.StopNetd(ctx, node, 10*time.Second) }, gone, "--flush-on-exit")
	report("first join (nothing left, peers waiting)", join)
}

// stallFlows are the pod flows through node (both ways, LAN and overlay)
// that a stall of its netd must not interrupt.
func stallFlows(t *testing.T, l *lab.Lab, node string) []flow {
	t.Helper()
	n, _ := l.Node(node)
	var out []flow
	for _, o := range others(l, node) {
		on, _ := l.Node(o)
		out = append(out, flow{node + "->" + o, n.Pods[0], on.Pods[0]}, flow{o + "->" + node, on.Pods[1], n.Pods[1]})
	}
	return out
}

// counters sums, over every node and every peer, the failure detector's
// and the speaker's counters a false failure moves.
func counters(t *testing.T, l *lab.Lab) (bfdDowns, cutoffs float64) {
	t.Helper()
	for _, n := range names(l) {
		bfdDowns += metricSum(t, l, n, "netd_bfd_session_downs_total")
		cutoffs += metricSum(t, l, n, "netd_bgp_peer_cutoffs_total")
	}
	return bfdDowns, cutoffs
}

// metricSum is the sum of every sample of name (any labels) from a node's
// netd.
func metricSum(t *testing.T, l *lab.Lab, node, name string) float64 {
	t.Helper()
	n, _ := l.Node(node)
	body, err := httpGet(n.NS, lab.DefaultMetricsAddr, "/metrics")
	if err != nil {
		t.Fatalf("metrics of %s: %v", node, err)
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(?:\{[^}]*\})? (\S+)$`)
	sum := 0.0
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		sum += v
	}
	return sum
}

// routeWatch checks every 10 ms, until stop is closed, that every node
// has every other node's blocks in its kernel, and returns how many
// checks found one missing and of how many.
func routeWatch(l *lab.Lab, stop <-chan struct{}) (missing, checks int) {
	for {
		select {
		case <-stop:
			return missing, checks
		case <-time.After(10 * time.Millisecond):
		}
		ok, err := blocksEverywhere(l, names(l), names(l))
		checks++
		if !ok || err != nil {
			missing++
		}
	}
}

// TestStallMeasure stalls one node's netd while pods ping through it
// every 20 ms: SIGSTOP for 600 ms (10 times), then stress-ng --cpu 2 for
// 20 s beside the lab, then both at once. It prints the echo requests
// lost, the BFD downs and the route cut-offs on every node; a stall
// shorter than the detection time (800 ms) should cost none of them.
func TestStallMeasure(t *testing.T) {
	needMeasure(t)
	l := upLab(t)
	const node = "control-plane" // overlay only: every path to it is BFD's
	testutil.Poll(t, 60*time.Second, "bfd up", func() (bool, error) { return bfdUp(t, l, others(l, node), node), nil })
	flows := stallFlows(t, l, node)
	measure := func(what string, stall func()) {
		testutil.Poll(t, 60*time.Second, what+": converged", func() (bool, error) { return blocksEverywhere(l, names(l), names(l)) })
		d0, c0 := counters(t, l)
		var streams []*lab.PingStream
		for _, f := range flows {
			s, err := lab.StartPingStream(f.src.NS, f.src.Addr, f.dst.Addr, 20*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			streams = append(streams, s)
		}
		stop := make(chan struct{})
		type watched struct{ missing, checks int }
		res := make(chan watched)
		go func() {
			m, c := routeWatch(l, stop)
			res <- watched{m, c}
		}()
		stall()
		close(stop)
		w := <-res
		sent, lost := 0, 0
		for _, s := range streams {
			n, ls := s.Stop()
			sent, lost = sent+n, lost+len(ls)
		}
		d1, c1 := counters(t, l)
		logged := 0
		for _, n := range names(l) {
			logged += logCount(t, l, n, "bfd session state changed", `"to":"down"`)
		}
		t.Logf("%s: BFD downs logged since the lab came up, all nodes: %d", what, logged)
		t.Logf("%s: %d of %d echo requests lost; a block missing from a kernel in %d of %d checks (every 10ms); BFD downs %v, route cut-offs %v (all nodes)",
			what, lost, sent, w.missing, w.checks, d1-d0, c1-c0)
	}
	sigstop := func(reps int, hold time.Duration) func() {
		return func() {
			var held []time.Duration
			for range reps {
				start := time.Now()
				if err := l.SignalNetd(node, syscall.SIGSTOP); err != nil {
					t.Fatal(err)
				}
				time.Sleep(hold) // the stall itself
				if err := l.SignalNetd(node, syscall.SIGCONT); err != nil {
					t.Fatal(err)
				}
				held = append(held, time.Since(start))
				time.Sleep(time.Second) // between stalls: let BFD packets flow
			}
			t.Logf("SIGSTOP held for median %v, max %v", median(held), slices.Max(held))
		}
	}
	hog := func(d time.Duration, during func()) func() {
		return func() {
			cmd := exec.Command("stress-ng", "--cpu", "2", "--timeout", fmt.Sprintf("%ds", int(d.Seconds())), "--quiet")
			if err := cmd.Start(); err != nil {
				t.Fatalf("stress-ng: %v", err)
			}
			defer func() {
				_ = cmd.Process.Kill() // by PID: only the hog started here
				_ = cmd.Wait()
			}()
			if during != nil {
				during()
			}
			_ = cmd.Wait()
		}
	}
	measure("SIGSTOP 600ms x10", sigstop(10, 600*time.Millisecond))
	measure("stress-ng --cpu 2 for 20s", hog(20*time.Second, nil))
	measure("SIGSTOP 600ms x10 under stress-ng --cpu 2", hog(30*time.Second, sigstop(10, 600*time.Millisecond)))
}

func p90(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)*9+9)/10-1]
}
