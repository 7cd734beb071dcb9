package calico

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"

	"github.com/ducksnest/netd/netd/kube"
)

// AffinitySource is the pod CIDR source backed by Calico IPAM: it watches
// the BlockAffinity objects and reports, for every node, the blocks whose
// affinity is confirmed (pending and pendingDeletion ones, and those marked
// deleted, do not count). It keeps the last known blocks while the API
// server is unreachable; the watch retries with backoff and relists when
// the server returns, so nothing flaps.
type AffinitySource struct {
	dyn  dynamic.Interface
	gvr  schema.GroupVersionResource
	node string
	log  *slog.Logger

	errMu sync.Mutex
	errs  map[string]error // by verb: the last failed list or watch, until one succeeds

	changes chan struct{}
	synced  atomic.Bool

	mu     sync.RWMutex
	owners map[string][]netip.Prefix
	store  cache.Store

	blocks      prometheus.Gauge
	watchErrors prometheus.Counter
}

// NewAffinitySource returns a source for node reading the BlockAffinities
// of gvr (API.BlockAffinities), with its metrics
// (netd_calico_affine_blocks, netd_calico_watch_errors_total) on reg.
func NewAffinitySource(dyn dynamic.Interface, gvr schema.GroupVersionResource, node string, log *slog.Logger, reg prometheus.Registerer) (*AffinitySource, error) {
	s := &AffinitySource{
		dyn: dyn, gvr: gvr, node: node, log: log,
		changes: make(chan struct{}, 1),
		owners:  map[string][]netip.Prefix{},
		blocks: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "netd_calico_affine_blocks",
			Help: "Pod CIDR blocks confirmed affine to this node in Calico IPAM.",
		}),
		watchErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "netd_calico_watch_errors_total",
			Help: "Failed lists or watches of Calico BlockAffinities.",
		}),
	}
	for _, c := range []prometheus.Collector{s.blocks, s.watchErrors} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering calico metrics: %w", err)
		}
	}
	return s, nil
}

// Backoff bounds the retries of a failed list or watch: while the API
// server is down the source retries at most every 5 s, so it is back within
// seconds once the server returns.
var Backoff = wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.5, Steps: 10, Cap: 5 * time.Second}

// Run watches BlockAffinities until ctx is done; cancellation is not an
// error.
func (s *AffinitySource) Run(ctx context.Context) error {
	res := s.dyn.Resource(s.gvr)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			l, err := res.List(ctx, o)
			if ctx.Err() == nil {
				s.result("list", kube.Explain(err, "list", s.gvr, ""))
			}
			return l, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			w, err := res.Watch(ctx, o)
			if ctx.Err() == nil {
				s.result("watch", kube.Explain(err, "watch", s.gvr, ""))
			}
			return w, err
		},
	}
	store := &notifyStore{Store: cache.NewStore(cache.MetaNamespaceKeyFunc), changed: s.rebuild, synced: func() {
		if !s.synced.Swap(true) {
			s.poke() // the first list is in, even if it found nothing
		}
	}}
	s.mu.Lock()
	s.store = store.Store
	s.mu.Unlock()
	backoff := Backoff
	r := cache.NewReflectorWithOptions(lw, &unstructured.Unstructured{}, store, cache.ReflectorOptions{
		Name: "calico-blockaffinities", TypeDescription: "BlockAffinity", Backoff: &backoff,
	})
	r.RunWithContext(ctx)
	return nil
}

// result records the outcome of a list or watch. A failure is counted; a
// refusal by RBAC is logged as an error (once per distinct message: the
// reflector retries with backoff) and stays in Err until the same verb
// succeeds; other failures (the API server is away) are retried quietly.
func (s *AffinitySource) result(verb string, err error) {
	s.errMu.Lock()
	prev := s.errs[verb]
	if s.errs == nil {
		s.errs = map[string]error{}
	}
	s.errs[verb] = err
	s.errMu.Unlock()
	switch {
	case err == nil:
	case kube.IsForbidden(err):
		s.watchErrors.Inc()
		if prev == nil || prev.Error() != err.Error() {
			s.log.Error("calico block affinities refused: pod blocks stay as last known", "err", err)
		}
	default:
		s.watchErrors.Inc()
		s.log.Debug("calico block affinities", "verb", verb, "err", err)
	}
}

