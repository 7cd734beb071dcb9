// Package daemon wires netd's per-node daemon by hand: it loads the policy,
// runs the BGP reconciler (embedded speaker, own pod blocks), the route
// reconciler (learned best paths to kernel routes with MTU), the LAN path
// prober and the status and metrics servers in one context tree, reloads the
// policy on SIGHUP or file change (keeping the last good state when the new
// file is broken), and stops within a bound on SIGTERM.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/vishvananda/netns"
	"golang.org/x/sync/errgroup"

	"github.com/ducksnest/netd/bgp"
	"github.com/ducksnest/netd/netd/bfd"
	"github.com/ducksnest/netd/netd/probe"
	"github.com/ducksnest/netd/netd/reconcile"
	"github.com/ducksnest/netd/netd/routes"
	"github.com/ducksnest/netd/netd/routes/nl"
	"github.com/ducksnest/netd/policy/desired"
)

// StopMode says what netd does to its BGP sessions when it stops.
type StopMode string

// Stop modes.
const (
	// StopWithdraw closes the sessions so peers withdraw this node's blocks
	// at once: for a node leaving the cluster.
	StopWithdraw StopMode = "withdraw"
	// StopGraceful stops without a NOTIFICATION so that peers keep this
	// node's routes as stale (graceful restart) until it comes back: for a
	// restart.
	StopGraceful StopMode = "graceful"
)

// Config is what `netd run` passes in.
type Config struct {
	PolicyPath  string
	Node        string
	SocketPath  string // unix socket for `netd status` ("" = none)
	MetricsAddr string // /metrics /healthz /readyz /status ("" = none)
	Resync      time.Duration
	StopMode    StopMode
	StopTimeout time.Duration
	FlushOnExit bool // remove netd's routes and rule on exit
	// StateDir keeps what must survive a restart: the marker that the last
	// stop was graceful ("" = none).
	StateDir string
	// Kubeconfig connects to the cluster: pod blocks and peer block
	// ownership then come from Calico IPAM ("" = the policy's static blocks).
	Kubeconfig string
	// SyncCalico competes for the Lease and, while holding it, keeps the
	// Calico objects equal to the policy (needs Kubeconfig).
	SyncCalico bool
	// TailscaleSocket is tailscaled's LocalAPI socket: advertised routes,
	// the route check and peer discovery ("" = off).
	TailscaleSocket string
	// DiscoverPeers takes the BGP node peers from the tailnet (peers with
	// the policy's node tag) instead of the policy's list.
	DiscoverPeers bool
	// GRPCAddr serves GoBGP's gRPC API for the gobgp CLI on this loopback
	// address ("" = off).
	GRPCAddr string
	// BFD configures fast failure detection of the BGP peers.
	BFD BFDConfig
	// Reload is poked on SIGHUP.
	Reload <-chan struct{}
	Log    *slog.Logger
	// Registry receives every metric; nil makes a new one.
	Registry *prometheus.Registry
	// Kernel overrides the netlink handle (tests).
	Kernel nl.Kernel
}

// Daemon is one running netd.
type Daemon struct {
	cfg     Config
	log     *slog.Logger
	reg     *prometheus.Registry
	speaker *bgp.Speaker
	routes  *routes.Reconciler
	prober  *probe.Prober
	bfd     *bfd.Server // nil if BFD is off
	links   *linkFinder
	notify  *notifier
	cluster *cluster     // nil without a kubeconfig
	ts      *tailnetPart // nil without a tailscaled socket

	bgpTrig, routeTrig *reconcile.Trigger
	bgpLoop, routeLoop *reconcile.Loop

	policyErrors prometheus.Counter

	mu         sync.Mutex
	state      *desired.State
	self       *desired.Node
	loadedAt   time.Time
	policyErr  string
	planned    []PlannedRoute
	unroutable []Unroutable
	ready      atomic.Bool

	// Owned by the route loop.
	leftovers     map[netip.Prefix]routes.Route
	leftoversDone bool
}

