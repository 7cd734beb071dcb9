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

// tailnetPart is what netd does with the local tailscaled: it keeps the
// node's advertised subnet routes equal to its pod blocks (Tailscale only
// forwards a destination inside an approved subnet route of some peer),
// reads which routes each peer carries so that a learned route Tailscale
// would drop is reported instead of installed, and optionally discovers the
// BGP peers as the tailnet peers carrying the node tag.
type tailnetPart struct {
	client   localapi.LocalAPI
	adv      *localapi.Advertiser
	metrics  *localapi.Metrics
	discover bool
	trig     *reconcile.Trigger
	loop     *reconcile.Loop

	mu     sync.Mutex
	status localapi.Status
	routes map[netip.Addr][]netip.Prefix // nil until first read
	peers  []localapi.Peer
	err    string
}

func newTailnetPart(cfg Config, reg prometheus.Registerer, rm *reconcile.Metrics, d *Daemon) (*tailnetPart, error) {
	if cfg.TailscaleSocket == "" {
		return nil, nil
	}
	m, err := localapi.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	c := localapi.NewLocalClient(cfg.TailscaleSocket)
	t := &tailnetPart{
		client: c, metrics: m, discover: cfg.DiscoverPeers, trig: reconcile.NewTrigger(),
		adv: &localapi.Advertiser{Client: c, Log: cfg.Log.With("component", "tailnet"), Metrics: m},
	}
	// Peers' routes change when the control server approves them: poll
	// them more often than the full resync.
	t.loop = &reconcile.Loop{Name: "tailnet", Trigger: t.trig, Resync: 2 * time.Second, MaxBackoff: 10 * time.Second,
		Log: cfg.Log, Metrics: rm, Fn: func(ctx context.Context) error { return t.reconcile(ctx, d) }}
	return t, nil
}

func (t *tailnetPart) reconcile(ctx context.Context, d *Daemon) error {
	st, self := d.current()
	own, _, _ := d.cluster.blocks(self)
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
		d.routeTrig.Poke()
	}
	if peersChanged {
		d.bgpTrig.Poke()
	}
	return nil
}

func (t *tailnetPart) setErr(err error) {
	t.mu.Lock()
	t.err = err.Error()
	t.mu.Unlock()
}

// check returns why Tailscale would not forward p to nextHop ("" if it
// would, or if the peers' routes are not known yet).
func (t *tailnetPart) check(overlay netip.Prefix) func(p netip.Prefix, nh netip.Addr) string {
	if t == nil {
		return nil
	}
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
// the discovered tailnet peers, when discovery is on and has run.
func (t *tailnetPart) speaker(self *desired.Node, sp desired.Speaker) desired.Speaker {
	if t == nil || !t.discover {
		return sp
	}
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

func (t *tailnetPart) statusCopy() *TailnetStatus {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return &TailnetStatus{Status: t.status, Discovered: t.peers, Error: t.err}
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
