package kube

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// LeaseMetrics are the Lease metrics of one process, by Lease name, shared
// by its electors: netd_lease_held (1 while this instance holds the Lease)
// and netd_lease_lost_total (terms that ended without this instance
// stopping: not renewed within the renew deadline, or taken by another).
// Both series exist from the elector's creation, at 0.
type LeaseMetrics struct {
	held *prometheus.GaugeVec
	lost *prometheus.CounterVec
}

// NewLeaseMetrics registers the Lease metrics on reg.
func NewLeaseMetrics(reg prometheus.Registerer) (*LeaseMetrics, error) {
	m := &LeaseMetrics{
		held: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "netd_lease_held",
			Help: "1 while this instance holds the Lease (and runs what the Lease guards).",
		}, []string{"lease"}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "netd_lease_lost_total",
			Help: "Terms that ended without this instance stopping: the Lease was not renewed in time or was taken by another.",
		}, []string{"lease"}),
	}
	for _, c := range []prometheus.Collector{m.held, m.lost} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering lease metrics: %w", err)
		}
	}
	return m, nil
}

// init creates both series of a Lease at 0, so that a first loss is an
// increase and "nobody holds it" is a sum of zeros, not an absence.
func (m *LeaseMetrics) init(lease string) {
	if m == nil {
		return
	}
	m.held.WithLabelValues(lease).Set(0)
	m.lost.WithLabelValues(lease)
}

func (m *LeaseMetrics) setHeld(lease string, held bool) {
	if m == nil {
		return
	}
	v := 0.0
	if held {
		v = 1
	}
	m.held.WithLabelValues(lease).Set(v)
}

func (m *LeaseMetrics) lostOne(lease string) {
	if m != nil {
		m.lost.WithLabelValues(lease).Inc()
	}
}
