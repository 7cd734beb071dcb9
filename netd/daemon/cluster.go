package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/ducksnest/netd/netd/calico"
	"github.com/ducksnest/netd/netd/reconcile"
	"github.com/ducksnest/netd/policy/desired"
)

// cluster is the optional part that talks to the Kubernetes API: on every
// node, the node's pod blocks and every peer's block ownership come from
// Calico IPAM (BlockAffinity objects; it is the daemon's blockSource); on
// the node holding the Lease only, the Calico objects are kept equal to the
// policy.
type cluster struct {
	log      *slog.Logger
	clients  *calico.Clients
	affinity *calico.AffinitySource
	rec      *calico.Reconciler // nil: this node never writes Calico objects
	trig     *reconcile.Trigger // poked when the policy changes
	loop     *reconcile.Loop
	bgpTrig  *reconcile.Trigger // poked when the block affinities change
	identity string             // this node's name, its Lease identity
	leading  atomic.Bool
	lease    time.Duration
}

// newCluster connects to the API server named by cfg.Kubeconfig. current
// returns the policy; bgpTrig is poked when the block affinities change.
func newCluster(cfg Config, reg prometheus.Registerer, rm *reconcile.Metrics, current func() (*desired.State, *desired.Node),
	bgpTrig *reconcile.Trigger,
) (*cluster, error) {
	rc, err := calico.LoadConfig(cfg.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cs, err := calico.NewClients(rc)
	if err != nil {
		return nil, err
	}
	log := cfg.Log.With("component", "calico")
	aff, err := calico.NewAffinitySource(cs.Dynamic, cfg.Node, log, reg)
	if err != nil {
		return nil, err
	}
	c := &cluster{log: log, clients: cs, affinity: aff, trig: reconcile.NewTrigger(), bgpTrig: bgpTrig, identity: cfg.Node,
		lease: 15 * time.Second}
	if cfg.SyncCalico {
		c.rec = calico.NewReconciler(cs, log, cfg.Node)
		c.loop = &reconcile.Loop{Name: "calico", Trigger: c.trig, Resync: cfg.Resync, MaxBackoff: 30 * time.Second,
			Log: cfg.Log, Metrics: rm, Fn: func(ctx context.Context) error {
				st, _ := current()
				_, err := c.rec.Reconcile(ctx, st)
				return err
			}}
	}
	return c, nil
}

// Run watches the block affinities (poking the BGP loop on every change)
// and competes for the Lease, until ctx is done.
func (c *cluster) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.affinity.Run(ctx) })
	g.Go(func() error { return c.runLeader(ctx) })
	g.Go(func() error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-c.affinity.Changes():
				c.bgpTrig.Poke()
			}
		}
	})
	return g.Wait()
}

// runLeader competes for the Lease and runs the Calico loop while holding
// it, until ctx is done. Losing the API server is not fatal: the election
// is tried again.
func (c *cluster) runLeader(ctx context.Context) error {
	if c.loop == nil {
		<-ctx.Done()
		return nil
	}
	for ctx.Err() == nil {
		err := calico.RunLeaderLog(ctx, c.clients.Kube, "netd-calico", c.identity, c.lease, c.log, func(ctx context.Context) {
			c.leading.Store(true)
			defer c.leading.Store(false)
			c.trig.Poke()
			_ = c.loop.Run(ctx)
		})
		if err != nil && ctx.Err() == nil {
			c.log.Warn("leader election failed; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
			}
		}
	}
	return nil
}

// blocks returns the node's pod blocks and its speaker config with peer
// ownership from Calico IPAM once the BlockAffinity watch has synced;
// before that the policy's static blocks.
func (c *cluster) blocks(self *desired.Node) ([]netip.Prefix, desired.Speaker, string) {
	if !c.affinity.Synced() {
		return ownBlocks(self), self.BGP, "policy (calico ipam not synced yet)"
	}
	return c.affinity.Blocks(self.Name), calico.WithIPAMOwners(self.BGP, c.affinity.Owners()), "calico-ipam"
}

// ClusterStatus is the Kubernetes side of `netd status`.
type ClusterStatus struct {
	AffinitySynced bool           `json:"affinitySynced"`
	Leader         bool           `json:"leader"`
	SyncCalico     bool           `json:"syncCalico"`
	Calico         *calico.Status `json:"calico,omitempty"`
}

// report adds the cluster section to the status.
func (c *cluster) report(s *Status) {
	cs := &ClusterStatus{AffinitySynced: c.affinity.Synced(), Leader: c.leading.Load(), SyncCalico: c.rec != nil}
	if c.rec != nil {
		st := c.rec.Status()
		cs.Calico = &st
	}
	s.Cluster = cs
}
