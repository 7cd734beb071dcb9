package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/netd/internal/testutil"

	"github.com/ducksnest/netd/netd/lab"
)

// The systemd lab: every node a systemd container (systemd-nspawn) in its
// namespace running the netd.service the NixOS module renders for it. One
// lab serves every subtest of TestSystemdLab (booting it costs seconds, a
// new one per check would cost minutes of CI).

// needSystemdLab returns the root file system for the systemd lab, or
// skips the test with the reason, which is a failure when
// NETD_TEST_REQUIRE=all (CI must not skip it).
func needSystemdLab(t *testing.T) string {
	t.Helper()
	needRoot(t)
	missing := func(why string) { testutil.Skip(t, "%s", why) }
	for _, tool := range []string{"systemd-nspawn", "nsenter", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing(tool + " not found (apt-get install systemd-container; see scripts/systemd-rootfs.sh)")
		}
	}
	rootfs := os.Getenv("NETD_LAB_ROOTFS")
	if rootfs == "" {
		missing("NETD_LAB_ROOTFS is not set: eval \"$(bash scripts/systemd-rootfs.sh)\" builds the containers' root file system (debootstrap)")
	}
	if _, err := os.Stat(filepath.Join(rootfs, "usr/lib/systemd/systemd")); err != nil {
		missing(fmt.Sprintf("NETD_LAB_ROOTFS=%s has no systemd: %v", rootfs, err))
	}
	return rootfs
}

