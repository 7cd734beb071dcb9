package e2e

import (
	"context"
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
// by netd's start, resync and stop.
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
	// Resync: remove one of netd's routes, reload with SIGHUP and wait for
	// the route to come back.
	rs, err := l.Routes("firebat")
	if err != nil || len(rs) == 0 {
		t.Fatalf("firebat has no netd routes: %v", err)
	}
	victim := rs[0].Dst.String()
	ipIn(t, fb.NS, "route", "del", victim, "table", "244")
	for _, n := range l.Nodes {
		_ = syscall.Kill(n.Netd.PID, syscall.SIGHUP)
	}
	d := testutil.Poll(t, 45*time.Second, "netd restores the deleted route "+victim, func() (bool, error) {
		ok, _, err := l.HasRoutes("firebat", all)
		return ok, err
	})
	t.Logf("deleted route restored in %v", d)
	same("after resync")
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
