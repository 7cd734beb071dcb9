package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"github.com/prometheus/client_golang/prometheus"
)

// Status is the speaker's state for `netd status` and metrics.
type Status struct {
	Running    bool           `json:"running"`
	ASN        uint32         `json:"asn"`
	RouterID   netip.Addr     `json:"routerID,omitzero"`
	Peers      []PeerStatus   `json:"peers"` // in configuration order
	Advertised []netip.Prefix `json:"advertised"`
	Synced     bool           `json:"synced"`
}

// PeerStatus is one peer's session and counters.
type PeerStatus struct {
	Name    string     `json:"name"`
	Address netip.Addr `json:"address"`
	ASN     uint32     `json:"asn"`
	// State is the BGP FSM state in lower case ("established", "active", ...).
	State string `json:"state"`
	// Uptime is how long the session has been established (0 if not).
	Uptime time.Duration `json:"uptime"`
	// Received paths in the Adj-RIB-In (before the import filter), of which
	// Accepted passed it; Rejected counts the others by reason.
	Received int            `json:"received"`
	Accepted int            `json:"accepted"`
	Rejected map[string]int `json:"rejected,omitempty"`
	// Advertised is the number of paths sent to the peer.
	Advertised int    `json:"advertised"`
	LastError  string `json:"lastError,omitempty"`
}

// Status returns per-peer state and the advertised prefixes.
func (s *Speaker) Status(ctx context.Context) (Status, error) {
	if !s.lock(ctx) {
		return Status{}, fmt.Errorf("reading bgp status: %w", ctx.Err())
	}
	srv, cfg := s.srv, s.cfg
	s.unlock()
	st := Status{Synced: s.Synced()}
	if srv == nil {
		return st, nil
	}
	st.Running, st.ASN, st.RouterID = true, cfg.ASN, cfg.RouterID
	live := map[netip.Addr]*api.Peer{}
	if err := srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		if a, err := netip.ParseAddr(p.GetConf().GetNeighborAddress()); err == nil {
			live[a] = p
		}
	}); err != nil {
		return st, fmt.Errorf("listing bgp peers: %w", err)
	}
	// GoBGP's per-family Advertised counter also counts the End-of-RIB
	// marker; the Adj-RIB-Out is what the peer has.
	adv := map[netip.Addr]int{}
	for a, p := range live {
		if p.GetState().GetSessionState() == api.PeerState_ESTABLISHED {
			adv[a] = countAdjOut(ctx, srv, a)
		}
	}
	s.st.mu.Lock()
	for _, c := range cfg.Peers {
		ps := PeerStatus{Name: c.Name, Address: c.Address, ASN: c.ASN, State: "unknown"}
		if p := live[c.Address]; p != nil {
			ps.State = strings.ToLower(p.GetState().GetSessionState().String())
			if up := p.GetTimers().GetState().GetUptime(); up != nil && ps.State == "established" {
				ps.Uptime = time.Since(up.AsTime()).Truncate(time.Second)
			}
		}
		ps.Advertised = adv[c.Address]
		if rt := s.st.peers[c.Address]; rt != nil {
			ps.Received, ps.Accepted, ps.LastError = rt.received, rt.accepted, rt.lastErr
			ps.Rejected = map[string]int{}
			for r, n := range rt.rejected {
				ps.Rejected[r] = n
			}
		}
		st.Peers = append(st.Peers, ps)
	}
	s.st.mu.Unlock()
	err := srv.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: familyIPv4}, func(d *api.Destination) {
		for _, p := range d.Paths {
			if isLocal(p) {
				if pfx, err := netip.ParsePrefix(d.Prefix); err == nil {
					st.Advertised = append(st.Advertised, pfx)
				}
				return
			}
		}
	})
	slices.SortFunc(st.Advertised, comparePrefix)
	if err != nil {
		return st, fmt.Errorf("listing advertised paths: %w", err)
	}
	return st, nil
}

func countAdjOut(ctx context.Context, srv *server.BgpServer, a netip.Addr) int {
	n := 0
	_ = srv.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_ADJ_OUT, Name: a.String(), Family: familyIPv4}, func(d *api.Destination) {
		for _, p := range d.Paths {
			if !p.IsWithdraw {
				n++
				return
			}
		}
	})
	return n
}

