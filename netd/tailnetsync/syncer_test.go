package tailnetsync

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ducksnest/netd/acl"
	"github.com/ducksnest/netd/acl/acltest"
	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/reconcile"
	"github.com/ducksnest/netd/policy"
	"github.com/ducksnest/netd/policy/desired"
)

var examplePolicy = filepath.Join("..", "..", "examples", "ducksnest", "policy.yaml")

// compile compiles the example policy after edit (a text edit of the
// YAML), with a short re-check interval and the given writer.
func compile(t *testing.T, writer string, edit func(string) string) *desired.State {
	t.Helper()
	data, err := os.ReadFile(examplePolicy)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	if edit != nil {
		text = edit(text)
	}
	f, err := policy.Load(examplePolicy, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	st, err := policy.Compile(f)
	if err != nil {
		t.Fatal(err)
	}
	st.Tailnet.Sync.Writer, st.Tailnet.Sync.Interval = writer, 50*time.Millisecond
	return st
}

// withGrant adds an admin grant on port to the example's tailnet section.
func withGrant(port string) func(string) string {
	return func(s string) string {
		return strings.Replace(s, "    grants:\n", "    grants:\n      - src: [group:admins]\n        dst: [tag:aws]\n        ip: [\"tcp:"+port+"\"]\n", 1)
	}
}

type events struct {
	mu   sync.Mutex
	list []string // "Type Reason: message"
}

func (e *events) Event(_ context.Context, typ, reason, msg string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, typ+" "+reason+": "+msg)
	return nil
}

// count returns how many events have this reason.
func (e *events) count(reason string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, s := range e.list {
		if strings.Contains(s, " "+reason+": ") {
			n++
		}
	}
	return n
}

// harness runs one Syncer for node self against a fake headscale, with a
// policy the test replaces.
type harness struct {
	t      *testing.T
	hs     *acltest.Headscale
	s      *Syncer
	ev     *events
	reg    *prometheus.Registry
	state  atomic.Pointer[desired.State]
	policy *reconcile.Trigger // the role's "policy changed" trigger
	done   chan struct{}
}

func newHarness(t *testing.T, self string, st *desired.State) *harness {
	t.Helper()
	h := &harness{t: t, hs: acltest.NewHeadscale(t), ev: &events{}, reg: prometheus.NewRegistry(), policy: reconcile.NewTrigger(), done: make(chan struct{})}
	h.state.Store(st)
	h.hs.SetNodes(approvedNodes(st))
	c, err := acl.NewClient(acl.Target{Kind: acl.KindHeadscale, BaseURL: h.hs.URL, APIKey: acltest.APIKey})
	if err != nil {
		t.Fatal(err)
	}
	m, err := reconcile.NewMetrics(h.reg)
	if err != nil {
		t.Fatal(err)
	}
	current := func() *desired.State { return h.state.Load() }
	role := NamedRole{Self: self, Named: func() string { return current().Tailnet.Sync.Writer }, Changed: h.policy}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	h.s, err = New(Config{Node: self, Control: c, Role: role, State: current, Events: h.ev, Log: log, Registry: h.reg, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(h.done)
		if err := h.s.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-h.done
	})
	return h
}

// set replaces the policy and pokes both triggers, as a daemon reload does.
func (h *harness) set(st *desired.State) {
	h.state.Store(st)
	h.policy.Poke()
	h.s.Trigger().Poke()
}

// checks waits until the writer has re-checked n more times.
func (h *harness) checks(n int) {
	h.t.Helper()
	start := h.s.Status().LastCheck
	seen := 0
	last := start
	testutil.Eventually(h.t, 10*time.Second, "re-checks", func() bool {
		if lc := h.s.Status().LastCheck; lc.After(last) {
			seen++
			last = lc
		}
		return seen >= n
	})
}

func (h *harness) gauge(name string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	h.t.Fatalf("no metric %s", name)
	return 0
}

