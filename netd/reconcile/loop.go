package reconcile

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Func reconciles once: read the real state, diff against the desired
// state, apply. It must be safe to repeat.
type Func func(ctx context.Context) error

// Metrics are the run counters shared by all loops of one process.
type Metrics struct {
	runs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers netd_reconcile_runs_total and
// netd_reconcile_duration_seconds on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "netd_reconcile_runs_total",
			Help: "Reconcile runs by reconciler and result (ok or error).",
		}, []string{"reconciler", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "netd_reconcile_duration_seconds",
			Help:    "Duration of reconcile runs.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"reconciler"}),
	}
	for _, c := range []prometheus.Collector{m.runs, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Status is what a loop reports about itself.
type Status struct {
	Name      string    `json:"name"`
	Runs      uint64    `json:"runs"`
	Failures  uint64    `json:"failures"`
	LastRun   time.Time `json:"lastRun,omitzero"`
	LastOK    time.Time `json:"lastOK,omitzero"`
	LastError string    `json:"lastError,omitempty"`
	Duration  string    `json:"duration,omitempty"`
}

// Loop runs one reconciler.
type Loop struct {
	Name    string
	Fn      Func
	Trigger *Trigger
	// Resync is the period of the full resync that catches drift.
	Resync time.Duration
	// MinBackoff and MaxBackoff bound the retry delay after a failure
	// (defaults 100ms and 10s); see Run.
	MinBackoff, MaxBackoff time.Duration
	Log                    *slog.Logger
	Metrics                *Metrics

	mu     sync.Mutex
	status Status
}

// Run calls Fn on every trigger and every Resync until ctx is done.
// Cancellation is not an error.
//
// After a failure it retries with exponential backoff and jitter: the nth
// failure in a row waits a random time in [b/2, b], where b is MinBackoff
// doubled n-1 times, at most MaxBackoff. The jitter keeps nodes that failed
// together (an API server restart) from retrying together. A trigger or
// resync during the wait runs at once; a success resets the backoff.
func (l *Loop) Run(ctx context.Context) error {
	minB, maxB := l.MinBackoff, l.MaxBackoff
	if minB <= 0 {
		minB = 100 * time.Millisecond
	}
	if maxB < minB {
		maxB = 10 * time.Second
	}
	resync := time.NewTicker(l.Resync)
	defer resync.Stop()
	var retry *time.Timer
	var retryC <-chan time.Time
	backoff := minB
	for {
		select {
		case <-ctx.Done():
			if retry != nil {
				retry.Stop()
			}
			return nil
		case <-l.Trigger.C():
		case <-resync.C:
		case <-retryC:
		}
		if err := l.once(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if retry != nil {
				retry.Stop()
			}
			retry = time.NewTimer(jitter(backoff))
			retryC = retry.C
			backoff = min(backoff*2, maxB)
			continue
		}
		backoff = minB
		retryC = nil
	}
}

// jitter returns a random delay in [b/2, b].
func jitter(b time.Duration) time.Duration {
	return b/2 + rand.N(b-b/2+1)
}

func (l *Loop) once(ctx context.Context) error {
	start := time.Now()
	err := l.Fn(ctx)
	d := time.Since(start)
	result := "ok"
	if err != nil {
		result = "error"
	}
	if l.Metrics != nil {
		l.Metrics.runs.WithLabelValues(l.Name, result).Inc()
		l.Metrics.duration.WithLabelValues(l.Name).Observe(d.Seconds())
	}
	l.mu.Lock()
	l.status.Name = l.Name
	l.status.Runs++
	l.status.LastRun = start
	l.status.Duration = d.Round(time.Microsecond).String()
	prev := l.status.LastError
	if err != nil {
		l.status.Failures++
		l.status.LastError = err.Error()
	} else {
		l.status.LastOK = start
		l.status.LastError = ""
	}
	l.mu.Unlock()
	switch {
	case err != nil && ctx.Err() == nil && err.Error() != prev:
		l.Log.Warn("reconcile failed", "reconciler", l.Name, "err", err)
	case err == nil && prev != "":
		l.Log.Info("reconcile recovered", "reconciler", l.Name)
	}
	return err
}

// Status returns a copy of the loop's status.
func (l *Loop) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.status
	s.Name = l.Name
	return s
}

// Healthy reports whether the last run succeeded (or none failed yet).
func (l *Loop) Healthy() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.status.LastError == ""
}
