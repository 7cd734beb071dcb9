package calico

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the gauges of the Calico objects' drift from the policy,
// netd_calico_drift_objects{state}, as the last Reconcile left it:
// unapplied (planned writes that failed or conflicted), unowned (objects
// without netd's label in the policy's way, left to a person) and pending
// (retired pools waiting for their IPAMBlocks to drain). Only the Lease
// holder reconciles: the others report 0.
type Metrics struct {
	drift *prometheus.GaugeVec
}

// Drift states of netd_calico_drift_objects.
var driftStates = []string{"unapplied", "unowned", "pending"}

// NewMetrics registers the gauges on reg, at 0.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{drift: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "netd_calico_drift_objects",
		Help: "Calico objects that differ from the policy after the last reconciliation, by state (unapplied, unowned, pending).",
	}, []string{"state"})}
	if err := reg.Register(m.drift); err != nil {
		return nil, fmt.Errorf("registering calico metrics: %w", err)
	}
	m.Clear()
	return m, nil
}

// Observe sets the gauges from the outcome of a Reconcile.
func (m *Metrics) Observe(s Status) {
	m.drift.WithLabelValues("unapplied").Set(float64(s.Unapplied))
	m.drift.WithLabelValues("unowned").Set(float64(len(s.Unowned)))
	m.drift.WithLabelValues("pending").Set(float64(len(s.Pending)))
}

// Clear sets the gauges to 0: this instance no longer reconciles.
func (m *Metrics) Clear() {
	for _, st := range driftStates {
		m.drift.WithLabelValues(st).Set(0)
	}
}