// New builds the daemon from its config: everything is wired here, by hand.
func New(cfg Config) (*Daemon, error) {
	if cfg.Log == nil {
		return nil, errors.New("daemon: no logger")
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 30 * time.Second
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 5 * time.Second
	}
	if cfg.StopMode == "" {
		cfg.StopMode = StopWithdraw
	}
	st, err := loadPolicy(cfg.PolicyPath)
	if err != nil {
		return nil, fmt.Errorf("loading policy: %w", err)
	}
	self, err := st.Node(cfg.Node)
	if err != nil {
		return nil, err
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	k := cfg.Kernel
	if k == nil {
		// The kernel reports every failed route message whether or not it
		// was asked for an ACK; asking only on the last message of each
		// batch saves one reply per route (see BenchmarkInstall).
		if k, err = nl.Open(netns.None(), nl.Options{AckErrorsOnly: true}); err != nil {
			return nil, fmt.Errorf("opening netlink: %w", err)
		}
	}
	rm, err := reconcile.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	rt, err := routes.New(k, routesConfig(st), cfg.Log.With("component", "routes"), reg)
	if err != nil {
		return nil, fmt.Errorf("route reconciler: %w", err)
	}
	pr, err := probe.New(cfg.Log.With("component", "probe"), reg, probe.Options{})
	if err != nil {
		return nil, err
	}
	d := &Daemon{
		cfg:     cfg,
		log:     cfg.Log,
		reg:     reg,
		speaker: bgp.New(cfg.Log.With("component", "bgp"), reg, speakerOptions(cfg)...),
		routes:  rt,
		prober:  pr,
		links:   newLinkFinder(),
		notify:  newNotifier(),
		policyErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "netd_policy_reload_errors_total",
			Help: "Policy reloads rejected because the new file was invalid.",
		}),
		bgpTrig:   reconcile.NewTrigger(),
		routeTrig: reconcile.NewTrigger(),
		state:     st,
		self:      self,
		loadedAt:  time.Now(),
	}
	if err := reg.Register(d.policyErrors); err != nil {
		return nil, err
	}
	if restart, hops := d.restarting(rt, self); restart {
		d.speaker.MarkRestarting(hops...)
	}
	if d.bfd, err = newBFD(cfg, self, d.speaker, reg); err != nil {
		return nil, err
	}
	if d.cluster, err = newCluster(cfg, reg, rm, d.current); err != nil {
		return nil, err
	}
	if d.ts, err = newTailnetPart(cfg, reg, rm, d); err != nil {
		return nil, err
	}
	d.bgpLoop = &reconcile.Loop{Name: "bgp", Fn: d.reconcileBGP, Trigger: d.bgpTrig, Resync: cfg.Resync,
		Log: cfg.Log, Metrics: rm}
	d.routeLoop = &reconcile.Loop{Name: "routes", Fn: d.reconcileRoutes, Trigger: d.routeTrig, Resync: cfg.Resync,
		Log: cfg.Log, Metrics: rm}
	return d, nil
}

func routesConfig(st *desired.State) routes.Config {
	return routes.Config{Protocol: st.Routing.Protocol, Table: st.Routing.Table, RulePriority: st.Routing.RulePriority}
}

// current returns the last good state and this node in it.
func (d *Daemon) current() (*desired.State, *desired.Node) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state, d.self
}

// Run runs the daemon until ctx is done, then stops within StopTimeout.
func (d *Daemon) Run(ctx context.Context) error {
	st, self := d.current()
	d.log.Info("netd starting", "node", self.Name, "policy", d.cfg.PolicyPath, "digest", st.Digest,
		"overlay", st.Overlay.Interface, "listen", self.BGP.ListenAddr)
	srv, err := d.listen()
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error { return d.bgpLoop.Run(gctx) })
	g.Go(func() error { return d.routeLoop.Run(gctx) })
	g.Go(func() error { return d.prober.Run(gctx) })
	if d.bfd != nil {
		g.Go(func() error { return d.bfd.Run(gctx) })
	}
	if d.cluster != nil {
		g.Go(func() error { return d.cluster.affinity.Run(gctx) })
		g.Go(func() error { return d.cluster.runLeader(gctx, self.Name) })
	}
	if d.ts != nil {
		g.Go(func() error { return d.ts.loop.Run(gctx) })
	}
	g.Go(func() error { return d.forwardChanges(gctx) })
	g.Go(func() error { return d.reloadLoop(gctx) })
	g.Go(func() error { return d.readiness(gctx) })
	g.Go(func() error { return srv.serve(gctx) })
	g.Go(func() error {
		return watchPolicy(gctx, d.log, d.cfg.PolicyPath, d.reloadPolicy)
	})
	<-gctx.Done()
	// gctx is done either because ctx was cancelled (SIGTERM) or because a
	// goroutine failed; stop everything and keep the first error.
	cancel()
	runErr := g.Wait()
	stopErr := d.stop()
	return errors.Join(runErr, stopErr)
}

