package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/ducksnest/netd/netd/calico"
	"github.com/ducksnest/netd/netd/kube"
	"github.com/ducksnest/netd/netd/reconcile"
	"github.com/ducksnest/netd/policy/desired"
)

// calicoLease is the Lease whose holder writes the Calico objects.
const calicoLease = "netd-calico"

// cluster is the optional part that talks to the Kubernetes API: on every
// node, the node's pod blocks and every peer's block ownership come from
// Calico IPAM (BlockAffinity objects; it is the daemon's blockSource); on
// the node holding the Lease only, the Calico objects are kept equal to the
// policy. Which Calico API the cluster serves is asked when Run starts (and
// asked again until the API server answers): until then the policy's
// blocks stand.
type cluster struct {
	log     *slog.Logger
	kc      *kube.Client
	reg     prometheus.Registerer
	rm      *reconcile.Metrics
	node    string
	sync    bool
	resync  time.Duration
	loopLog *slog.Logger
	current func() (*desired.State, *desired.Node)
	trig    *reconcile.Trigger // poked when the policy changes
	bgpTrig *reconcile.Trigger // poked when the block affinities change
	elector *kube.Elector      // nil: this node never writes Calico objects
	drift   *calico.Metrics    // nil with elector
	leading atomic.Bool

	mu       sync.Mutex
	api      *calico.API // nil until discovered
	apiErr   error
	affinity *calico.AffinitySource
	rec      *calico.Reconciler
}

// newCluster reads the kubeconfig cfg.Kubeconfig names; it does not
// contact the API server. current returns the policy; bgpTrig is poked when
// the block affinities change.
func newCluster(cfg Config, reg prometheus.Registerer, rm *reconcile.Metrics,
	current func() (*desired.State, *desired.Node), bgpTrig *reconcile.Trigger,
) (*cluster, error) {
	rc, err := kube.LoadConfig(cfg.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	kc, err := kube.NewClient(rc)
	if err != nil {
		return nil, err
	}
	log := cfg.Log.With("component", "calico")
	c := &cluster{log: log, kc: kc, reg: reg, rm: rm, node: cfg.Node, sync: cfg.SyncCalico, resync: cfg.Resync, loopLog: cfg.Log, current: current,
		trig: reconcile.NewTrigger(), bgpTrig: bgpTrig}
	if cfg.SyncCalico {
		lm, err := kube.NewLeaseMetrics(reg)
		if err != nil {
			return nil, err
		}
		if c.drift, err = calico.NewMetrics(reg); err != nil {
			return nil, err
		}
		if c.elector, err = kube.NewElector(kc, kube.Lease{Name: calicoLease, Identity: cfg.Node, Log: log, Metrics: lm}); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Run asks which Calico API the cluster serves, then watches the block
// affinities (poking the BGP loop on every change) and competes for the
// Lease, until ctx is done.
func (c *cluster) Run(ctx context.Context) error {
	api, ok := c.discover(ctx)
	if !ok {
		return nil
	}
	aff, err := calico.NewAffinitySource(c.kc.Dynamic, api.BlockAffinities, c.node, c.log, c.reg)
	if err != nil {
		return err
	}
	var rec *calico.Reconciler
	if c.sync {
		rec = calico.NewReconciler(c.kc, api, c.log, c.node)
	}
	c.mu.Lock()
	c.affinity, c.rec = aff, rec
	c.mu.Unlock()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return aff.Run(ctx) })
	g.Go(func() error { return c.runLeader(ctx, rec) })
	g.Go(func() error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-aff.Changes():
				c.bgpTrig.Poke()
			}
		}
	})
	return g.Wait()
}

