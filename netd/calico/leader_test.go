package calico

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/ducksnest/netd/internal/testutil"
)

// TestLeaderElection races two reconcilers on one Lease: only the holder
// runs (and writes), never both at once; when the holder stops, the other
// takes over within the lease duration and its writes land.
func TestLeaderElection(t *testing.T) {
	s := server(t)
	c := clients(t, s)
	const lease = 4 * time.Second
	var (
		active  atomic.Int32 // reconcilers running right now
		overlap atomic.Bool
		mu      sync.Mutex
		writes  = map[string]int{}
		started = map[string]time.Time{}
	)
	instance := func(ctx context.Context, id string, nat bool) <-chan error {
		done := make(chan error, 1)
		r := NewReconciler(clients(t, s), testLog(t), id)
		go func() {
			done <- RunLeader(ctx, c.Kube, "netd-calico", id, lease, func(ctx context.Context) {
				if active.Add(1) > 1 {
					overlap.Store(true)
				}
				defer active.Add(-1)
				mu.Lock()
				started[id] = time.Now()
				mu.Unlock()
				tick := time.NewTicker(100 * time.Millisecond)
				defer tick.Stop()
				for ctx.Err() == nil {
					st, _ := r.Reconcile(ctx, state("10.244.0.0/16", nat))
					mu.Lock()
					writes[id] += len(st.Applied)
					mu.Unlock()
					select {
					case <-ctx.Done():
					case <-tick.C:
					}
				}
			})
		}()
		return done
	}
	ctxA, stopA := context.WithCancel(t.Context())
	defer stopA()
	ctxB, stopB := context.WithCancel(t.Context())
	defer stopB()
	doneA := instance(ctxA, "node-a", false)
	testutil.Eventually(t, 20*time.Second, "node-a to lead", func() bool { mu.Lock(); defer mu.Unlock(); return !started["node-a"].IsZero() })
	doneB := instance(ctxB, "node-b", true)
	// B runs alongside for a while: it must not lead nor write.
	testutil.Eventually(t, 10*time.Second, "node-a's objects", func() bool { return exists(t, c, IPPools, "pods") })
	hold := time.Now().Add(2 * lease)
	testutil.Eventually(t, 3*lease, "two lease periods", func() bool { return time.Now().After(hold) })
	mu.Lock()
	if !started["node-b"].IsZero() || writes["node-b"] != 0 {
		t.Errorf("node-b ran while node-a held the lease (writes %d)", writes["node-b"])
	}
	mu.Unlock()
	l, err := c.Kube.CoordinationV1().Leases(LeaseNamespace).Get(t.Context(), "netd-calico", metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != "node-a" {
		t.Fatalf("lease %+v, err %v", l.Spec, err)
	}
	if specBool(get(t, c, IPPools, "pods"), "natOutgoing") {
		t.Error("node-b's policy was written")
	}
	lost := time.Now()
	stopA()
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, lease, "node-b to take over within the lease duration", func() bool { mu.Lock(); defer mu.Unlock(); return !started["node-b"].IsZero() })
	mu.Lock()
	handover := started["node-b"].Sub(lost)
	mu.Unlock()
	t.Logf("handover after release: %v (lease %v)", handover, lease)
	testutil.Eventually(t, 5*time.Second, "node-b's write", func() bool { return specBool(get(t, c, IPPools, "pods"), "natOutgoing") })
	stopB()
	if err := <-doneB; err != nil {
		t.Fatal(err)
	}
	if overlap.Load() {
		t.Error("two reconcilers ran at the same time")
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

// TestLeaderLost: the holder loses the API server (its connection is cut,
// it cannot renew nor release): it stops running within the renew
// deadline, and the other instance takes over within the lease duration
// of the last renewal.
func TestLeaderLost(t *testing.T) {
	s := server(t)
	c := clients(t, s)
	const lease = 4 * time.Second
	proxy := newCutProxy(t, strings.TrimPrefix(s.Config.Host, "https://"))
	cfgA := rest.CopyConfig(s.Config)
	cfgA.Host = "https://" + proxy.ln.Addr().String()
	cfgA.Timeout = time.Second
	ca, err := NewClients(cfgA)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	events := map[string]time.Time{}
	mark := func(k string) { mu.Lock(); events[k] = time.Now(); mu.Unlock() }
	seen := func(k string) bool { mu.Lock(); defer mu.Unlock(); return !events[k].IsZero() }
	run := func(ctx context.Context, cs *Clients, id string) <-chan error {
		done := make(chan error, 1)
		go func() {
			done <- RunLeader(ctx, cs.Kube, "netd-calico", id, lease, func(ctx context.Context) {
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
	doneB := run(ctx, c, "node-b")
	l, err := c.Kube.CoordinationV1().Leases(LeaseNamespace).Get(ctx, "netd-calico", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	proxy.cut()
	cutAt := time.Now()
	lastRenew := l.Spec.RenewTime.Time
	testutil.Eventually(t, 2*lease, "node-a to stop leading", func() bool { return seen("node-a stop") })
	testutil.Eventually(t, 3*lease, "node-b to lead", func() bool { return seen("node-b start") })
	mu.Lock()
	stopA, startB := events["node-a stop"], events["node-b start"]
	mu.Unlock()
	t.Logf("connection cut: node-a stopped after %v, node-b led after %v (lease %v, last renew seen %v before the cut)",
		stopA.Sub(cutAt), startB.Sub(cutAt), lease, cutAt.Sub(lastRenew))
	if startB.Before(stopA) {
		t.Errorf("node-b started (%v) before node-a stopped (%v)", startB, stopA)
	}
	if d := startB.Sub(cutAt); d > lease+lease/6+time.Second {
		t.Errorf("handover took %v, lease %v", d, lease)
	}
	cancel()
	for _, d := range []<-chan error{doneA, doneB} {
		if err := <-d; err != nil {
			t.Error(err)
		}
	}
}