// stop withdraws (or keeps, for graceful restart) within StopTimeout.
func (d *Daemon) stop() error {
	_ = d.notify.Notify("STOPPING=1")
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.StopTimeout)
	defer cancel()
	graceful := d.cfg.StopMode == StopGraceful
	var errs []error
	if err := d.speaker.Stop(ctx, graceful); err != nil {
		errs = append(errs, fmt.Errorf("stopping bgp: %w", err))
	}
	if graceful && !d.cfg.FlushOnExit {
		if err := putGracefulMarker(d.cfg.StateDir); err != nil {
			errs = append(errs, err)
		}
	}
	if d.cfg.FlushOnExit {
		if err := d.routes.RemoveAll(ctx); err != nil {
			errs = append(errs, fmt.Errorf("removing routes: %w", err))
		}
	}
	d.log.Info("netd stopped", "mode", d.cfg.StopMode, "flushed", d.cfg.FlushOnExit)
	return errors.Join(errs...)
}

// forwardChanges turns speaker and prober events into route runs.
func (d *Daemon) forwardChanges(ctx context.Context) error {
	var affinityChanges <-chan struct{} // nil: never ready
	if d.cluster != nil {
		affinityChanges = d.cluster.affinity.Changes()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.speaker.Changes():
			d.routeTrig.Poke()
		case <-affinityChanges:
			d.bgpTrig.Poke()
		case <-d.prober.Changes():
			d.routeTrig.Poke()
		}
	}
}

// reconcileBGP makes the speaker match this node's desired state and its
// own pod blocks, and points the prober at the LAN peers.
func (d *Daemon) reconcileBGP(ctx context.Context) error {
	_, self := d.current()
	own, spk, _ := d.cluster.blocks(self)
	spk = d.ts.speaker(self, spk)
	var targets []probe.Target
	if self.LANAddr.IsValid() {
		for _, p := range self.BGP.Peers {
			if p.Kind == desired.PeerNode && p.Site == self.Site && p.LANAddr.IsValid() {
				targets = append(targets, probe.Target{Name: p.Name, Addr: p.LANAddr})
			}
		}
	}
	d.prober.SetTargets(self.LANAddr, targets)
	if d.bfd != nil {
		n := *self
		n.BGP = spk
		d.bfd.SetPeers(bfdPeers(&n))
	}
	err := d.speaker.Reconcile(ctx, spk, own)
	d.routeTrig.Poke()
	if d.ts != nil {
		d.ts.trig.Poke() // the advertised routes follow the own blocks
	}
	return err
}

// ownBlocks is the static pod CIDR source: the node's blocks from the policy.
func ownBlocks(self *desired.Node) []netip.Prefix {
	return append([]netip.Prefix(nil), self.PodCIDRs...)
}

// reconcileRoutes installs the learned best paths and removes withdrawn
// ones, keeping routes adopted from a previous run until BGP is synced.
func (d *Daemon) reconcileRoutes(ctx context.Context) error {
	st, self := d.current()
	lanDev := ""
	if self.LANAddr.IsValid() {
		dev, err := d.links.byAddr(self.LANAddr)
		if err != nil {
			d.log.Debug("lan device not found", "addr", self.LANAddr, "err", err)
		}
		lanDev = dev
	}
	learned := d.speaker.Learned()
	in := planInput{State: st, Self: self, LANDev: lanDev, LANUp: d.prober.Up, Learned: make([]Learned, 0, len(learned)),
		Check: d.ts.check(st.Networks.Overlay)}
	for _, l := range learned {
		in.Learned = append(in.Learned, Learned{Prefix: l.Prefix, NextHops: l.NextHops})
	}
	planned, bad := Plan(in)
	want := make([]routes.Route, len(planned))
	for i := range planned {
		want[i] = planned[i].Route
	}
	d.mu.Lock()
	d.planned, d.unroutable = planned, bad
	d.mu.Unlock()
	want, err := d.withLeftovers(ctx, want)
	if err != nil {
		return err
	}
	_, err = d.routes.Reconcile(ctx, want, true)
	return err
}

