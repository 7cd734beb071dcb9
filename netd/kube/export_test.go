package kube

import "github.com/prometheus/client_golang/prometheus/testutil"

// LeaseMetricsValues returns netd_lease_held and netd_lease_lost_total of
// one Lease (tests).
func LeaseMetricsValues(m *LeaseMetrics, lease string) (held, lost float64) {
	return testutil.ToFloat64(m.held.WithLabelValues(lease)), testutil.ToFloat64(m.lost.WithLabelValues(lease))
}