// upSystemdLab boots the example policy's lab as systemd containers with
// netd.service installed but not started (the scenario starts it, as the
// VM test does), and removes everything at the end of the test.
func upSystemdLab(t *testing.T) *lab.Lab {
	t.Helper()
	rootfs := needSystemdLab(t)
	data, err := os.ReadFile(policyPath)
	if err != nil {
		t.Fatal(err)
	}
	st := policyState(t, "policy.yaml", data)
	var all []string
	for _, n := range st.Nodes {
		all = append(all, n.Name)
	}
	name, dir := labName(), t.TempDir()
	log := slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var l *lab.Lab
	t.Cleanup(func() {
		if t.Failed() && l != nil {
			for _, n := range l.Nodes {
				t.Logf("--- journal of netd.service on %s:\n%s", n.Name, l.LogTail(n.Name, 40))
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := lab.Down(ctx, name, dir, log); err != nil {
			t.Errorf("lab down: %v", err)
		}
		if left, _ := filepath.Glob("/run/netns/" + name + "-*"); len(left) > 0 {
			t.Errorf("namespaces left after lab down: %v", left)
		}
		if left, _ := mountsBelow(dir); len(left) > 0 {
			t.Errorf("mounts left after lab down: %v", left)
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	l, err = lab.Up(ctx, lab.Config{Name: name, State: st, Policy: data, Netd: netdBin, StateDir: dir,
		Hold: all, Rootfs: rootfs, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func mountsBelow(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out, nil
}

// TestSystemdLab proves netd under a real systemd, as the NixOS module
// deploys it: the shared scenario (nixos/tests/netd_scenario.py, the VM
// test's script: READY, reload, hardening as rendered, restart with the
// graceful-stop marker, SIGKILL and Restart=, SIGSTOP and the watchdog),
// the lab's own check, a restart that loses no pod traffic, every sandbox setting that the
// features need (each removed in turn and the failure seen), and a
// kubeconfig passed with LoadCredential= against a real API server.
func TestSystemdLab(t *testing.T) {
	t.Parallel() // see doc.go
	l := upSystemdLab(t)
	rootfs := l.Systemd.Rootfs
	if b, err := os.ReadFile(filepath.Join(filepath.Dir(rootfs), "build-seconds")); err == nil {
		t.Logf("MEASURE rootfs (debootstrap %s) built once in %ss", filepath.Base(filepath.Dir(rootfs)), strings.TrimSpace(string(b)))
	}
	var boots []time.Duration
	for _, n := range l.Nodes {
		boots = append(boots, n.Container.Boot)
	}
	t.Logf("MEASURE container boot (nspawn start -> systemd running), 4 in parallel: %v, median %v", boots, median(boots))

	t.Run("scenario", func(t *testing.T) { runScenario(t, l) })
	if t.Failed() {
		return // the lab is not in the state the rest expects
	}
	// BFD (UDP 3784, the module's --bfd) under the unit's sandbox: every
	// node's session to every other node up and admitted.
	var notUp []string
	t.Cleanup(func() {
		if len(notUp) > 0 {
			t.Logf("BFD sessions not up under systemd: %v", notUp)
		}
	})
	testutil.Poll(t, 60*time.Second, "BFD up between every two nodes under systemd", func() (bool, error) {
		notUp = nil
		for _, n := range l.Nodes {
			b, err := bfdStatus(t.Context(), l, n.Name)
			if err != nil {
				return false, err
			}
			up := 0
			for _, p := range b.Peers {
				if !slices.Contains(names(l), p.Name) {
					continue // the example's home router: no BFD in the lab
				}
				if p.State == "up" && p.Admitted {
					up++
				} else {
					notUp = append(notUp, fmt.Sprintf("%s->%s %s", n.Name, p.Name, p.State))
				}
			}
			if up != len(l.Nodes)-1 {
				notUp = append(notUp, fmt.Sprintf("%s: %d sessions up", n.Name, up))
			}
		}
		return len(notUp) == 0, nil
	})
	for _, n := range l.Nodes {
		m, err := l.Memory(n.Name)
		if err != nil {
			t.Fatal(err)
		}
		var rss int64
		if _, err := l.MainPID(t.Context(), n.Name); err == nil {
			rss, _ = l.RSS(n.Name)
		}
		t.Logf("MEASURE container %s: %d processes, PSS %.1f MiB, RSS %.1f MiB (netd RSS %.1f MiB)",
			n.Name, m.Procs, float64(m.PSS)/(1<<20), float64(m.RSS)/(1<<20), float64(rss)/(1<<20))
	}
	t.Run("lab-check", func(t *testing.T) {
		// What `netd lab check` runs: the pod matrix (ICMP, TCP, path
		// MTU, which path), a bulk transfer, and the lab's isolation.
		rep, err := l.Check(t.Context(), lab.CheckOptions{BulkBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() {
			var b strings.Builder
			rep.Print(&b)
			t.Errorf("lab check on the systemd lab:\n%s", b.String())
		}
		if err := l.CheckIsolation(t.Context()); err != nil {
			t.Error(err)
		}
	})
	t.Run("restart-loses-no-traffic", func(t *testing.T) { restartNoLoss(t, l) })
	t.Run("hardening", func(t *testing.T) { hardening(t, l) })
	t.Run("kubeconfig-credential", func(t *testing.T) { kubeconfigCredential(t, l) })
}

// runScenario runs the VM test's scenario on the lab through
// nixos/tests/labdriver.py.
func runScenario(t *testing.T, l *lab.Lab) {
	topo := scenarioTopology(t, l)
	b, err := json.Marshal(topo)
	if err != nil {
		t.Fatal(err)
	}
	tf := tempFile(t, "topology.json", b)
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "python3", "../nixos/tests/labdriver.py", tf)
	out, err := cmd.CombinedOutput()
	t.Logf("nixos/tests/netd_scenario.py on the systemd lab (%v):\n%s", time.Since(start).Round(time.Second), out)
	if err != nil {
		t.Fatalf("scenario failed: %v", err)
	}
}

// scenarioTopology describes the lab to the scenario: every ordered pair
// of nodes (LAN between home nodes, overlay with the control plane), the
// policy change (old's block moves away and back), the node restarted.
func scenarioTopology(t *testing.T, l *lab.Lab) map[string]any {
	t.Helper()
	orig, err := os.ReadFile(l.PolicyPath)
	if err != nil {
		t.Fatal(err)
	}
	// old's first block (its pods' addresses) moves to an unused one.
	moved := strings.Replace(string(orig), "podCIDRs: [10.244.3.0/24", "podCIDRs: [10.244.30.0/24", 1)
	if moved == string(orig) {
		t.Fatal("example policy: old's first block 10.244.3.0/24 not found")
	}
	nodes := map[string]int{}
	var pairs []map[string]any
	for _, s := range l.Nodes {
		nodes[s.Name] = s.Container.Leader.PID
		for _, d := range l.Nodes {
			if s == d {
				continue
			}
			dev, mtu := l.Overlay.Interface, l.Overlay.MTU
			if s.LANAddr.IsValid() && d.LANAddr.IsValid() {
				dev, mtu = s.LANLink.Interface, s.LANLink.MTU
			}
			// The probe pod: MTU 1500 (pods have the overlay's), so the
			// path MTU is the route's.
			pairs = append(pairs, map[string]any{"src": s.Name, "src_ip": nil, "dst_ip": d.Probe.Addr.String(),
				"block": d.PodCIDRs[0].String(), "dev": dev, "mtu": mtu})
		}
	}
	old, _ := l.Node("old")
	ultra, _ := l.Node("ultra")
	return map[string]any{
		"nodes":       nodes,
		"policy_path": l.PolicyPath,
		"policies":    map[string]string{"original": string(orig), "moved": moved},
		"pairs":       pairs,
		"moved": map[string]any{"src": "firebat", "src_ip": nil, "dst_ip": old.Pods[0].Addr.String(),
			"block": old.PodCIDRs[0].String(), "still_dst_ip": ultra.Pods[0].Addr.String()},
		"restart_node": "ultra",
		"status_url":   "http://netd/status",
		"health_url":   "http://127.0.0.1:9180/healthz",
	}
}

// restartNoLoss: `systemctl restart netd` on ultra while pods ping to it,
// from it and through its learned routes at 10/s: not one packet lost
// (graceful restart: the marker kept in /run/netd across the restart, the
// peers keep its routes, it keeps theirs).
func restartNoLoss(t *testing.T, l *lab.Lab) {
	const node = "ultra"
	ctx := t.Context()
	u, _ := l.Node(node)
	fb, _ := l.Node("firebat")
	cp, _ := l.Node("control-plane")
	old, _ := l.Node("old")
	flows := []flow{
		{"firebat->ultra (lan)", fb.Pods[0], u.Pods[0]},
		{"control-plane->ultra (overlay)", cp.Pods[0], u.Pods[1]},
		{"ultra->control-plane (ultra's learned route)", u.Pods[1], cp.Pods[1]},
		{"ultra->old (ultra's learned route)", u.Pods[0], old.Pods[0]},
	}
	converged := func(what string) time.Duration {
		return testutil.Poll(t, 90*time.Second, what, func() (bool, error) {
			ok, err := sessionsUp(t, l, node)
			if !ok || err != nil {
				return ok, err
			}
			return blocksEverywhere(l, names(l), names(l))
		})
	}
	var took []time.Duration
	sent, lost := 0, 0
	for rep := range *restartReps {
		converged(fmt.Sprintf("rep %d: converged before", rep))
		var streams []*lab.PingStream
		for _, f := range flows {
			s, err := lab.StartPingStream(f.src.NS, f.src.Addr, f.dst.Addr, 100*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			streams = append(streams, s)
		}
		before, err := l.MainPID(ctx, node)
		if err != nil {
			t.Fatal(err)
		}
		cursor := journalCursor(t, l, node)
		start := time.Now()
		if _, err := l.Systemctl(ctx, node, "restart", "netd.service"); err != nil {
			t.Fatal(err)
		}
		active := time.Since(start)
		took = append(took, converged(fmt.Sprintf("rep %d: converged after", rep))+active)
		for i, s := range streams {
			n, miss := s.Stop()
			sent += n
			lost += len(miss)
			if len(miss) > 0 {
				t.Errorf("rep %d: %s lost %d of %d (seq %v)", rep, flows[i].name, len(miss), n, miss)
			}
		}
		after, _ := l.MainPID(ctx, node)
		if after == before || after == 0 {
			t.Errorf("rep %d: systemctl restart left MainPID %d (was %d)", rep, after, before)
		}
		if j := journalSince(t, l, node, cursor); !strings.Contains(j, "previous netd stopped gracefully") {
			t.Errorf("rep %d: the new netd did not find the graceful-stop marker:\n%s", rep, lastLines(j, 20))
		}
	}
	t.Logf("MEASURE systemctl restart netd (graceful), %d reps: %d of %d echo requests lost; active again + converged in median %v (max %v)",
		*restartReps, lost, sent, median(took), slices.Max(took))
}

// journalCursor is the cursor after a node's last netd.service entry.
func journalCursor(t *testing.T, l *lab.Lab, node string) string {
	t.Helper()
	out, err := l.Journal(t.Context(), node, "-u", "netd.service", "-n", "0", "--show-cursor")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		if c, ok := strings.CutPrefix(line, "-- cursor: "); ok {
			return strings.TrimSpace(c)
		}
	}
	return ""
}

// journalSince is a node's netd.service journal after cursor (netd's
// lines and systemd's about the unit), one message per line.
func journalSince(t *testing.T, l *lab.Lab, node, cursor string) string {
	t.Helper()
	args := []string{"-u", "netd.service", "-o", "cat"}
	if cursor != "" {
		args = append(args, "--after-cursor", cursor)
	}
	out, err := l.Journal(t.Context(), node, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

// unitProp is one property of a node's netd.service (systemctl show).
func unitProp(t *testing.T, l *lab.Lab, node, prop string) string {
	t.Helper()
	out, err := l.Systemctl(t.Context(), node, "show", "-p", prop, "--value", "netd.service")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}
