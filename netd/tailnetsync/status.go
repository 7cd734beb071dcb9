package tailnetsync

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ducksnest/netd/netd/kube"
	"github.com/ducksnest/netd/netd/reconcile"
)

// Status is the tailnet policy section of `netd status`.
type Status struct {
	// Mode says how the writer is chosen; Writer is the writer as last
	// seen; Leading is set on the writer.
	Mode    string `json:"mode"`
	Writer  string `json:"writer,omitempty"`
	Leading bool   `json:"leading"`
	// RoleError says why no writer can be chosen, or the Lease cannot be
	// read.
	RoleError string `json:"roleError,omitempty"`
	// Target names the control server.
	Target string `json:"target"`
	// Exclusive: the policy says netd owns the tailnet policy outright.
	Exclusive bool `json:"exclusive"`
	// Interval is the re-check period (on the writer: of the running loop).
	Interval string `json:"interval,omitempty"`
	// The rest is set on the writer only.
	InSync bool `json:"inSync"`
	// Version is the live policy's ETag / updatedAt last seen; Digest the
	// policy digest it was last in sync with.
	Version   string    `json:"version,omitempty"`
	Digest    string    `json:"digest,omitempty"`
	LastCheck time.Time `json:"lastCheck,omitzero"`
	LastWrite time.Time `json:"lastWrite,omitzero"`
	Writes    uint64    `json:"writes"`
	// Drift says why the live policy is not the one netd last wrote, since
	// when, and the diff from it to the policy file.
	Drift      string    `json:"drift,omitempty"`
	DriftSince time.Time `json:"driftSince,omitzero"`
	DriftDiff  string    `json:"driftDiff,omitempty"`
	// Blocked says why the policy file is not applied.
	Blocked string `json:"blocked,omitempty"`
	// RouteProblems are the nodes whose pod blocks are not approved subnet
	// routes (RoutesChecked: the routes were read at least once).
	RoutesChecked bool              `json:"routesChecked"`
	RouteProblems []RouteProblem    `json:"routeProblems,omitempty"`
	Error         string            `json:"error,omitempty"`
	Loop          *reconcile.Status `json:"loop,omitempty"`
}

// Status returns the part's status.
func (s *Syncer) Status() Status {
	st := s.cfg.State()
	s.mu.Lock()
	out := s.st
	loop := s.loop
	s.mu.Unlock()
	out.Mode, out.Writer = s.cfg.Role.Mode(), s.cfg.Role.Writer()
	if err := s.cfg.Role.Err(); err != nil {
		out.RoleError = err.Error()
	}
	out.Exclusive, out.Interval = st.Tailnet.Sync.Exclusive, st.Tailnet.Sync.Interval.String()
	if loop != nil && out.Leading {
		ls := loop.Status()
		out.Loop = &ls
		out.Interval = loop.Resync.String() // the running loop's
	}
	return out
}

type metrics struct {
	writer, drift, inSync, unserved prometheus.Gauge
	writes                          prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (metrics, error) {
	m := metrics{
		writer: prometheus.NewGauge(prometheus.GaugeOpts{Name: "netd_tailnet_policy_writer",
			Help: "1 while this netd is the one that writes the tailnet policy."}),
		drift: prometheus.NewGauge(prometheus.GaugeOpts{Name: "netd_tailnet_policy_drift",
			Help: "1 while the live tailnet policy is not the one netd last wrote (edited outside netd); set on the writer."}),
		inSync: prometheus.NewGauge(prometheus.GaugeOpts{Name: "netd_tailnet_policy_in_sync",
			Help: "1 while the live tailnet policy equals the policy file; set on the writer."}),
		unserved: prometheus.NewGauge(prometheus.GaugeOpts{Name: "netd_tailnet_pod_routes_unapproved",
			Help: "Pod blocks of the cluster's nodes that the control server does not serve as approved subnet routes; set on the writer."}),
		writes: prometheus.NewCounter(prometheus.CounterOpts{Name: "netd_tailnet_policy_writes_total",
			Help: "Tailnet policy writes by this netd."}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.writer, m.drift, m.inSync, m.unserved, m.writes} {
		if err := reg.Register(c); err != nil {
			return m, err
		}
	}
	return m, nil
}

// TailnetPolicyRef is what netd's tailnet Events are about: the tailnet
// policy, which is no Kubernetes object (so the Event has no namespace of
// its own and lives in kube.EventNamespace).
func TailnetPolicyRef(policyName string) kube.Ref {
	return kube.Ref{APIVersion: "netd.ducksnest.dev/v1alpha1", Kind: "TailnetPolicy", Name: policyName}
}

// KubeEvents records the part's Events with a kube.Recorder, about the
// tailnet policy of the current policy (Name returns its name).
type KubeEvents struct {
	R    *kube.Recorder
	Name func() string
}

// Event records one Event.
func (k KubeEvents) Event(ctx context.Context, typ, reason, msg string) error {
	return k.R.Event(ctx, TailnetPolicyRef(k.Name()), typ, reason, msg)
}
