package tailnetsync

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ducksnest/netd/acl"
	"github.com/ducksnest/netd/acl/acltest"
	"github.com/ducksnest/netd/internal/kubetest"
	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/kube"
	"github.com/ducksnest/netd/policy/desired"
)

// TestLeaseWriter runs two writers, each as its own node's netd identity
// (deploy/rbac) against a real API server, on the netd-tailnet Lease:
// exactly one leads; a policy change is applied by it; when it stops, the
// other takes over and applies the next change; drift is recorded as a
// Kubernetes Event about the tailnet policy.
func TestLeaseWriter(t *testing.T) {
	ks := kubetest.Start(t)
	hs := acltest.NewHeadscale(t)
	var state atomic.Pointer[desired.State]
	state.Store(compile(t, "", nil))
	current := state.Load
	hs.SetNodes(approvedNodes(current()))
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))

	type writer struct {
		s    *Syncer
		stop context.CancelFunc
		done chan struct{}
	}
	start := func(node string) *writer {
		kc := ks.NetdClient(t, node)
		e, err := kube.NewElector(kc, kube.Lease{Name: "netd-tailnet", Identity: node, Duration: 3 * time.Second, Log: log})
		if err != nil {
			t.Fatal(err)
		}
		c, err := acl.NewClient(acl.Target{Kind: acl.KindHeadscale, BaseURL: hs.URL, APIKey: acltest.APIKey})
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(Config{Node: node, Control: c, Role: LeaseRole{E: e, Lease: "kube-system/netd-tailnet"}, State: current,
			Events: KubeEvents{R: kube.NewRecorder(kc, "netd", node), Name: func() string { return current().Name }}, Log: log.With("node", node)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		w := &writer{s: s, stop: cancel, done: make(chan struct{})}
		go func() {
			defer close(w.done)
			if err := s.Run(ctx); err != nil {
				t.Error(err)
			}
		}()
		t.Cleanup(func() { cancel(); <-w.done })
		return w
	}
	set := func(st *desired.State, ws ...*writer) {
		state.Store(st)
		for _, w := range ws {
			w.s.Trigger().Poke()
		}
	}

	a := start("firebat")
	testutil.Eventually(t, 30*time.Second, "firebat leads and applies", func() bool { return a.s.Status().InSync })
	b := start("ultra")
	testutil.Eventually(t, 30*time.Second, "ultra sees firebat as the writer", func() bool { return b.s.Status().Writer == "firebat" })
	set(compile(t, "", withGrant("7777")), a, b)
	testutil.Eventually(t, 10*time.Second, "the change applied", func() bool {
		live, _, _ := hs.State()
		return strings.Contains(live, "tag:aws:7777")
	})
	if sa, sb := a.s.Status(), b.s.Status(); !sa.Leading || sb.Leading || sa.Mode != "lease kube-system/netd-tailnet" {
		t.Fatalf("firebat %+v\nultra %+v", sa, sb)
	}

	// The writer stops (and releases the Lease): ultra takes over.
	a.stop()
	<-a.done
	testutil.Eventually(t, 30*time.Second, "ultra leads", func() bool { return b.s.Status().Leading })
	set(compile(t, "", withGrant("7778")), b)
	testutil.Eventually(t, 10*time.Second, "ultra applies the next change", func() bool {
		live, _, _ := hs.State()
		return strings.Contains(live, "tag:aws:7778")
	})
	testutil.Eventually(t, 10*time.Second, "ultra counts its write", func() bool { return b.s.Status().Writes == 1 })
	if _, writes, _ := hs.State(); writes != 3 {
		t.Fatalf("%d writes in all, want 3", writes)
	}

	// Drift is an Event about the tailnet policy, in netd's Event namespace.
	hs.Edit(func(p string) string { return strings.Replace(p, `"tag:k8s-node:22"`, `"tag:k8s-node:2222"`, 1) })
	admin, err := kube.NewClient(ks.Config) // netd may create Events, not list them
	if err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 30*time.Second, "a TailnetPolicyDrift event", func() (bool, error) {
		l, err := admin.Dynamic.Resource(kube.Events).Namespace(kube.EventNamespace).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, e := range l.Items {
			reason, _, _ := unstructured.NestedString(e.Object, "reason")
			kind, _, _ := unstructured.NestedString(e.Object, "involvedObject", "kind")
			host, _, _ := unstructured.NestedString(e.Object, "source", "host")
			if reason == "TailnetPolicyDrift" && kind == "TailnetPolicy" && host == "ultra" {
				return true, nil
			}
		}
		return false, nil
	})
}