// discover asks for the Calico API until the API server answers or ctx is
// done (false).
func (c *cluster) discover(ctx context.Context) (calico.API, bool) {
	backoff := time.Second
	for {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		api, err := calico.Discover(dctx, c.kc)
		cancel()
		if ctx.Err() != nil {
			return calico.API{}, false
		}
		c.mu.Lock()
		c.apiErr = err
		if err == nil {
			c.api = &api
		}
		c.mu.Unlock()
		if err == nil {
			c.log.Info("calico API", "served", api.Served, "writes", api.GroupVersion.String(),
				"blockAffinities", api.BlockAffinities.GroupVersion().String(), "ipamBlocks", api.IPAMBlocks.GroupVersion().String())
			return api, true
		}
		c.log.Warn("asking which Calico API the cluster serves; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return calico.API{}, false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// runLeader competes for the Lease and runs the Calico loop while holding
// it, until ctx is done. Losing the API server is not fatal: the elector
// keeps trying.
func (c *cluster) runLeader(ctx context.Context, rec *calico.Reconciler) error {
	if rec == nil {
		<-ctx.Done()
		return nil
	}
	loop := &reconcile.Loop{Name: "calico", Trigger: c.trig, Resync: c.resync, MaxBackoff: 30 * time.Second,
		Log: c.loopLog, Metrics: c.rm, Fn: func(ctx context.Context) error {
			st, _ := c.current()
			s, err := rec.Reconcile(ctx, st)
			c.drift.Observe(s)
			return err
		}}
	return c.elector.Run(ctx, func(ctx context.Context) {
		c.leading.Store(true)
		defer c.leading.Store(false)
		defer c.drift.Clear()
		c.trig.Poke()
		_ = loop.Run(ctx)
	})
}

// blocks returns the node's pod blocks and its speaker config with peer
// ownership from Calico IPAM once the BlockAffinity watch has synced;
// before that the policy's static blocks.
func (c *cluster) blocks(self *desired.Node) ([]netip.Prefix, desired.Speaker, string) {
	c.mu.Lock()
	aff := c.affinity
	c.mu.Unlock()
	if aff == nil || !aff.Synced() {
		return ownBlocks(self), self.BGP, "policy (calico ipam not synced yet)"
	}
	return aff.Blocks(self.Name), calico.WithIPAMOwners(self.BGP, aff.Owners()), "calico-ipam"
}

// allBlocks returns every node's pod blocks from Calico IPAM once the
// BlockAffinity watch has synced; before that the policy's.
func (c *cluster) allBlocks(st *desired.State) map[string][]netip.Prefix {
	c.mu.Lock()
	aff := c.affinity
	c.mu.Unlock()
	if aff == nil || !aff.Synced() {
		return policyBlocks{}.allBlocks(st)
	}
	return aff.Owners()
}

// ClusterStatus is the Kubernetes side of `netd status`.
type ClusterStatus struct {
	// CalicoAPI is the Calico API the cluster serves and netd uses (nil
	// until the API server has answered; CalicoAPIError says why not).
	CalicoAPI      *calico.API `json:"calicoAPI,omitempty"`
	CalicoAPIError string      `json:"calicoAPIError,omitempty"`
	AffinitySynced bool        `json:"affinitySynced"`
	// AffinityError is why the BlockAffinity list or watch fails (for a
	// refusal: the verb, the resource and the missing RBAC rule).
	AffinityError string `json:"affinityError,omitempty"`
	Leader        bool   `json:"leader"`
	LeaseHolder   string `json:"leaseHolder,omitempty"`
	// LeaseError is why the Lease cannot be read or written.
	LeaseError string         `json:"leaseError,omitempty"`
	SyncCalico bool           `json:"syncCalico"`
	Calico     *calico.Status `json:"calico,omitempty"`
}

// report adds the cluster section to the status.
func (c *cluster) report(s *Status) {
	c.mu.Lock()
	cs := &ClusterStatus{CalicoAPI: c.api, Leader: c.leading.Load(), SyncCalico: c.sync}
	if c.apiErr != nil {
		cs.CalicoAPIError = c.apiErr.Error()
	}
	aff, rec := c.affinity, c.rec
	c.mu.Unlock()
	if aff != nil {
		cs.AffinitySynced = aff.Synced()
		if err := aff.Err(); err != nil {
			cs.AffinityError = err.Error()
		}
	}
	if c.elector != nil {
		cs.LeaseHolder = c.elector.Holder()
		if err := c.elector.Err(); err != nil {
			cs.LeaseError = err.Error()
		}
	}
	if rec != nil {
		st := rec.Status()
		cs.Calico = &st
	}
	s.Cluster = cs
}
