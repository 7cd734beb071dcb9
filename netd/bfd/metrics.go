package bfd

// Metrics: the Server's Prometheus collector (packets sent and dropped,
// and per peer the session's state, downs and changes, from States).

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	s                                *Server
	sent, dropped                    prometheus.Counter
	up, downs, changes, state, never *prometheus.Desc
}

func newMetrics(s *Server) *metrics {
	return &metrics{
		s: s,
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "netd_bfd_packets_sent_total", Help: "BFD control packets sent.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "netd_bfd_packets_dropped_total", Help: "BFD packets received and dropped (bad TTL, malformed, unknown session).",
		}),
		up:      prometheus.NewDesc("netd_bfd_session_up", "1 if the BFD session with the peer is up and admitted.", []string{"peer"}, nil),
		downs:   prometheus.NewDesc("netd_bfd_session_downs_total", "Transitions of the BFD session from up to down since netd started.", []string{"peer"}, nil),
		changes: prometheus.NewDesc("netd_bfd_state_changes_total", "State changes of the BFD session (any state to any other) since it started.", []string{"peer"}, nil),
		state:   prometheus.NewDesc("netd_bfd_session_state", "The BFD session's state as RFC 5880 numbers it: 0 admindown, 1 down, 2 init, 3 up.", []string{"peer"}, nil),
		never:   prometheus.NewDesc("netd_bfd_session_never_up", "1 if the BFD session has not come up since it started, WarnAfter (30s) ago or more: UDP 3784 is likely dropped on the way.", []string{"peer"}, nil),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.sent.Describe(ch)
	m.dropped.Describe(ch)
	ch <- m.up
	ch <- m.downs
	ch <- m.changes
	ch <- m.state
	ch <- m.never
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.sent.Collect(ch)
	m.dropped.Collect(ch)
	for _, p := range m.s.States() {
		v := 0.0
		if p.Admitted {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(m.up, prometheus.GaugeValue, v, p.Peer.String())
		ch <- prometheus.MustNewConstMetric(m.downs, prometheus.CounterValue, float64(p.Downs), p.Peer.String())
		ch <- prometheus.MustNewConstMetric(m.changes, prometheus.CounterValue, float64(p.Changes), p.Peer.String())
		ch <- prometheus.MustNewConstMetric(m.state, prometheus.GaugeValue, float64(stateNumber(p.State)), p.Peer.String())
		never := 0.0
		if p.Warning != "" {
			never = 1
		}
		ch <- prometheus.MustNewConstMetric(m.never, prometheus.GaugeValue, never, p.Peer.String())
	}
}
