package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ducksnest/netd/internal/testutil"

	"github.com/ducksnest/netd/netd/lab"
)

// flows is a set of continuous pings between pods, at 10/s each.
type flows struct {
	t       *testing.T
	names   []string
	streams []*lab.PingStream
}

// startFlows pings from one pod of each node in from to one pod of each
// other node in to, both ways.
func startFlows(t *testing.T, l *lab.Lab, pairs [][2]string) *flows {
	t.Helper()
	f := &flows{t: t}
	for _, p := range pairs {
		s, _ := l.Node(p[0])
		d, _ := l.Node(p[1])
		ps, err := lab.StartPingStream(s.Pods[0].NS, s.Pods[0].Addr, d.Pods[1].Addr, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		f.names = append(f.names, p[0]+"->"+p[1])
		f.streams = append(f.streams, ps)
	}
	t.Cleanup(func() {
		for _, s := range f.streams {
			if s != nil {
				s.Stop()
			}
		}
	})
	return f
}

// stop ends every stream and returns the requests sent and lost in all,
// reporting each flow that lost any.
func (f *flows) stop(what string) (sent, lost int) {
	for i, s := range f.streams {
		n, l := s.Stop()
		f.streams[i] = nil
		sent += n
		lost += len(l)
		if len(l) > 0 {
			f.t.Errorf("%s: %s lost %d of %d echo requests (seq %v)", what, f.names[i], len(l), n, l)
		}
	}
	return sent, lost
}

// meshPairs are the flows both ways between every two of nodes.
func meshPairs(nodes ...string) [][2]string {
	var out [][2]string
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				out = append(out, [2]string{a, b})
			}
		}
	}
	return out
}

// bgpRuns is how many BGP reconciles a node's netd has run.
func bgpRuns(t *testing.T, l *lab.Lab, node string) float64 {
	return metric(t, l, node, "netd_reconcile_runs_total", `reconciler="bgp",result="ok"`) +
		metric(t, l, node, "netd_reconcile_runs_total", `reconciler="bgp",result="error"`)
}

// routeRuns is how many route reconciles a node's netd has run.
func routeRuns(t *testing.T, l *lab.Lab, node string) float64 {
	return metric(t, l, node, "netd_reconcile_runs_total", `reconciler="routes",result="ok"`) +
		metric(t, l, node, "netd_reconcile_runs_total", `reconciler="routes",result="error"`)
}

// bgpSynced reports whether a node's netd says BGP is synced.
func bgpSynced(t *testing.T, l *lab.Lab, node string) bool {
	st, err := l.Status(t.Context(), node)
	if err != nil {
		return false
	}
	var v struct{ Synced bool }
	return json.Unmarshal(st.Raw, &v) == nil && v.Synced
}

