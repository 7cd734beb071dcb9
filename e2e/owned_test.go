package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/lab"
)

// ipIn runs ip in a namespace.
func ipIn(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "ip"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s in %s: %v: %s", strings.Join(args, " "), ns, err, out)
	}
	return string(out)
}

// unowned lists the routes (every table) and rules of a node that netd
// does not own: everything but protocol 244 routes and the 5260 rule.
func unowned(t *testing.T, l *lab.Lab, ns string) []string {
	var out []string
	for _, line := range strings.Split(ipIn(t, ns, "-4", "route", "show", "table", "all")+ipIn(t, ns, "-4", "rule", "show"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.Contains(line, "proto 244") || strings.HasPrefix(line, "5260:") {
			continue
		}
		out = append(out, line)
	}
	slices.Sort(out)
	return out
}

// TestUnownedStateSurvives: a user's static route in main, tailscaled's
// table 52 and its rule 5270 (plus an extra table-52 route) are untouched
// by netd's start, periodic resync, reload and stop; the resync, with no
// signal, and the reload each put back a netd route deleted by hand.
func TestUnownedStateSurvives(t *testing.T) {
	needRoot(t)
	all := []string{"control-plane", "firebat", "old", "ultra"}
	l := upLab(t, all...) // topology only: every netd held back
	ctx := t.Context()
	fb, _ := l.Node("firebat")
	ipIn(t, fb.NS, "route", "add", "10.123.0.0/24", "via", "192.168.0.99", "dev", "eth0")
	ipIn(t, fb.NS, "route", "add", "100.100.100.100/32", "dev", "tailscale0", "table", "52")
	ipIn(t, fb.NS, "route", "add", "blackhole", "10.244.200.0/24", "proto", "static")
	before := map[string][]string{}
	for _, n := range l.Nodes {
		before[n.Name] = unowned(t, l, n.NS)
	}
	for _, want := range []string{"10.123.0.0/24 via 192.168.0.99 dev eth0", "100.100.100.100 dev tailscale0 table 52",
		"100.64.0.0/10 dev tailscale0 table 52", "5270:\tfrom all lookup 52", "blackhole 10.244.200.0/24"} {
		if !slices.ContainsFunc(before["firebat"], func(s string) bool { return strings.HasPrefix(s, want) }) {
			t.Fatalf("firebat's unowned state lacks %q:\n  %s", want, strings.Join(before["firebat"], "\n  "))
		}
	}
	for _, n := range all {
		if err := l.StartNetd(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := l.WaitConverged(cctx, all); err != nil {
		t.Fatal(err)
	}
	same := func(when string) {
		t.Helper()
		for _, n := range l.Nodes {
			if got := unowned(t, l, n.NS); !slices.Equal(got, before[n.Name]) {
				t.Errorf("%s: %s changed what netd does not own:\nbefore:\n  %s\nnow:\n  %s", when, n.Name,
					strings.Join(before[n.Name], "\n  "), strings.Join(got, "\n  "))
			}
		}
	}
	same("after start")

	// Drift repair without a signal: a route of netd's deleted by hand comes
	// back at the next periodic resync. netd never learns of the deletion
	// (it watches no kernel route events), and nothing else changes in the
	// lab, so only the resync can put it back. The lab runs netd with the
	// default --resync (30s), as the NixOS module deploys it; the test
	// deletes the route right after convergence, so it waits less than one
	// period (the deadline adds room for a busy machine).
	routeRuns := func() float64 {
		return metric(t, l, "firebat", "netd_reconcile_runs_total", `reconciler="routes",result="ok"`)
	}
	loadedAt := func() string { // when firebat's netd last (re)loaded its policy
		st, err := l.Status(ctx, "firebat")
		if err != nil {
			t.Fatal(err)
		}
		var v struct {
			Policy struct{ LoadedAt string } `json:"policy"`
		}
		if err := json.Unmarshal(st.Raw, &v); err != nil || v.Policy.LoadedAt == "" {
			t.Fatalf("firebat's status has no policy.loadedAt (%v): %s", err, st.Raw)
		}
		return v.Policy.LoadedAt
	}
	rs, err := l.Routes("firebat")
	if err != nil || len(rs) == 0 {
		t.Fatalf("firebat has no netd routes: %v", err)
	}
	victim := rs[0].Dst.String()
	runs, loaded := routeRuns(), loadedAt()
	ipIn(t, fb.NS, "route", "del", victim, "table", "244")
	restored := func() (bool, error) {
		ok, _, err := l.HasRoutes("firebat", all)
		return ok, err
	}
	d := testutil.Poll(t, 60*time.Second, "the periodic resync restores the deleted route "+victim, restored)
	t.Logf("deleted route restored by the periodic resync in %v", d)
	if got := routeRuns(); got <= runs {
		t.Errorf("route reconciles %v before, %v after the repair: want at least one run", runs, got)
	}
	if got := loadedAt(); got != loaded {
		t.Errorf("firebat reloaded its policy during the repair (at %s, before %s): not the resync", got, loaded)
	}
	same("after the periodic resync")

	// A reload (SIGHUP) repairs at once.
	ipIn(t, fb.NS, "route", "del", victim, "table", "244")
	for _, n := range l.Nodes {
		_ = syscall.Kill(n.Netd.PID, syscall.SIGHUP)
	}
	d = testutil.Poll(t, 45*time.Second, "the reload restores the deleted route "+victim, restored)
	t.Logf("deleted route restored by a reload in %v", d)
	if loadedAt() == loaded {
		t.Error("SIGHUP did not reload firebat's policy")
	}
	same("after the reload")
	for _, n := range all {
		if err := l.StopNetd(ctx, n, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	same("after stop")
}

// TestCLI drives `netd lab up/status/check/down` as a user would and
// measures how long `netd lab up` takes to converge (median of 3).
func TestCLI(t *testing.T) {
	t.Parallel() // see doc.go
	needRoot(t)
	var ups []time.Duration
	for i := range 3 {
		name, dir := labName(), t.TempDir()
		down := func() {
			out, err := exec.Command(netdBin, "lab", "down", "--name", name, "--state-dir", dir).CombinedOutput()
			if err != nil {
				t.Errorf("netd lab down: %v\n%s", err, out)
			}
		}
		t.Cleanup(down)
		start := time.Now()
		out, err := exec.Command(netdBin, "lab", "up", "--name", name, "--state-dir", dir, "--policy", policyPath).CombinedOutput()
		if err != nil {
			t.Fatalf("netd lab up: %v\n%s", err, out)
		}
		ups = append(ups, time.Since(start))
		if i > 0 {
			down()
			continue
		}
		out, err = exec.Command(netdBin, "lab", "status", "--name", name, "--state-dir", dir).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "established") {
			t.Errorf("netd lab status: %v\n%s", err, out)
		}
		t.Logf("netd lab status:\n%s", out)
		out, err = exec.Command(netdBin, "lab", "check", "--name", name, "--state-dir", dir, "--bulk", "1048576").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "ALL CHECKS PASSED") {
			t.Errorf("netd lab check: %v\n%s", err, out)
		}
		// Cut one pod off (its host route, which is not netd's): check fails.
		ipIn(t, name+"-firebat", "route", "del", "10.244.1.10/32")
		out, err = exec.Command(netdBin, "lab", "check", "--name", name, "--state-dir", dir, "--bulk", "0").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "SOME CHECKS FAILED") {
			t.Errorf("netd lab check with a pod cut off: %v; want exit 1 and failures\n%s", err, out)
		}
		down()
		if left, _ := filepath.Glob("/run/netns/" + name + "-*"); len(left) > 0 {
			t.Errorf("namespaces left after netd lab down: %v", left)
		}
		if _, err := os.Stat(filepath.Join(dir, "lab.json")); err == nil {
			t.Error("lab.json left after netd lab down")
		}
	}
	t.Logf("netd lab up to convergence: %v, median %v", ups, median(ups))
}