// withLeftovers keeps, until BGP is synced, the routes a previous netd left
// in the kernel that no peer has re-announced yet: a restart must not drop
// pod traffic before the peers have sent End-of-RIB (or the bound passed).
// Routes this process installed itself and that are withdrawn later are
// removed at once.
func (d *Daemon) withLeftovers(ctx context.Context, want []routes.Route) ([]routes.Route, error) {
	if d.leftoversDone {
		return want, nil
	}
	if d.leftovers == nil {
		have, err := d.routes.Installed(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading leftover routes: %w", err)
		}
		d.leftovers = map[netip.Prefix]routes.Route{}
		for _, r := range have {
			d.leftovers[r.Dst] = r
		}
		if len(have) > 0 {
			d.log.Info("adopted routes from a previous run; kept until bgp is synced", "routes", len(have))
		}
	}
	if d.speaker.Synced() {
		d.leftoversDone, d.leftovers = true, nil
		return want, nil
	}
	wanted := make(map[netip.Prefix]bool, len(want))
	for _, r := range want {
		wanted[r.Dst] = true
	}
	for p, r := range d.leftovers {
		if wanted[p] {
			// Re-announced: from now on it lives and dies with BGP.
			delete(d.leftovers, p)
			continue
		}
		want = append(want, r)
	}
	return want, nil
}

// reloadLoop reloads on SIGHUP.
func (d *Daemon) reloadLoop(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.cfg.Reload:
			d.reloadPolicy()
		}
	}
}

// reloadPolicy loads the policy file again. A broken file, or one that no
// longer names this node, is rejected whole: the last good state stays.
func (d *Daemon) reloadPolicy() {
	_ = d.notify.Notify("RELOADING=1")
	defer func() { _ = d.notify.Notify("READY=1") }()
	st, err := loadPolicy(d.cfg.PolicyPath)
	var self *desired.Node
	if err == nil {
		self, err = st.Node(d.cfg.Node)
	}
	if err == nil {
		old, _ := d.current()
		if old.Routing != st.Routing {
			err = fmt.Errorf("routing protocol/table/rule changed (%+v -> %+v): restart netd to apply", old.Routing, st.Routing)
		}
	}
	d.mu.Lock()
	if err != nil {
		d.policyErr = err.Error()
		d.mu.Unlock()
		d.policyErrors.Inc()
		d.log.Error("policy reload rejected; keeping the last good policy", "policy", d.cfg.PolicyPath, "err", err)
		return
	}
	changed := st.Digest != d.state.Digest
	d.state, d.self, d.policyErr, d.loadedAt = st, self, "", time.Now()
	d.mu.Unlock()
	if changed {
		d.log.Info("policy reloaded", "digest", st.Digest)
	}
	d.bgpTrig.Poke()
	d.routeTrig.Poke()
	if d.cluster != nil {
		d.cluster.trig.Poke()
	}
	if d.ts != nil {
		d.ts.trig.Poke()
	}
}

// readiness tells systemd we are up once both reconcilers have succeeded
// once, and pets the watchdog while they keep running.
func (d *Daemon) readiness(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	wd := WatchdogInterval()
	var lastPet time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		b, r := d.bgpLoop.Status(), d.routeLoop.Status()
		if !d.ready.Load() && !b.LastOK.IsZero() && !r.LastOK.IsZero() {
			d.ready.Store(true)
			_ = d.notify.Notify("READY=1")
			d.log.Info("netd ready")
		}
		if wd > 0 && time.Since(lastPet) >= wd && d.alive() {
			_ = d.notify.Notify("WATCHDOG=1")
			lastPet = time.Now()
		}
	}
}

// alive reports whether both loops ran recently: a wedged loop stops the
// watchdog pets and systemd restarts netd.
func (d *Daemon) alive() bool {
	limit := 2*d.cfg.Resync + 10*time.Second
	for _, s := range []reconcile.Status{d.bgpLoop.Status(), d.routeLoop.Status()} {
		if s.LastRun.IsZero() || time.Since(s.LastRun) > limit {
			return false
		}
	}
	return true
}
