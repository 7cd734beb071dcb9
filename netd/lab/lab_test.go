package lab

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/policy/desired"
)

func needRoot(t *testing.T) {
	t.Helper()
	testutil.NeedRoot(t, "builds network namespaces")
	testutil.NeedBinary(t, "ip", "iproute2")
}

// testState is the ducksnest example by hand: three home nodes on a LAN and
// an EC2 control plane reachable only over the overlay.
func testState() *desired.State {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	node := func(name, site, ov, lan, block string) desired.Node {
		n := desired.Node{Name: name, Site: site, OverlayAddr: a(ov), PodCIDRs: []netip.Prefix{p(block)}}
		if lan != "" {
			n.LANAddr, n.LAN = a(lan), "home"
		}
		return n
	}
	return &desired.State{
		Name: "ducksnest",
		Networks: desired.Networks{
			Pods: p("10.244.0.0/16"), Services: p("10.96.0.0/12"), Overlay: p("100.64.0.0/10"),
			LANs: []desired.LAN{{Name: "home", Prefix: p("192.168.0.0/24"), Site: "home", MTU: 1500}},
		},
		Overlay: desired.Link{Interface: "tailscale0", MTU: 1280},
		Routing: desired.Routing{Protocol: 244, Table: 244, RulePriority: 5260},
		PodMTU:  1280,
		Nodes: []desired.Node{
			node("control-plane", "aws", "100.64.0.1", "", "10.244.0.0/26"),
			node("firebat", "home", "100.64.0.2", "192.168.0.12", "10.244.1.0/26"),
			node("old", "home", "100.64.0.4", "192.168.0.14", "10.244.3.0/26"),
			node("ultra", "home", "100.64.0.3", "192.168.0.13", "10.244.2.0/26"),
		},
	}
}

// testLab builds the topology under a unique name and removes it at the end.
func testLab(t *testing.T, st *desired.State) *Lab {
	t.Helper()
	return testLabNamed(t, fmt.Sprintf("dnt%04x", rand.IntN(1<<16)), st)
}

