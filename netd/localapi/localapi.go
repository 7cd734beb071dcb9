// Package localapi is netd's client of the local tailscaled, through its
// LocalAPI (tailscale.com/client/local), on every node:
//
//   - Advertiser keeps this node's advertised subnet routes (prefs
//     AdvertiseRoutes) equal to its own pod blocks plus every route the user
//     advertised by hand outside the pod CIDR (those are never removed), and
//     reports which of them the control server has not approved, and which
//     the compiled policy's autoApprovers would not approve;
//   - PeerRoutes and Checker tell whether a route learned over BGP will be
//     forwarded by Tailscale: Tailscale only forwards a destination inside a
//     route its peer carries (PrimaryRoutes/AllowedIPs), so a learned route
//     whose next hop's peer does not carry it is reported and not installed;
//   - DiscoverPeers lists the tailnet peers carrying the node tag, with their
//     Tailscale addresses, as an optional source of BGP peers.
//
// Nodes must run tailscaled with --accept-routes (peers' pod blocks enter
// the WireGuard allowed IPs only then) and --snat-subnet-routes=false
// (the default rewrites pod source addresses to the node's).
package localapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"tailscale.com/client/local"
	"tailscale.com/ipn"
	"tailscale.com/ipn/ipnstate"
	"tailscale.com/types/views"

	"github.com/ducksnest/netd/policy/desired"
)

// LocalAPI is the part of tailscaled's LocalAPI netd uses; *local.Client
// implements it.
type LocalAPI interface {
	GetPrefs(ctx context.Context) (*ipn.Prefs, error)
	EditPrefs(ctx context.Context, mp *ipn.MaskedPrefs) (*ipn.Prefs, error)
	Status(ctx context.Context) (*ipnstate.Status, error)
}

var _ LocalAPI = (*local.Client)(nil)

// NewLocalClient returns a LocalAPI client for the tailscaled socket at
// path ("" = the platform default, /var/run/tailscale/tailscaled.sock).
func NewLocalClient(socket string) *local.Client {
	return &local.Client{Socket: socket, UseSocketOnly: socket != ""}
}

// Status is what one Reconcile found and did.
type Status struct {
	// Advertised is AdvertiseRoutes after the run.
	Advertised []netip.Prefix `json:"advertised"`
	// UserRoutes are advertised routes outside the pod CIDR, kept as is.
	UserRoutes []netip.Prefix `json:"userRoutes,omitempty"`
	Added      []netip.Prefix `json:"added,omitempty"`
	Removed    []netip.Prefix `json:"removed,omitempty"`
	// Unapproved are own blocks the control server does not (yet) serve
	// for this node: not in its AllowedIPs/PrimaryRoutes.
	Unapproved []netip.Prefix `json:"unapproved,omitempty"`
	// NotAutoApproved are own blocks the compiled policy's autoApprovers
	// do not cover for this node's tags: they need a manual approval.
	NotAutoApproved []netip.Prefix `json:"notAutoApproved,omitempty"`
	// AcceptRoutes is the node's --accept-routes; without it peers' pod
	// blocks are not routed into the tunnel.
	AcceptRoutes bool `json:"acceptRoutes"`
	// Tags are this node's tailnet tags.
	Tags []string `json:"tags,omitempty"`
}

// Advertiser keeps AdvertiseRoutes in line with the node's pod blocks.
type Advertiser struct {
	Client  LocalAPI
	Log     *slog.Logger
	Metrics *Metrics // optional
}

