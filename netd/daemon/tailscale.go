package daemon

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ducksnest/netd/netd/localapi"
	"github.com/ducksnest/netd/netd/reconcile"
	"github.com/ducksnest/netd/policy/desired"
)

// tailscalePart is the optional part that works with the local tailscaled
// (through package localapi): it keeps the node's advertised subnet routes
// equal to its pod blocks (Tailscale only forwards a destination inside an
// approved subnet route of some peer), reads which routes each peer
// carries so that a learned route Tailscale would drop is reported instead
// of installed (it is the daemon's overlayCheck), and optionally discovers
// the BGP peers as the tailnet peers carrying the node tag (its
// peerSource).
type tailscalePart struct {
	client   localapi.LocalAPI
	adv      *localapi.Advertiser
	metrics  *localapi.Metrics
	discover bool
	trig     *reconcile.Trigger // poked when the policy or the own blocks may have changed
	loop     *reconcile.Loop

	// Inputs, and the triggers it pokes.
	current   func() (*desired.State, *desired.Node)
	blocks    blockSource
	routeTrig *reconcile.Trigger // the peers' routes changed
	bgpTrig   *reconcile.Trigger // the discovered peers changed

	mu     sync.Mutex
	status localapi.Status
	routes map[netip.Addr][]netip.Prefix // nil until first read
	peers  []localapi.Peer
	err    string
}

// newTailscalePart connects to tailscaled's socket cfg.TailscaleSocket.
// current returns the policy and blocks the node's own blocks; routeTrig is
// poked when the peers' routes change, bgpTrig when the discovered peers do.
func newTailscalePart(cfg Config, reg prometheus.Registerer, rm *reconcile.Metrics, current func() (*desired.State, *desired.Node),
	blocks blockSource, routeTrig, bgpTrig *reconcile.Trigger,
) (*tailscalePart, error) {
	m, err := localapi.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	c := localapi.NewLocalClient(cfg.TailscaleSocket)
	t := &tailscalePart{
		client: c, metrics: m, discover: cfg.DiscoverPeers, trig: reconcile.NewTrigger(),
		adv:     &localapi.Advertiser{Client: c, Log: cfg.Log.With("component", "tailnet"), Metrics: m},
		current: current, blocks: blocks, routeTrig: routeTrig, bgpTrig: bgpTrig,
	}
	// Peers' routes change when the control server approves them: poll
	// them more often than the full resync.
	t.loop = &reconcile.Loop{Name: "tailnet", Trigger: t.trig, Resync: 2 * time.Second, MaxBackoff: 10 * time.Second,
		Log: cfg.Log, Metrics: rm, Fn: t.reconcile}
	return t, nil
}

// Run runs the tailnet loop until ctx is done.
func (t *tailscalePart) Run(ctx context.Context) error { return t.loop.Run(ctx) }

func (t *tailscalePart) reconcile(ctx context.Context) error {
	st, self := t.current()
	own, _, _ := t.blocks.blocks(self)
	s, err := t.adv.Reconcile(ctx, own, st)
	if err != nil {
		t.setErr(err)
		return err
	}
	routes, err := localapi.PeerRoutes(ctx, t.client)
	if err != nil {
		t.setErr(err)
		return err
	}
	var peers []localapi.Peer
	if t.discover {
		if peers, err = localapi.DiscoverPeers(ctx, t.client, st.Tailnet.NodeTag); err != nil {
			t.setErr(err)
			return err
		}
	}
	t.mu.Lock()
	routesChanged := !sameRoutes(t.routes, routes)
	peersChanged := t.discover && !samePeers(t.peers, peers)
	t.status, t.routes, t.peers, t.err = s, routes, peers, ""
	t.mu.Unlock()
	if routesChanged {
		t.routeTrig.Poke()
	}
	if peersChanged {
		t.bgpTrig.Poke()
	}
	return nil
}

func (t *tailscalePart) setErr(err error) {
	t.mu.Lock()
	t.err = err.Error()
	t.mu.Unlock()
}

// check returns why Tailscale would not forward p to nextHop ("" if it
// would, or if the peers' routes are not known yet).
func (t *tailscalePart) check(overlay netip.Prefix) func(p netip.Prefix, nh netip.Addr) string {
	t.mu.Lock()
	routes := t.routes
	t.mu.Unlock()
	if routes == nil {
		return nil
	}
	c := localapi.Checker{Overlay: overlay, Routes: routes}
	return func(p netip.Prefix, nh netip.Addr) string {
		if in := c.Check(p, nh); in != nil {
			return "tailscale would drop it: " + in.Reason
		}
		return ""
	}
}

// speaker returns self's speaker config with the node peers replaced by
// the discovered tailnet peers, once discovery has run (the daemon uses it
// only when discovery is on).
func (t *tailscalePart) speaker(self *desired.Node, sp desired.Speaker) desired.Speaker {
	t.mu.Lock()
	peers := t.peers
	t.mu.Unlock()
	if peers == nil {
		return sp
	}
	n := *self
	n.BGP = sp
	sp.Peers = localapi.BGPPeers(&n, peers)
	return sp
}

// TailnetStatus is the Tailscale side of `netd status`.
type TailnetStatus struct {
	localapi.Status
	Discovered []localapi.Peer `json:"discovered,omitempty"`
	Error      string          `json:"error,omitempty"`
}

// report adds the tailnet section to the status.
func (t *tailscalePart) report(s *Status) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s.Tailnet = &TailnetStatus{Status: t.status, Discovered: t.peers, Error: t.err}
}

func sameRoutes(a, b map[netip.Addr][]netip.Prefix) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok || len(va) != len(vb) {
			return false
		}
		for i := range va {
			if va[i] != vb[i] {
				return false
			}
		}
	}
	return true
}

func samePeers(a, b []localapi.Peer) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Addr != b[i].Addr || a[i].HostName != b[i].HostName {
			return false
		}
	}
	return true
}