// TestOverlappingRestarts restarts two of three home nodes with kill -9 in
// every order (one then the other, the other then the one, both at once),
// with and without a policy reload while the second is down, and watches
// pings between pods of all three: not one may be lost. A node that has
// restarted itself must still keep, through a reload or a periodic resync,
// the routes it holds as stale for a peer that is restarting (issue 14.2:
// it re-added the down peer to drop a restart bit and lost its routes).
// Restarted nodes run with a 3 s resync, so that the runs without a
// reload see a periodic resync while the other node is down.
func TestOverlappingRestarts(t *testing.T) {
	l := upLab(t)
	ctx := t.Context()
	const a, b, c = "old", "ultra", "firebat"
	converged := func(what string) {
		testutil.Poll(t, 120*time.Second, what, func() (bool, error) {
			for _, n := range []string{a, b, c} {
				if ok, err := sessionsUp(t, l, n); !ok || err != nil {
					return ok, err
				}
			}
			return blocksEverywhere(l, names(l), names(l))
		})
	}
	kill := func(n string) {
		t.Helper()
		if err := l.KillNetd(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	start := func(n string) {
		t.Helper()
		if err := l.StartNetdArgs(ctx, n, "--resync", "3s"); err != nil {
			t.Fatal(err)
		}
	}
	// reconciledSince waits until node has run a BGP reconcile after the
	// count was runs: by a reload (SIGHUP) or by its periodic resync.
	reconciled := func(node string, runs float64, reload bool) {
		t.Helper()
		if reload {
			if err := l.SignalNetd(node, syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
		}
		testutil.Poll(t, 60*time.Second, node+" reconciles BGP while the other node is down", func() (bool, error) {
			return bgpRuns(t, l, node) > runs, nil
		})
	}
	type order struct {
		name          string
		first, second string // second == "": both at once
	}
	orders := []order{
		{"old-then-ultra", a, b},
		{"ultra-then-old", b, a},
		{"both-at-once", a, ""},
	}
	var total, lostAll int
	began := time.Now()
	for _, o := range orders {
		for _, reload := range []bool{true, false} {
			name := o.name + map[bool]string{true: "/reload", false: "/resync"}[reload]
			t.Run(name, func(t *testing.T) {
				converged(name + ": converged before")
				fl := startFlows(t, l, meshPairs(a, b, c))
				if o.second == "" {
					// Both at once; the third node reconciles while they are down.
					runs := bgpRuns(t, l, c)
					kill(a)
					kill(b)
					if reload {
						reconciled(c, runs, true)
					}
					start(a)
					start(b)
				} else {
					// The first restarts and finishes its restart (synced:
					// from now on it no longer asserts the restart bit);
					// then the second goes down, and the first reconciles
					// while it is down.
					kill(o.first)
					start(o.first)
					testutil.Poll(t, 180*time.Second, o.first+" synced after its restart", func() (bool, error) {
						return bgpSynced(t, l, o.first), nil
					})
					runs := bgpRuns(t, l, o.first)
					kill(o.second)
					reconciled(o.first, runs, reload)
					start(o.second)
				}
				converged(name + ": converged after")
				// Until both have pruned what nobody re-announced.
				for _, n := range []string{a, b} {
					testutil.Poll(t, 180*time.Second, n+" synced", func() (bool, error) { return bgpSynced(t, l, n), nil })
					runs := routeRuns(t, l, n)
					testutil.Poll(t, 60*time.Second, n+" reconciles its routes once synced", func() (bool, error) {
						return routeRuns(t, l, n) > runs, nil
					})
				}
				converged(name + ": still converged after the prune")
				sent, lost := fl.stop(name)
				total += sent
				lostAll += lost
				t.Logf("%s: %d of %d echo requests lost", name, lost, sent)
				if lost > 0 {
					for _, n := range []string{a, b} {
						t.Logf("--- %s: bgp log lines:\n%s", n, grepLog(t, l, n, "bgp peer removed", "adopted", "pruned", "synced"))
					}
				}
			})
		}
	}
	t.Logf("overlapping restarts: %d of %d echo requests lost in %d runs (%v)", lostAll, total, 2*len(orders), time.Since(began).Round(time.Second))
}

// grepLog returns the lines of a node's netd log that contain any of subs.
func grepLog(t *testing.T, l *lab.Lab, node string, subs ...string) string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(l.LogTail(node, 400), "\n") {
		if slices.ContainsFunc(subs, func(s string) bool { return strings.Contains(line, s) }) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestSlowestNodeRestart restarts the control-plane node, the slowest to
// re-converge (overlay only, and the highest address, so it dials every
// peer and each of them holds the dropped session idle first), with
// kill -9 and with SIGTERM in graceful stop mode, while pods ping it and
// through it: not one packet may be lost. A restarted netd must keep the
// routes it adopted until the peers they came from have re-announced them
// (End-of-RIB) or their restart time has passed, however long their
// sessions take to come back (issue 14.3: a fixed 10 s bound pruned them
// first).
func TestSlowestNodeRestart(t *testing.T) {
	l := upLab(t)
	ctx := t.Context()
	const node = "control-plane"
	converged := func(what string) time.Duration {
		return testutil.Poll(t, 120*time.Second, what, func() (bool, error) {
			if ok, err := sessionsUp(t, l, node); !ok || err != nil {
				return ok, err
			}
			return blocksEverywhere(l, names(l), names(l))
		})
	}
	var pairs [][2]string
	for _, o := range others(l, node) {
		pairs = append(pairs, [2]string{node, o}, [2]string{o, node})
	}
	for _, mode := range []string{"kill9", "graceful"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "graceful" {
				if err := l.StopNetd(ctx, node, 10*time.Second); err != nil {
					t.Fatal(err)
				}
				if err := l.StartNetdArgs(ctx, node, "--stop-mode", "graceful"); err != nil {
					t.Fatal(err)
				}
			}
			converged(mode + ": converged before")
			fl := startFlows(t, l, pairs)
			if mode == "kill9" {
				if err := l.KillNetd(ctx, node); err != nil {
					t.Fatal(err)
				}
				if err := l.StartNetd(ctx, node); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := l.StopNetd(ctx, node, 10*time.Second); err != nil {
					t.Fatal(err)
				}
				if err := l.StartNetdArgs(ctx, node, "--stop-mode", "graceful"); err != nil {
					t.Fatal(err)
				}
			}
			took := converged(mode + ": converged after")
			// Past the point where a fixed bound would have pruned, and
			// past the route run that prunes what nobody re-announced.
			testutil.Poll(t, 180*time.Second, node+" synced", func() (bool, error) { return bgpSynced(t, l, node), nil })
			runs := routeRuns(t, l, node)
			testutil.Poll(t, 60*time.Second, node+" reconciles its routes once synced", func() (bool, error) {
				return routeRuns(t, l, node) > runs, nil
			})
			converged(mode + ": still converged after the prune")
			sent, lost := fl.stop(mode)
			t.Logf("%s restart of %s: %d of %d echo requests lost; sessions back after %v", mode, node, lost, sent, took)
			if lost > 0 {
				for _, n := range names(l) {
					t.Logf("--- %s log:\n%s", n, grepLog(t, l, n, "adopted", "pruned", "synced", "session state", "peer removed", "R-bit", "unreachable"))
				}
			}
		})
	}
}
