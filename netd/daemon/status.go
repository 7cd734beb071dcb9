package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ducksnest/netd/bgp"
	"github.com/ducksnest/netd/netd/probe"
	"github.com/ducksnest/netd/netd/reconcile"
	"github.com/ducksnest/netd/netd/routes"
	"github.com/ducksnest/netd/netd/tailnetsync"
)

// Status is what `netd status` shows: readable by a person, and as JSON.
type Status struct {
	Node       string                `json:"node"`
	Ready      bool                  `json:"ready"`
	Synced     bool                  `json:"synced"`
	Policy     PolicyStatus          `json:"policy"`
	BGP        bgp.Status            `json:"bgp"`
	Advertised []netip.Prefix        `json:"advertised"`
	Desired    []routes.PlannedRoute `json:"desiredRoutes"`
	Unroutable []routes.Unroutable   `json:"unroutable,omitempty"`
	Installed  []routes.Route        `json:"installedRoutes"`
	Drift      routes.Drift          `json:"drift"`
	LANPaths   []probe.TargetStatus  `json:"lanPaths,omitempty"`
	// PodSource says where the advertised blocks come from: the policy,
	// or Calico IPAM.
	PodSource string         `json:"podSource"`
	Cluster   *ClusterStatus `json:"cluster,omitempty"`
	Tailnet   *TailnetStatus `json:"tailnet,omitempty"`
	// BFD is every BFD session (nil: netd runs without BFD).
	BFD *BFDStatus `json:"bfd,omitempty"`
	// TailnetPolicy is the tailnet policy writer's section (with tailnet
	// credentials only).
	TailnetPolicy *tailnetsync.Status `json:"tailnetPolicy,omitempty"`
	Reconcilers   []reconcile.Status  `json:"reconcilers"`
}

// PolicyStatus says which policy is applied and whether the last reload
// was rejected.
type PolicyStatus struct {
	Path      string    `json:"path"`
	Digest    string    `json:"digest"`
	LoadedAt  time.Time `json:"loadedAt"`
	LastError string    `json:"lastError,omitempty"`
}

// Status collects the daemon's status.
func (d *Daemon) Status(ctx context.Context) (Status, error) {
	_, self := d.policy.current()
	s := Status{
		Node:   self.Name,
		Ready:  d.ready.Load(),
		Policy: d.policy.status(d.cfg.PolicyPath),
	}
	s.Desired, s.Unroutable = d.install.Planned()
	s.Advertised, _, s.PodSource = d.blocks.blocks(self)
	for _, report := range d.reports {
		report(&s)
	}
	s.Synced = d.speaker.Synced()
	s.LANPaths = d.prober.Status()
	s.Reconcilers = []reconcile.Status{d.bgpLoop.Status(), d.routeLoop.Status()}
	var errs []error
	var err error
	if s.BGP, err = d.speaker.Status(ctx); err != nil {
		errs = append(errs, fmt.Errorf("bgp status: %w", err))
	}
	if s.Installed, err = d.routes.Installed(ctx); err != nil {
		errs = append(errs, fmt.Errorf("reading routes: %w", err))
	}
	want := make([]routes.Route, len(s.Desired))
	for i := range s.Desired {
		want[i] = s.Desired[i].Route
	}
	if s.Drift, err = d.routes.Drift(ctx, want); err != nil {
		errs = append(errs, fmt.Errorf("computing drift: %w", err))
	}
	return s, errors.Join(errs...)
}

// servers are the HTTP endpoints: metrics and probes on a TCP address, and
// the status API on a unix socket.
type servers struct {
	d         *Daemon
	listeners []net.Listener
	socket    string
}

func (d *Daemon) listen() (*servers, error) {
	s := &servers{d: d}
	if d.cfg.MetricsAddr != "" {
		l, err := net.Listen("tcp", d.cfg.MetricsAddr)
		if err != nil {
			return nil, fmt.Errorf("listening on %s: %w", d.cfg.MetricsAddr, err)
		}
		s.listeners = append(s.listeners, l)
	}
	if d.cfg.SocketPath != "" {
		_ = os.Remove(d.cfg.SocketPath)
		l, err := net.Listen("unix", d.cfg.SocketPath)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("listening on %s: %w", d.cfg.SocketPath, err)
		}
		if err := os.Chmod(d.cfg.SocketPath, 0o660); err != nil {
			s.close()
			return nil, fmt.Errorf("chmod %s: %w", d.cfg.SocketPath, err)
		}
		s.listeners = append(s.listeners, l)
		s.socket = d.cfg.SocketPath
	}
	return s, nil
}

func (s *servers) close() {
	for _, l := range s.listeners {
		l.Close()
	}
	if s.socket != "" {
		_ = os.Remove(s.socket)
	}
}

func (s *servers) handler() http.Handler {
	d := s.d
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{Registry: d.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !d.alive() && d.ready.Load() {
			http.Error(w, "reconcile loops stalled", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !d.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		st, err := d.Status(r.Context())
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			w.Header().Set("X-Netd-Status-Error", err.Error())
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
	})
	return mux
}

func (s *servers) serve(ctx context.Context) error {
	if len(s.listeners) == 0 {
		<-ctx.Done()
		return nil
	}
	// IdleTimeout: a client that keeps connections alive and forgets
	// them (a script, a scraper gone) must not hold them open forever.
	srv := &http.Server{Handler: s.handler(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	errc := make(chan error, len(s.listeners))
	for _, l := range s.listeners {
		go func() { errc <- srv.Serve(l) }()
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			s.close()
			return fmt.Errorf("http server: %w", err)
		}
	}
	shut, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = srv.Shutdown(shut)
	s.close()
	return nil
}
