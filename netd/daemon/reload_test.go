package daemon

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ducksnest/netd/examples"
	"github.com/ducksnest/netd/netd/routes/nl"
)

// newTestDaemon builds a daemon for node firebat on a copy of the example
// policy, with the kernel behind the text fake; opts change its config. It
// is not started.
func newTestDaemon(t *testing.T, opts ...func(*Config)) (*Daemon, string) {
	t.Helper()
	return newTestDaemonPolicy(t, exampleText(), opts...)
}

func exampleText() string { return string(examples.Ducksnest) }

// newTestDaemonPolicy is newTestDaemon with the policy text given.
func newTestDaemonPolicy(t *testing.T, policy string, opts ...func(*Config)) (*Daemon, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		PolicyPath: path, Node: "firebat", Log: slog.New(slog.DiscardHandler),
		Registry: prometheus.NewRegistry(), Kernel: nl.NewFake("tailscale0", "eth0"),
	}
	for _, o := range opts {
		o(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d, path
}

// TestReloadKeepsLastGoodPolicy: a broken file, or a valid one that no
// longer names this node, is rejected whole and the last good state stays;
// a valid change is taken.
func TestReloadKeepsLastGoodPolicy(t *testing.T) {
	d, path := newTestDaemon(t)
	if got := testutil.ToFloat64(d.policyOK); got != 1 {
		t.Errorf("netd_policy_last_reload_successful = %v at start, want 1", got)
	}
	good, _ := d.policy.current()
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	example := string(examples.Ducksnest)

	// Broken: an overlapping service CIDR, and a syntax error.
	for _, broken := range []string{
		strings.Replace(example, "services: 10.96.0.0/12", "services: 10.244.0.0/12", 1),
		example + "\n  nodes: [\n",
	} {
		write(broken)
		d.reloadPolicy()
		st, self := d.policy.current()
		if st != good || self.Name != "firebat" {
			t.Fatalf("a broken policy replaced the last good state")
		}
		if d.policy.lastError == "" {
			t.Fatal("a rejected reload must be visible in the status")
		}
		if got := testutil.ToFloat64(d.policyOK); got != 0 {
			t.Errorf("netd_policy_last_reload_successful = %v after a rejected reload, want 0", got)
		}
	}
	if got := testutil.ToFloat64(d.policyErrors); got != 2 {
		t.Errorf("netd_policy_reload_errors_total = %v, want 2", got)
	}

	// Valid, but this node is gone.
	write(strings.Replace(example, "name: firebat ", "name: firebat2 ", 1))
	d.reloadPolicy()
	if st, _ := d.policy.current(); st != good {
		t.Fatal("a policy without this node replaced the last good state")
	}
	if !strings.Contains(d.policy.lastError, "firebat") {
		t.Errorf("policy error %q does not name the node", d.policy.lastError)
	}

	// Valid change: taken, error cleared.
	write(strings.Replace(example, "holdTime: 9s", "holdTime: 6s", 1))
	d.reloadPolicy()
	st, self := d.policy.current()
	if st.Digest == good.Digest {
		t.Fatal("a valid change was not applied")
	}
	if self.BGP.Timers.HoldTime.Seconds() != 6 {
		t.Errorf("hold time = %v, want 6s", self.BGP.Timers.HoldTime)
	}
	if d.policy.lastError != "" {
		t.Errorf("policy error not cleared after a good reload: %q", d.policy.lastError)
	}
	if got := testutil.ToFloat64(d.policyOK); got != 1 {
		t.Errorf("netd_policy_last_reload_successful = %v after a good reload, want 1", got)
	}
}

// TestGracefulMarker: a graceful stop leaves a marker that the next start
// takes once, and only while the peers still hold the routes.
func TestGracefulMarker(t *testing.T) {
	dir := t.TempDir()
	if err := putGracefulMarker(dir); err != nil {
		t.Fatal(err)
	}
	if ok, err := takeGracefulMarker(dir, 120e9); err != nil || !ok {
		t.Fatalf("take = %v, %v; want true", ok, err)
	}
	if ok, _ := takeGracefulMarker(dir, 120e9); ok {
		t.Fatal("the marker must be taken only once")
	}
	if err := putGracefulMarker(dir); err != nil {
		t.Fatal(err)
	}
	if ok, _ := takeGracefulMarker(dir, 0); ok {
		t.Fatal("a marker older than the restart time must not make a restarting start")
	}
}