// metrics is the Speaker's Prometheus collector: gauges read from Status
// at scrape time, plus the rejected-paths counter.
type metrics struct {
	s                                                   *Speaker
	rejected                                            *prometheus.CounterVec
	cutOff, held                                        *prometheus.CounterVec
	restartReasserted, restartReassertWaits             prometheus.Counter
	idleHoldCut                                         prometheus.Counter
	up, received, accepted, advertised, learned, synced *prometheus.Desc
}

func newMetrics(s *Speaker) *metrics {
	return &metrics{
		s: s,
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "netd_bgp_prefixes_rejected_total",
			Help: "Paths received from a peer and rejected by its import filter, by reason.",
		}, []string{"peer", "reason"}),
		cutOff: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "netd_bgp_peer_cutoffs_total",
			Help: "Times a peer's routes were dropped because a failure detector (BFD) found it unreachable while its session was up.",
		}, []string{"peer"}),
		restartReasserted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "netd_bgp_restart_bit_reasserted_total",
			Help: "Peers re-added with the graceful restart R-bit after GoBGP cleared it before they came up.",
		}),
		held: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "netd_bgp_stale_paths_held_total",
			Help: "Times GoBGP dropped a restarting peer's stale paths after a failed session attempt and netd kept them for the rest of its restart time.",
		}, []string{"peer"}),
		restartReassertWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "netd_bgp_restart_bit_reassert_waits_total",
			Help: "Times a peer that needed the graceful restart R-bit again was left alone because a connection with it was being opened.",
		}),
		idleHoldCut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "netd_bgp_idle_hold_cut_total",
			Help: "Dropped sessions whose GoBGP idle hold (5 s) netd cut to 1 s, so a restarted peer is accepted sooner.",
		}),
		up:         prometheus.NewDesc("netd_bgp_peer_up", "1 if the BGP session with the peer is established.", []string{"peer"}, nil),
		received:   prometheus.NewDesc("netd_bgp_prefixes_received", "Paths in the peer's Adj-RIB-In, before the import filter.", []string{"peer"}, nil),
		accepted:   prometheus.NewDesc("netd_bgp_prefixes_accepted", "Paths from the peer accepted by its import filter.", []string{"peer"}, nil),
		advertised: prometheus.NewDesc("netd_bgp_prefixes_advertised", "Paths advertised to the peer.", []string{"peer"}, nil),
		learned:    prometheus.NewDesc("netd_bgp_learned_routes", "Destinations learned from peers (best paths).", nil, nil),
		synced:     prometheus.NewDesc("netd_bgp_synced", "1 if every peer has sent End-of-RIB or timed out.", nil, nil),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.rejected.Describe(ch)
	m.cutOff.Describe(ch)
	m.held.Describe(ch)
	m.restartReasserted.Describe(ch)
	m.restartReassertWaits.Describe(ch)
	m.idleHoldCut.Describe(ch)
	for _, d := range []*prometheus.Desc{m.up, m.received, m.accepted, m.advertised, m.learned, m.synced} {
		ch <- d
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.rejected.Collect(ch)
	m.cutOff.Collect(ch)
	m.held.Collect(ch)
	m.restartReasserted.Collect(ch)
	m.restartReassertWaits.Collect(ch)
	m.idleHoldCut.Collect(ch)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := m.s.Status(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(m.up, err)
		return
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, p := range st.Peers {
		ch <- prometheus.MustNewConstMetric(m.up, prometheus.GaugeValue, b(p.State == "established"), p.Name)
		ch <- prometheus.MustNewConstMetric(m.received, prometheus.GaugeValue, float64(p.Received), p.Name)
		ch <- prometheus.MustNewConstMetric(m.accepted, prometheus.GaugeValue, float64(p.Accepted), p.Name)
		ch <- prometheus.MustNewConstMetric(m.advertised, prometheus.GaugeValue, float64(p.Advertised), p.Name)
	}
	ch <- prometheus.MustNewConstMetric(m.learned, prometheus.GaugeValue, float64(len(m.s.Learned())))
	ch <- prometheus.MustNewConstMetric(m.synced, prometheus.GaugeValue, b(st.Synced))
}
