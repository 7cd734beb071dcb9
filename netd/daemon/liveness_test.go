package daemon

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
)

// TestBFDStatusAndHint: with BFD on, the status names every BFD session
// after its BGP peer; a node over the overlay gets the tailnet hint, an
// external router (which may not run BFD) none; a policy that turns BFD
// off while netd runs it is a warning in the log.
func TestBFDStatusAndHint(t *testing.T) {
	var log bytes.Buffer
	d, _ := newTestDaemon(t, func(c *Config) {
		c.BFD.Enabled = true
		c.Log = slog.New(slog.NewTextHandler(&log, nil))
	})
	var st Status
	for _, r := range d.reports {
		r(&st)
	}
	if st.BFD == nil || st.BFD.Interval != "100ms" || st.BFD.Multiplier != 8 {
		t.Fatalf("bfd status %+v, want interval 100ms x8", st.BFD)
	}
	names := map[string]string{}
	for _, p := range st.BFD.Peers {
		names[p.Peer.String()] = p.Name
		if p.State != "down" || p.EverUp || p.Warning != "" {
			t.Errorf("new session %+v", p)
		}
	}
	want := map[string]string{"100.64.0.2": "ultra", "100.64.0.3": "old", "100.64.0.4": "control-plane", "192.168.0.1": "home-router"}
	for a, n := range want {
		if names[a] != n {
			t.Errorf("session %s named %q, want %q (all: %v)", a, names[a], n, names)
		}
	}
	if h := bfdHint(d.policy.current, netip.MustParseAddr("100.64.0.2")); !strings.HasPrefix(h, "is UDP 3784 allowed on the tailnet?") || !strings.Contains(h, "tailscale0") {
		t.Errorf("hint for a node: %q", h)
	}
	if h := bfdHint(d.policy.current, netip.MustParseAddr("192.168.0.1")); h != "" {
		t.Errorf("hint for the home router: %q, want none (BFD is optional there)", h)
	}
	if strings.Contains(log.String(), "policy turns it off") {
		t.Errorf("warned although the policy has BFD on:\n%s", log.String())
	}

	log.Reset()
	newTestDaemonPolicy(t, strings.Replace(exampleText(), "bfd:\n      enabled: true", "bfd:\n      enabled: false", 1), func(c *Config) {
		c.BFD.Enabled = true
		c.Log = slog.New(slog.NewTextHandler(&log, nil))
	})
	if !strings.Contains(log.String(), "policy turns it off (spec.bgp.bfd.enabled: false)") {
		t.Errorf("no warning for --bfd with a policy that turns BFD off:\n%s", log.String())
	}
}
