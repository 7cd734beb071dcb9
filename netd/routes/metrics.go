package routes

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the route reconciler (netd_routes_*).
type metrics struct {
	runs      *prometheus.CounterVec
	duration  prometheus.Histogram
	writes    *prometheus.CounterVec
	failures  prometheus.Counter
	installed prometheus.Gauge
	kept      prometheus.Gauge
	drift     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "netd_routes_reconcile_runs_total",
			Help: "Route reconciliations, by result (ok or error).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "netd_routes_reconcile_duration_seconds",
			Help:    "Time to read, diff and write netd's routes.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "netd_routes_writes_total",
			Help: "Successful route writes, by operation (add, replace, delete).",
		}, []string{"op"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "netd_routes_write_failures_total",
			Help: "Wanted routes that could not be installed and deletes that failed.",
		}),
		installed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "netd_routes_installed",
			Help: "Routes of netd's protocol in netd's table after the last reconciliation.",
		}),
		kept: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "netd_routes_unwanted_kept",
			Help: "Unwanted routes of netd left in place because pruning was off (adopted leftovers).",
		}),
		drift: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "netd_routes_drift",
			Help: "How far the kernel still differs from the desired routes after the last reconciliation: " +
				"wanted routes not installed, failed deletes, unwanted routes kept, and 1 if netd's rule is not in place.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.runs, m.duration, m.writes, m.failures, m.installed, m.kept, m.drift} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering route metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) observe(res Result, err error, d time.Duration) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.runs.WithLabelValues(result).Inc()
	m.duration.Observe(d.Seconds())
	m.writes.WithLabelValues("add").Add(float64(res.Added))
	m.writes.WithLabelValues("replace").Add(float64(res.Replaced))
	m.writes.WithLabelValues("delete").Add(float64(res.Deleted))
	m.failures.Add(float64(res.Failed))
	m.kept.Set(float64(res.Kept))
}