// Err is the last failure of listing or watching the BlockAffinities that
// has not been followed by a success of the same verb (nil if none).
func (s *AffinitySource) Err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return errors.Join(s.errs["list"], s.errs["watch"])
}

// notifyStore is the reflector's store: it slims objects and recomputes
// the blocks after every change.
type notifyStore struct {
	cache.Store
	changed func()
	synced  func()
}

func (n *notifyStore) Add(o any) error    { return n.after(n.Store.Add(slimObj(o))) }
func (n *notifyStore) Update(o any) error { return n.after(n.Store.Update(slimObj(o))) }
func (n *notifyStore) Delete(o any) error { return n.after(n.Store.Delete(o)) }

func (n *notifyStore) Replace(l []any, rv string) error {
	for i := range l {
		l[i] = slimObj(l[i])
	}
	err := n.after(n.Store.Replace(l, rv))
	n.synced()
	return err
}

func (n *notifyStore) after(err error) error {
	n.changed()
	return err
}

func slimObj(o any) any {
	out, _ := slim(o)
	return out
}

// slim keeps only what the source reads, so the cache stays small.
func slim(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": u.GetAPIVersion(), "kind": u.GetKind(),
		"metadata": map[string]any{"name": u.GetName(), "resourceVersion": u.GetResourceVersion()},
		"spec":     u.Object["spec"],
	}}, nil
}

// affinity returns the node and block of a confirmed, live BlockAffinity.
func affinity(u *unstructured.Unstructured) (string, netip.Prefix, bool) {
	if specString(u, "state") != "confirmed" || specBool(u, "deleted") {
		return "", netip.Prefix{}, false
	}
	p, err := poolCIDR(u)
	node := specString(u, "node")
	if err != nil || node == "" {
		return "", netip.Prefix{}, false
	}
	return node, p, true
}

// rebuild recomputes every node's blocks from the cache and pokes Changes
// if they differ.
func (s *AffinitySource) rebuild() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store == nil {
		return
	}
	owners := map[string][]netip.Prefix{}
	for _, o := range s.store.List() {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		if node, p, ok := affinity(u); ok {
			owners[node] = append(owners[node], p)
		}
	}
	for n, ps := range owners {
		slices.SortFunc(ps, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		owners[n] = slices.Compact(ps)
	}
	if maps.EqualFunc(owners, s.owners, slices.Equal) {
		return
	}
	s.owners = owners
	s.blocks.Set(float64(len(owners[s.node])))
	s.poke()
}

func (s *AffinitySource) poke() {
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

// Blocks returns node's confirmed blocks, sorted.
func (s *AffinitySource) Blocks(node string) []netip.Prefix {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.owners[node])
}

// Owners returns every node's confirmed blocks.
func (s *AffinitySource) Owners() map[string][]netip.Prefix {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string][]netip.Prefix, len(s.owners))
	for n, ps := range s.owners {
		out[n] = slices.Clone(ps)
	}
	return out
}

// Changes receives a value (1-slot, coalescing) whenever some node's blocks
// change, and once when the first list has completed.
func (s *AffinitySource) Changes() <-chan struct{} { return s.changes }

// Synced reports whether the first list has completed. Until then Blocks
// and Owners are empty and must not be taken as "no blocks".
func (s *AffinitySource) Synced() bool { return s.synced.Load() }

// WaitSynced blocks until Synced or ctx is done.
func (s *AffinitySource) WaitSynced(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for !s.Synced() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for block affinities: %w", ctx.Err())
		case <-t.C:
		}
	}
	return nil
}
