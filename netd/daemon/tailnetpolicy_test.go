package daemon

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/netd/acl"
	"github.com/ducksnest/netd/acl/acltest"
	"github.com/ducksnest/netd/examples"
	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/tailnetsync"
)

// TestTailnetPolicyPart: with tailnet credentials and no Kubernetes, the
// netd the policy names writes the policy file's tailnet policy, applies a
// changed file on reload, and a broken file changes nothing on the tailnet.
func TestTailnetPolicyPart(t *testing.T) {
	hs := acltest.NewHeadscale(t)
	target := &acl.Target{Kind: acl.KindHeadscale, BaseURL: hs.URL, APIKey: acltest.APIKey}
	example := strings.NewReplacer("writer: control-plane", "writer: firebat", "interval: 1m", "interval: 1s").Replace(string(examples.Ducksnest))
	if example == string(examples.Ducksnest) {
		t.Fatal("the example policy names no tailnet writer")
	}
	d, path := newTestDaemon(t, func(c *Config) { c.Tailnet = target })
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		d.reloadPolicy()
	}
	write(example)
	var part *tailnetsync.Syncer
	for _, p := range d.parts {
		if s, ok := p.(*tailnetsync.Syncer); ok {
			part = s
		}
	}
	if part == nil {
		t.Fatal("no tailnet policy part with tailnet credentials")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- part.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	status := func() tailnetsync.Status {
		var s Status
		for _, r := range d.reports {
			r(&s)
		}
		if s.TailnetPolicy == nil {
			t.Fatal("no tailnetPolicy section in the status")
		}
		return *s.TailnetPolicy
	}
	testutil.Eventually(t, 10*time.Second, "the policy applied", func() bool { return status().InSync })
	if s := status(); !s.Leading || s.Writer != "firebat" {
		t.Fatalf("status %+v", s)
	}

	write(strings.Replace(example, `ip: ["tcp:6443"]`, `ip: ["tcp:6443", "tcp:7443"]`, 1))
	testutil.Eventually(t, 10*time.Second, "the changed file applied", func() bool {
		live, _, _ := hs.State()
		return strings.Contains(live, "tag:aws:7443")
	})
	live, writes, _ := hs.State()

	write(example + "\n  nodes: [\n") // broken: rejected, the last good policy stays
	if d.policy.status(path).LastError == "" {
		t.Fatal("the broken file was not rejected")
	}
	before := status().LastCheck
	testutil.Eventually(t, 10*time.Second, "a re-check after the broken file", func() bool { return status().LastCheck.After(before) })
	if l, w, _ := hs.State(); l != live || w != writes {
		t.Fatalf("a broken policy file changed the tailnet (%d writes, want %d)", w, writes)
	}

	write(strings.Replace(example, "writer: firebat", "writer: ultra", 1))
	testutil.Eventually(t, 10*time.Second, "firebat stands down", func() bool { return !status().Leading })
	if s := status(); s.Writer != "ultra" {
		t.Fatalf("status %+v", s)
	}
}