// testLabNamed builds the topology as lab name and removes it at the end.
func testLabNamed(t *testing.T, name string, st *desired.State) *Lab {
	t.Helper()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(tWriter{t}, nil))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := Down(ctx, name, dir, log); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := Build(ctx, Config{Name: name, State: st, Policy: []byte("# test\n"), StateDir: dir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// startIn starts argv in namespace ns with ip netns exec, as a crashed run
// would leave a process there, and waits until it has entered ns (it does
// so only after it started). done closes when it has exited; it is killed
// by PID at the end of the test.
func startIn(t *testing.T, ns string, argv ...string) (pid int, done <-chan struct{}) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	testutil.Poll(t, 30*time.Second, fmt.Sprintf("process %d in namespace %s", cmd.Process.Pid, ns), func() (bool, error) {
		select {
		case <-exited:
			return false, fmt.Errorf("%v exited before entering the namespace", argv)
		default:
		}
		return PIDInNS(cmd.Process.Pid, ns)
	})
	return cmd.Process.Pid, exited
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func TestLabDataPathWithStaticRoutes(t *testing.T) {
	needRoot(t)
	l := testLab(t, testState())
	ctx := t.Context()
	if err := l.CheckIsolation(ctx); err != nil {
		t.Fatal(err)
	}
	// Before any route is installed, pods on different nodes cannot talk.
	fb, _ := l.Node("firebat")
	cp, _ := l.Node("control-plane")
	r, err := Ping(ctx, fb.Pods[0].NS, fb.Pods[0].Addr, cp.Pods[0].Addr, 84, false, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r.Reply {
		t.Fatalf("ping across nodes answered before any route was installed")
	}
	if err := l.InstallStaticRoutes(); err != nil {
		t.Fatal(err)
	}
	rep, err := l.Check(ctx, CheckOptions{BulkBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	var buf strings.Builder
	rep.Print(&buf)
	t.Log("\n" + buf.String())
	if !rep.OK() {
		t.Fatal("lab check failed")
	}
	if len(rep.Pairs) != 8*7 || len(rep.MTU) != 4*3 {
		t.Fatalf("got %d pairs, %d mtu probes; want 56, 12", len(rep.Pairs), len(rep.MTU))
	}
	for _, m := range rep.MTU {
		wantPath := PathOverlay
		if m.Src != "control-plane" && m.Dst != "control-plane" {
			wantPath = PathLAN
		}
		if m.Path.Kind != wantPath {
			t.Errorf("%s -> %s: path %s, want %s", m.Src, m.Dst, m.Path.Kind, wantPath)
		}
		if wantPath == PathOverlay && (!m.Above.FragNeeded || m.Above.MTU != 1280) {
			t.Errorf("%s -> %s: 1281 bytes: %v, want frag-needed mtu 1280", m.Src, m.Dst, m.Above)
		}
	}
	if rep.Bulk == nil || rep.Bulk.Path.Kind != PathOverlay {
		t.Errorf("bulk transfer did not use the overlay: %+v", rep.Bulk)
	}
	// Isolation holds with the routes installed too.
	if err := l.CheckIsolation(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestLabLANBreakChangesPath(t *testing.T) {
	needRoot(t)
	l := testLab(t, testState())
	if err := l.InstallStaticRoutes(); err != nil {
		t.Fatal(err)
	}
	fb, _ := l.Node("firebat")
	ul, _ := l.Node("ultra")
	ctx := t.Context()
	if r, err := Ping(ctx, fb.Pods[0].NS, fb.Pods[0].Addr, ul.Pods[0].Addr, 84, false, 2*time.Second); err != nil || !r.Reply {
		t.Fatalf("firebat -> ultra over the LAN: %v %v", r, err)
	}
	if err := l.SetLANLink("ultra", false); err != nil {
		t.Fatal(err)
	}
	// With the static routes nothing falls back: the pair is cut.
	if r, err := Ping(ctx, fb.Pods[0].NS, fb.Pods[0].Addr, ul.Pods[0].Addr, 84, false, 700*time.Millisecond); err != nil || r.Reply {
		t.Fatalf("firebat -> ultra with ultra's LAN port down: %v %v; want no answer", r, err)
	}
	if err := l.SetLANLink("ultra", true); err != nil {
		t.Fatal(err)
	}
}

// TestDownAfterCrash: a crashed run leaves its namespaces and a process in
// one of them; lab down, from another process (it knows only the state
// file), ends the process and deletes every namespace, and is safe to
// repeat.
func TestDownAfterCrash(t *testing.T) {
	needRoot(t)
	st := testState()
	st.Nodes = st.Nodes[:2]
	l := testLab(t, st)
	ctx := t.Context()
	_, done := startIn(t, l.Nodes[0].NS, "sleep", "300")
	if err := Down(ctx, l.Name, l.StateDir, nil); err != nil {
		t.Fatal(err)
	}
	// Down saw the process gone; the reaping is ours.
	testutil.Eventually(t, 30*time.Second, "the process left in the lab reaped", func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	})
	if left := l.ownNamespaces(); len(left) > 0 {
		t.Fatalf("namespaces left after down: %v", left)
	}
	if err := Down(ctx, l.Name, l.StateDir, nil); err != nil {
		t.Fatalf("second down: %v", err)
	}
}

// TestDownOnlyItsOwn: the labs "N-x" and "N" exist side by side (N's
// namespaces are not N-x's), and lab down of N leaves every namespace and
// process of N-x alone.
func TestDownOnlyItsOwn(t *testing.T) {
	needRoot(t)
	st := testState()
	st.Nodes = st.Nodes[:2]
	name := fmt.Sprintf("dnt%04x", rand.IntN(1<<16))
	other := testLabNamed(t, name+"-x", st)
	l := testLabNamed(t, name, st)
	for _, ns := range l.Namespaces {
		if slices.Contains(other.Namespaces, ns) {
			t.Fatalf("both labs claim %s", ns)
		}
	}
	pid, done := startIn(t, other.Nodes[0].NS, "sleep", "300")
	if err := Down(t.Context(), l.Name, l.StateDir, nil); err != nil {
		t.Fatal(err)
	}
	if left := l.ownNamespaces(); len(left) > 0 {
		t.Fatalf("namespaces of %s left after its down: %v", l.Name, left)
	}
	if got := other.ownNamespaces(); !slices.Equal(got, other.Namespaces) {
		t.Fatalf("lab down %s removed namespaces of %s: has %v, want %v", l.Name, other.Name, got, other.Namespaces)
	}
	select {
	case <-done:
		t.Fatalf("lab down %s ended process %d of lab %s", l.Name, pid, other.Name)
	default:
	}
	if in, err := PIDInNS(pid, other.Nodes[0].NS); err != nil || !in {
		t.Fatalf("process %d of %s: in its namespace %v, %v", pid, other.Name, in, err)
	}
}

func TestOurNetdRefusesOtherProcesses(t *testing.T) {
	if ourNetd(os.Getpid(), os.Args[0], "x") {
		t.Fatal("the test binary was taken for netd")
	}
	if ourNetd(1<<30, "/bin/netd", "x") {
		t.Fatal("a missing pid was taken for netd")
	}
	ticks, err := startTicks(os.Getpid())
	if err != nil || ticks == 0 {
		t.Fatalf("startTicks: %d %v", ticks, err)
	}
	if alive(&Process{PID: os.Getpid(), StartTicks: ticks + 1}) {
		t.Fatal("a reused pid (other start time) counted as alive")
	}
}

func TestPlanNames(t *testing.T) {
	l, err := plan(Config{Name: "dn", State: testState(), StateDir: "/x", PodsPerNode: 2})
	if err != nil {
		t.Fatal(err)
	}
	fb, _ := l.Node("firebat")
	if fb.NS != "dn-firebat" || fb.Pods[1].NS != "dn-firebat-pod1" || fb.Probe.NS != "dn-firebat-probe" {
		t.Errorf("names: %s %s %s", fb.NS, fb.Pods[1].NS, fb.Probe.NS)
	}
	if fb.Pods[0].Addr != netip.MustParseAddr("10.244.1.10") || fb.Pods[1].Addr != netip.MustParseAddr("10.244.1.11") {
		t.Errorf("pod addresses %s %s", fb.Pods[0].Addr, fb.Pods[1].Addr)
	}
	if fb.Pods[0].MTU != 1280 || fb.Probe.MTU != 1500 || len(fb.Pods[0].HostVeth) != 15 {
		t.Errorf("pod %+v probe %+v", fb.Pods[0], fb.Probe)
	}
	cp, _ := l.Node("control-plane")
	if cp.LANAddr.IsValid() || fb.LANLink != (Link{Interface: "eth0", MTU: 1500}) {
		t.Errorf("lan: cp %v fb %+v", cp.LANAddr, fb.LANLink)
	}
	if len(l.Namespaces) != 2+4*4 {
		t.Errorf("%d namespaces: %v", len(l.Namespaces), l.Namespaces)
	}
}

// TestIsolationDetectsLeaks: CheckIsolation is not vacuous. A default
// route in a node, and a veth whose peer sits in a namespace outside the
// lab, are both reported. (The "outside" namespace is one the test makes,
// not the host's: nothing here touches the root namespace.)
func TestIsolationDetectsLeaks(t *testing.T) {
	needRoot(t)
	st := testState()
	st.Nodes = st.Nodes[:2]
	l := testLab(t, st)
	ctx := t.Context()
	if err := l.CheckIsolation(ctx); err != nil {
		t.Fatal(err)
	}
	fb, _ := l.Node("firebat")
	if _, err := ipCmd(ctx, "-n", fb.NS, "route", "add", "default", "via", "192.168.0.1", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	err := l.CheckIsolation(ctx)
	if err == nil || !strings.Contains(err.Error(), "route to 1.1.1.1") || !strings.Contains(err.Error(), "pod "+fb.Pods[0].NS+" can reach") {
		t.Fatalf("default route in a node not reported: %v", err)
	}
	if _, err := ipCmd(ctx, "-n", fb.NS, "route", "del", "default"); err != nil {
		t.Fatal(err)
	}
	outside := fmt.Sprintf("x%s-outside", l.Name)
	if err := addNS(ctx, outside); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = delNS(context.Background(), outside) })
	if _, err := ipCmd(ctx, "-n", fb.NS, "link", "add", "leak0", "type", "veth", "peer", "name", "leak1", "netns", outside); err != nil {
		t.Fatal(err)
	}
	err = l.CheckIsolation(ctx)
	if err == nil || !strings.Contains(err.Error(), "veth leak0 in "+fb.NS+" has its peer outside the lab") {
		t.Fatalf("veth to a namespace outside the lab not reported: %v", err)
	}
}