// approvedNodes lists every policy node on the tailnet with its pod
// blocks advertised and approved.
func approvedNodes(st *desired.State) []acltest.Node {
	var out []acltest.Node
	for _, n := range st.Nodes {
		var rs []string
		for _, b := range n.PodCIDRs {
			rs = append(rs, b.String())
		}
		out = append(out, acltest.Node{GivenName: n.Name, IPAddresses: []string{n.OverlayAddr.String(), "fd7a:115c:a1e0::1"},
			AvailableRoutes: rs, ApprovedRoutes: rs, SubnetRoutes: rs})
	}
	return out
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestWriterAppliesOnChangeOnly(t *testing.T) {
	st := compile(t, "control-plane", nil)
	h := newHarness(t, "control-plane", st)
	testutil.Eventually(t, 10*time.Second, "first apply", func() bool { return h.s.Status().InSync })
	live, writes, _ := h.hs.State()
	if writes != 1 || !strings.HasPrefix(live, acl.StampPrefix) {
		t.Fatalf("after the first apply: %d writes, live %.80q", writes, live)
	}
	h.checks(5)
	if _, writes, _ := h.hs.State(); writes != 1 {
		t.Fatalf("re-checks of an unchanged policy wrote: %d writes", writes)
	}
	if got := promtest.ToFloat64(h.s.m.writes); got != 1 {
		t.Errorf("netd_tailnet_policy_writes_total = %v, want 1", got)
	}

	h.set(compile(t, "control-plane", withGrant("7777")))
	testutil.Eventually(t, 10*time.Second, "the changed policy applied", func() bool {
		live, _, _ := h.hs.State()
		return strings.Contains(live, "tag:aws:7777")
	})
	h.checks(3)
	if _, writes, _ := h.hs.State(); writes != 2 {
		t.Fatalf("%d writes after one change, want 2", writes)
	}
	s := h.s.Status()
	if !s.Leading || s.Writer != "control-plane" || !s.InSync || s.Drift != "" || s.Error != "" || h.gauge("netd_tailnet_policy_writer") != 1 {
		t.Fatalf("status %+v", s)
	}
	if n := h.ev.count("TailnetPolicyApplied"); n != 2 {
		t.Errorf("%d TailnetPolicyApplied events, want 2: %v", n, h.ev.list)
	}
}

func TestDriftReportedNotOverwritten(t *testing.T) {
	st := compile(t, "control-plane", nil)
	h := newHarness(t, "control-plane", st)
	testutil.Eventually(t, 10*time.Second, "first apply", func() bool { return h.s.Status().InSync })
	h.hs.Edit(func(p string) string {
		return strings.Replace(p, `"tag:k8s-node:22"`, `"tag:k8s-node:22", "tag:k8s-node:2222"`, 1)
	})
	edited, _, _ := h.hs.State()
	testutil.Eventually(t, 10*time.Second, "drift reported", func() bool { return h.s.Status().Drift != "" })
	h.checks(5)
	s := h.s.Status()
	if !strings.Contains(s.Drift, "edited after netd applied it") || !strings.Contains(s.DriftDiff, "tag:k8s-node:2222") || s.InSync || s.Blocked == "" {
		t.Errorf("status %+v", s)
	}
	if live, writes, _ := h.hs.State(); live != edited || writes != 1 {
		t.Fatalf("the edit was overwritten (%d writes)", writes)
	}
	if n := h.ev.count("TailnetPolicyDrift"); n != 1 {
		t.Errorf("%d drift events over 5 re-checks, want 1: %v", n, h.ev.list)
	}
	if h.gauge("netd_tailnet_policy_drift") != 1 || h.gauge("netd_tailnet_policy_in_sync") != 0 {
		t.Errorf("drift gauge %v, in-sync gauge %v", h.gauge("netd_tailnet_policy_drift"), h.gauge("netd_tailnet_policy_in_sync"))
	}

	// A policy change does not override the edit either.
	h.set(compile(t, "control-plane", withGrant("7777")))
	h.checks(3)
	if live, writes, _ := h.hs.State(); live != edited || writes != 1 {
		t.Fatalf("a policy change overwrote the edit (%d writes)", writes)
	}
	if s := h.s.Status(); !strings.Contains(s.Blocked, "edited outside netd") {
		t.Fatalf("status does not say why the policy is not applied: %+v", s)
	}

	// A second edit is a new drift: reported once more.
	h.hs.Edit(func(p string) string { return strings.Replace(p, `"tag:k8s-node:2222"`, `"tag:k8s-node:2223"`, 1) })
	testutil.Eventually(t, 10*time.Second, "the second edit reported", func() bool { return h.ev.count("TailnetPolicyDrift") == 2 })

	// ownership: exclusive overwrites it, after reporting.
	ex := compile(t, "control-plane", withGrant("7777"))
	ex.Tailnet.Sync.Exclusive = true
	h.set(ex)
	testutil.Eventually(t, 10*time.Second, "the edit overwritten (exclusive)", func() bool {
		live, _, _ := h.hs.State()
		return strings.Contains(live, "tag:aws:7777") && !strings.Contains(live, "2223")
	})
	testutil.Eventually(t, 10*time.Second, "drift resolved", func() bool {
		s := h.s.Status()
		return s.Drift == "" && s.InSync
	})
	if h.ev.count("TailnetPolicyOverwritten") != 1 || h.ev.count("TailnetPolicyDriftResolved") != 1 || h.gauge("netd_tailnet_policy_drift") != 0 {
		t.Errorf("events %v, drift gauge %v", h.ev.list, h.gauge("netd_tailnet_policy_drift"))
	}
}

func TestStandbyWritesNothingAndHandsOver(t *testing.T) {
	h := newHarness(t, "control-plane", compile(t, "firebat", nil))
	if _, err := testutil.Wait(300*time.Millisecond, "a request from a standby netd", func() (bool, error) {
		_, _, calls := h.hs.State()
		return calls > 0, nil
	}); err == nil {
		t.Fatal("a netd that is not the writer talked to the control server")
	}
	if s := h.s.Status(); s.Leading || s.Writer != "firebat" || !strings.HasPrefix(s.Mode, "policy") || h.gauge("netd_tailnet_policy_writer") != 0 {
		t.Fatalf("standby status %+v", s)
	}

	// The policy names this node: it takes over and applies.
	h.set(compile(t, "control-plane", nil))
	testutil.Eventually(t, 10*time.Second, "the new writer applies", func() bool { return h.s.Status().InSync })

	// It names another node again: this one stops talking to the server.
	h.set(compile(t, "ultra", nil))
	testutil.Eventually(t, 10*time.Second, "the writer stands down", func() bool { return !h.s.Status().Leading })
	_, _, calls := h.hs.State()
	if _, err := testutil.Wait(300*time.Millisecond, "a request after standing down", func() (bool, error) {
		_, _, c := h.hs.State()
		return c > calls, nil
	}); err == nil {
		t.Fatal("the former writer still talks to the control server")
	}
	if s := h.s.Status(); s.Writer != "ultra" || s.InSync || s.Drift != "" || h.gauge("netd_tailnet_policy_writer") != 0 {
		t.Fatalf("status after standing down %+v", s)
	}
}

func TestRejectedPolicyNotWritten(t *testing.T) {
	st := compile(t, "control-plane", nil)
	h := newHarness(t, "control-plane", st)
	testutil.Eventually(t, 10*time.Second, "first apply", func() bool { return h.s.Status().InSync })
	before, _, _ := h.hs.State()
	bad := compile(t, "control-plane", withGrant("7777"))
	bad.Tailnet.Headscale.Tests = append(slices.Clone(bad.Tailnet.Headscale.Tests),
		desired.TailnetTest{Path: "tests[9].accept[0]", Src: "alice@example.com", Dst: "tag:aws:7778", Want: "accept", Got: "deny", Reason: "no rule"})
	h.set(bad)
	testutil.Eventually(t, 10*time.Second, "the refusal reported", func() bool { return h.ev.count("TailnetPolicyRejected") == 1 })
	h.checks(3)
	if live, writes, _ := h.hs.State(); live != before || writes != 1 {
		t.Fatalf("a policy whose tests fail was written (%d writes)", writes)
	}
	if s := h.s.Status(); !strings.Contains(s.Error, "policy tests fail") || s.InSync {
		t.Fatalf("status %+v", s)
	}
	if n := h.ev.count("TailnetPolicyRejected"); n != 1 {
		t.Errorf("%d rejection events, want 1", n)
	}
}

func TestRouteApprovalReported(t *testing.T) {
	st := compile(t, "control-plane", nil)
	h := newHarness(t, "control-plane", st)
	nodes := approvedNodes(st)
	for i := range nodes {
		switch nodes[i].GivenName {
		case "firebat": // advertised, not approved
			nodes[i].ApprovedRoutes, nodes[i].SubnetRoutes = nil, nil
		case "old": // one of its two blocks not advertised
			nodes[i].AvailableRoutes, nodes[i].ApprovedRoutes, nodes[i].SubnetRoutes = nodes[i].AvailableRoutes[:1], nodes[i].ApprovedRoutes[:1], nil
		}
	}
	h.hs.SetNodes(nodes)
	testutil.Eventually(t, 10*time.Second, "route problems reported", func() bool { return len(h.s.Status().RouteProblems) == 2 })
	got := h.s.Status().RouteProblems
	if got[0].Node != "firebat" || len(got[0].Unapproved) != 1 || got[1].Node != "old" || len(got[1].NotAdvertised) != 1 {
		t.Fatalf("route problems %+v", got)
	}
	if v := h.gauge("netd_tailnet_pod_routes_unapproved"); v != 2 {
		t.Errorf("unapproved gauge %v, want 2", v)
	}
	h.checks(3)
	if n := h.ev.count("PodRoutesNotApproved"); n != 1 {
		t.Errorf("%d events, want 1", n)
	}
	h.hs.SetNodes(approvedNodes(st))
	testutil.Eventually(t, 10*time.Second, "routes approved", func() bool { return h.ev.count("PodRoutesApproved") == 1 })
	if s := h.s.Status(); len(s.RouteProblems) != 0 || h.gauge("netd_tailnet_pod_routes_unapproved") != 0 {
		t.Fatalf("status %+v", s)
	}
}

// TestIntervalFromPolicy: the re-check period follows the policy; a
// reload that changes it takes effect without a restart.
func TestIntervalFromPolicy(t *testing.T) {
	h := newHarness(t, "control-plane", compile(t, "control-plane", nil))
	h.checks(3) // every 50ms
	slow := compile(t, "control-plane", nil)
	slow.Tailnet.Sync.Interval = time.Hour
	h.set(slow)
	testutil.Eventually(t, 10*time.Second, "the hourly loop's first run", func() bool {
		s := h.s.Status()
		return s.Interval == "1h0m0s" && s.Loop != nil && s.Loop.Runs == 1
	})
	if _, err := testutil.Wait(500*time.Millisecond, "a re-check within the hour", func() (bool, error) {
		return h.s.Status().Loop.Runs > 1, nil
	}); err == nil {
		t.Fatal("re-checked within 500ms with an hourly interval")
	}
	h.set(compile(t, "control-plane", nil))
	h.checks(3)
}