// Reconcile makes AdvertiseRoutes = own ∪ (advertised routes outside
// st.Networks.Pods), then reads the node's status to report approval. It
// is level-triggered and safe to repeat; it writes prefs only on a change.
func (a *Advertiser) Reconcile(ctx context.Context, own []netip.Prefix, st *desired.State) (Status, error) {
	log := a.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	prefs, err := a.Client.GetPrefs(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("reading tailscale prefs: %w", err)
	}
	var s Status
	s.AcceptRoutes = prefs.RouteAll
	want := make([]netip.Prefix, 0, len(own)+len(prefs.AdvertiseRoutes))
	for _, p := range own {
		want = append(want, p.Masked())
	}
	pods := st.Networks.Pods
	for _, r := range prefs.AdvertiseRoutes {
		if pods.IsValid() && pods.Overlaps(r) && r.Bits() >= pods.Bits() {
			continue // inside the pod CIDR: ours to manage
		}
		s.UserRoutes = append(s.UserRoutes, r)
		want = append(want, r)
	}
	want = sortPrefixes(want)
	have := sortPrefixes(slices.Clone(prefs.AdvertiseRoutes))
	s.Added, s.Removed = minus(want, have), minus(have, want)
	s.Advertised = have
	if len(s.Added)+len(s.Removed) > 0 {
		np, err := a.Client.EditPrefs(ctx, &ipn.MaskedPrefs{AdvertiseRoutesSet: true, Prefs: ipn.Prefs{AdvertiseRoutes: want}})
		if err != nil {
			return s, fmt.Errorf("setting advertised routes %v: %w", want, err)
		}
		s.Advertised = sortPrefixes(slices.Clone(np.AdvertiseRoutes))
		log.Info("advertised routes changed", "added", s.Added, "removed", s.Removed, "kept", s.UserRoutes)
		a.Metrics.edit()
	}
	ts, err := a.Client.Status(ctx)
	if err != nil {
		return s, fmt.Errorf("reading tailscale status: %w", err)
	}
	served := map[netip.Prefix]bool{}
	if self := ts.Self; self != nil {
		if self.Tags != nil {
			s.Tags = self.Tags.AsSlice()
		}
		for _, p := range slices.Concat(prefixes(self.AllowedIPs), prefixes(self.PrimaryRoutes)) {
			served[p] = true
		}
	}
	for _, p := range own {
		p = p.Masked()
		if !served[p] {
			s.Unapproved = append(s.Unapproved, p)
		}
		if !autoApproved(st.Tailnet.ApprovedRoutes, p, s.Tags) {
			s.NotAutoApproved = append(s.NotAutoApproved, p)
		}
	}
	if len(s.Unapproved) > 0 {
		log.Warn("own pod blocks not approved by the control server: Tailscale will not forward traffic to them",
			"unapproved", s.Unapproved, "notAutoApproved", s.NotAutoApproved)
	}
	a.Metrics.set(s)
	return s, nil
}

// autoApproved reports whether approved (route → approvers) approves p for
// a node with tags. Approvers that are not tags (users, groups) are not
// resolved here: a tagged node is approved by a tag only.
func autoApproved(approved map[netip.Prefix][]string, p netip.Prefix, tags []string) bool {
	for r, who := range approved {
		if r.Bits() <= p.Bits() && r.Contains(p.Addr()) {
			for _, w := range who {
				if slices.Contains(tags, w) {
					return true
				}
			}
		}
	}
	return false
}

func sortPrefixes(ps []netip.Prefix) []netip.Prefix {
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(ps)
}

// minus returns a \ b (both sorted).
func minus(a, b []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range a {
		if !slices.Contains(b, p) {
			out = append(out, p)
		}
	}
	return out
}

// Metrics are the tailnet gauges and counters.
type Metrics struct {
	advertised, unapproved, notAuto, inconsistent prometheus.Gauge
	edits                                         prometheus.Counter
}

// NewMetrics registers the tailnet metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		advertised: prometheus.NewGauge(prometheus.GaugeOpts{Name: "netd_tailnet_advertised_routes",
			Help: "Subnet routes this node advertises to the tailnet (own pod blocks and user routes)."}),
		unapproved: prometheus.NewGauge(prometheus.GaugeOpts{Name: "netd_tailnet_unapproved_routes",
			Help: "Own pod blocks the control server does not serve for this node (traffic to them is dropped)."}),
		notAuto: prometheus.NewGauge(prometheus.GaugeOpts{Name: "netd_tailnet_not_auto_approved_routes",
			Help: "Own pod blocks the compiled policy's autoApprovers do not cover for this node's tags."}),
		inconsistent: prometheus.NewGauge(prometheus.GaugeOpts{Name: "netd_tailnet_inconsistent_routes",
			Help: "Routes learned over BGP whose next hop's Tailscale peer does not carry them (not installed)."}),
		edits: prometheus.NewCounter(prometheus.CounterOpts{Name: "netd_tailnet_route_edits_total",
			Help: "Changes netd made to this node's advertised routes."}),
	}
	for _, c := range []prometheus.Collector{m.advertised, m.unapproved, m.notAuto, m.inconsistent, m.edits} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering tailnet metrics: %w", err)
		}
	}
	return m, nil
}

func (m *Metrics) set(s Status) {
	if m == nil {
		return
	}
	m.advertised.Set(float64(len(s.Advertised)))
	m.unapproved.Set(float64(len(s.Unapproved)))
	m.notAuto.Set(float64(len(s.NotAutoApproved)))
}

func (m *Metrics) edit() {
	if m != nil {
		m.edits.Inc()
	}
}

// SetInconsistent records how many learned routes the Checker refused.
func (m *Metrics) SetInconsistent(n int) {
	if m != nil {
		m.inconsistent.Set(float64(n))
	}
}

func prefixes(v *views.Slice[netip.Prefix]) []netip.Prefix {
	if v == nil {
		return nil
	}
	return v.AsSlice()
}
