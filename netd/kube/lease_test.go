package kube_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"

	"github.com/ducksnest/netd/internal/kubetest"
	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/kube"
)

func testLog() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func leaseHolder(t testing.TB, c *kube.Client, name string) string {
	t.Helper()
	u, err := c.Dynamic.Resource(kube.Leases).Namespace(kube.LeaseNamespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h, _, _ := unstructured.NestedString(u.Object, "spec", "holderIdentity")
	return h
}

// TestLeaseHandover races two instances, each authenticated as its own
// node's netd identity, on one Lease: only the holder runs, never both at
// once; when the holder stops (and releases), the other takes over at
// once, well within the lease duration.
func TestLeaseHandover(t *testing.T) {
	s := kubetest.Start(t)
	const lease = 4 * time.Second
	var (
		active  atomic.Int32
		overlap atomic.Bool
		mu      sync.Mutex
		started = map[string]time.Time{}
	)
	instance := func(ctx context.Context, id string) <-chan error {
		done := make(chan error, 1)
		c := s.NetdClient(t, id)
		go func() {
			done <- kube.RunWhileHolding(ctx, c, kube.Lease{Name: "netd-calico", Identity: id, Duration: lease, Log: testLog()}, func(ctx context.Context) {
				if active.Add(1) > 1 {
					overlap.Store(true)
				}
				defer active.Add(-1)
				mu.Lock()
				started[id] = time.Now()
				mu.Unlock()
				<-ctx.Done()
			})
		}()
		return done
	}
	seen := func(id string) bool { mu.Lock(); defer mu.Unlock(); return !started[id].IsZero() }
	ctxA, stopA := context.WithCancel(t.Context())
	defer stopA()
	ctxB, stopB := context.WithCancel(t.Context())
	defer stopB()
	doneA := instance(ctxA, "node-a")
	testutil.Eventually(t, 20*time.Second, "node-a to lead", func() bool { return seen("node-a") })
	doneB := instance(ctxB, "node-b")
	hold := time.Now().Add(2 * lease)
	testutil.Eventually(t, 3*lease, "two lease periods", func() bool { return time.Now().After(hold) })
	if seen("node-b") {
		t.Error("node-b ran while node-a held the lease")
	}
	admin, err := kube.NewClient(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	if h := leaseHolder(t, admin, "netd-calico"); h != "node-a" {
		t.Fatalf("lease holder %q, want node-a", h)
	}
	lost := time.Now()
	stopA()
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, lease, "node-b to take over within the lease duration", func() bool { return seen("node-b") })
	mu.Lock()
	t.Logf("handover after release: %v (lease %v)", started["node-b"].Sub(lost), lease)
	mu.Unlock()
	stopB()
	if err := <-doneB; err != nil {
		t.Fatal(err)
	}
	if overlap.Load() {
		t.Error("two holders ran at the same time")
	}
	if h := leaseHolder(t, admin, "netd-calico"); h != "" {
		t.Errorf("lease not released on cancel: holder %q", h)
	}
}

// cutProxy forwards loopback TCP to target until cut.
type cutProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln}
	t.Cleanup(p.cut)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() { _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

func (p *cutProxy) cut() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestLeaseLost: the holder loses the API server (its connection is cut,
// it can neither renew nor release): it stops running within the renew
// deadline, and the other instance takes over only after that, within the
// lease duration of the last renewal.
func TestLeaseLost(t *testing.T) {
	s := kubetest.Start(t)
	const lease = 4 * time.Second
	proxy := newCutProxy(t, strings.TrimPrefix(s.Config.Host, "https://"))
	cfgA := rest.CopyConfig(s.NetdClient(t, "node-a").Config)
	cfgA.Host = "https://" + proxy.ln.Addr().String()
	cfgA.Timeout = time.Second
	ca, err := kube.NewClient(cfgA)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	events := map[string]time.Time{}
	mark := func(k string) { mu.Lock(); events[k] = time.Now(); mu.Unlock() }
	seen := func(k string) bool { mu.Lock(); defer mu.Unlock(); return !events[k].IsZero() }
	metrics := map[string]*kube.LeaseMetrics{}
	for _, id := range []string{"node-a", "node-b"} {
		if metrics[id], err = kube.NewLeaseMetrics(prometheus.NewRegistry()); err != nil {
			t.Fatal(err)
		}
	}
	run := func(ctx context.Context, c *kube.Client, id string) <-chan error {
		done := make(chan error, 1)
		go func() {
			done <- kube.RunWhileHolding(ctx, c, kube.Lease{Name: "netd-calico", Identity: id, Duration: lease, Log: testLog(), Metrics: metrics[id]}, func(ctx context.Context) {
				mark(id + " start")
				<-ctx.Done()
				mark(id + " stop")
			})
		}()
		return done
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	doneA := run(ctx, ca, "node-a")
	testutil.Eventually(t, 20*time.Second, "node-a to lead", func() bool { return seen("node-a start") })
	doneB := run(ctx, s.NetdClient(t, "node-b"), "node-b")
	proxy.cut()
	cutAt := time.Now()
	testutil.Eventually(t, 2*lease, "node-a to stop leading", func() bool { return seen("node-a stop") })
	testutil.Eventually(t, 3*lease, "node-b to lead", func() bool { return seen("node-b start") })
	mu.Lock()
	stopA, startB := events["node-a stop"], events["node-b start"]
	mu.Unlock()
	t.Logf("connection cut: node-a stopped after %v, node-b led after %v (lease %v)", stopA.Sub(cutAt), startB.Sub(cutAt), lease)
	if startB.Before(stopA) {
		t.Errorf("node-b started (%v) before node-a stopped (%v)", startB, stopA)
	}
	if d := startB.Sub(cutAt); d > lease+lease/6+time.Second {
		t.Errorf("handover took %v, lease %v", d, lease)
	}
	// node-a lost the Lease; node-b holds it.
	wantLease := func(id string, held, lost float64) {
		t.Helper()
		h, l := kube.LeaseMetricsValues(metrics[id], "netd-calico")
		if h != held || l != lost {
			t.Errorf("%s: netd_lease_held %v, netd_lease_lost_total %v; want %v, %v", id, h, l, held, lost)
		}
	}
	testutil.Eventually(t, 2*lease, "node-b's netd_lease_held to be 1", func() bool {
		h, _ := kube.LeaseMetricsValues(metrics["node-b"], "netd-calico")
		return h == 1
	})
	wantLease("node-a", 0, 1)
	wantLease("node-b", 1, 0)
	cancel()
	for _, d := range []<-chan error{doneA, doneB} {
		if err := <-d; err != nil {
			t.Error(err)
		}
	}
	// A stop releases the Lease: not a loss.
	wantLease("node-b", 0, 0)
}
