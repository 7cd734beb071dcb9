// Package daemon wires netd's per-node daemon by hand: it loads the policy,
// runs the BGP reconciler (embedded speaker, own pod blocks), the route
// loop (routes.Installer: learned best paths to kernel routes), the LAN
// path prober, the optional parts (Calico, Tailscale, BFD, the tailnet
// policy writer; see parts.go)
// and the status and metrics servers in one context tree, reloads the
// policy on SIGHUP or file change (keeping the last good state when the new
// file is broken), and stops within a bound on SIGTERM. It holds no
// routing or Tailscale logic of its own: each part gets its inputs and the
// triggers it pokes when it is built.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/vishvananda/netns"
	"golang.org/x/sync/errgroup"

	"github.com/ducksnest/netd/acl"
	"github.com/ducksnest/netd/bgp"
	"github.com/ducksnest/netd/netd/buildinfo"
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
	// Tailnet is the control server whose tailnet policy this netd keeps
	// in sync while it is the writer (the netd-tailnet Lease holder with
	// Kubernetes, else the node the policy names); nil: no credentials.
	Tailnet *acl.Target
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
	policy  *policyState
	speaker *bgp.Speaker
	routes  *routes.Reconciler
	install *routes.Installer
	prober  *probe.Prober
	notify  *notifier

	bgpTrig, routeTrig *reconcile.Trigger
	bgpLoop, routeLoop *reconcile.Loop

	// The optional parts (see parts.go): those configured, and what they
	// add to the core, each a default that does nothing until a part
	// replaces it.
	parts   []part
	blocks  blockSource
	peers   peerSource
	overlay overlayCheck
	bfd     peerWatcher
	// onReload are poked after a reload is taken, afterBGP after every
	// BGP run (the advertised routes follow the own blocks).
	onReload, afterBGP []*reconcile.Trigger
	// reports add the optional parts' sections to the status.
	reports []func(*Status)

	policyErrors prometheus.Counter
	policyOK     prometheus.Gauge
	ready        atomic.Bool
}

// NewRegistry returns the registry `netd run` serves on /metrics before
// the daemon adds its own metrics: the Go runtime's (go_*) and the
// process's (process_*).
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
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
		reg = NewRegistry()
	}
	if err := reg.Register(buildinfo.Collector(buildinfo.Get())); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
		return nil, fmt.Errorf("registering netd_build_info: %w", err)
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
	rt, err := routes.New(k, routes.ConfigFor(st.Routing), cfg.Log.With("component", "routes"), reg)
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
		policy:  newPolicyState(st, self),
		speaker: bgp.New(cfg.Log.With("component", "bgp"), reg, speakerOptions(cfg)...),
		routes:  rt,
		prober:  pr,
		notify:  newNotifier(),
		policyErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "netd_policy_reload_errors_total",
			Help: "Policy reloads rejected because the new file was invalid.",
		}),
		policyOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "netd_policy_last_reload_successful",
			Help: "1 if the last policy load was taken, 0 if it was rejected (netd then runs the last good policy).",
		}),
		bgpTrig:   reconcile.NewTrigger(),
		routeTrig: reconcile.NewTrigger(),
		blocks:    policyBlocks{},
		peers:     policyPeers{},
		overlay:   noOverlayCheck{},
		bfd:       noPeerWatcher{},
	}
	d.onReload = []*reconcile.Trigger{d.bgpTrig, d.routeTrig}
	d.afterBGP = []*reconcile.Trigger{d.routeTrig}
	for _, c := range []prometheus.Collector{d.policyErrors, d.policyOK} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	d.policyOK.Set(1)
	if restart, hops := d.restarting(rt, self); restart {
		d.speaker.MarkRestarting(hops...)
	}
	if err := d.addOptionalParts(cfg, self, reg, rm); err != nil {
		return nil, err
	}
	if cfg.Tailnet == nil && cfg.Kubeconfig == "" && st.Tailnet.Sync.Writer == self.Name {
		cfg.Log.Warn("the policy names this node the tailnet policy writer (spec.tailnetSync.writer), but netd has no tailnet credentials: nobody keeps the tailnet policy in sync",
			"node", self.Name)
	}
	d.bgpLoop = &reconcile.Loop{Name: "bgp", Fn: d.reconcileBGP, Trigger: d.bgpTrig, Resync: cfg.Resync,
		Log: cfg.Log, Metrics: rm}
	d.install = routes.NewInstaller(rt, routes.Sources{
		State: d.policy.current, Learned: learnedPaths(d.speaker), Synced: d.speaker.Synced,
		LANUp: d.prober.Up, Check: d.overlay.check,
	}, cfg.Log.With("component", "routes"))
	d.routeLoop = &reconcile.Loop{Name: "routes", Fn: d.install.Sync, Trigger: d.routeTrig, Resync: cfg.Resync,
		Log: cfg.Log, Metrics: rm}
	return d, nil
}

// addOptionalParts builds the parts the config asks for, in the order of
// their inputs (the Tailscale part advertises the blocks the cluster part
// gives), and wires what each adds to the core.
func (d *Daemon) addOptionalParts(cfg Config, self *desired.Node, reg *prometheus.Registry, rm *reconcile.Metrics) error {
	if cfg.BFD.Enabled {
		b, guard, err := newBFD(cfg, d.policy.current, d.speaker, reg)
		if err != nil {
			return err
		}
		d.parts = append(d.parts, b, guard)
		d.bfd = b
		d.reports = append(d.reports, func(s *Status) { s.BFD = bfdStatus(cfg.BFD, b, d.policy.current) })
	}
	if cfg.Kubeconfig != "" {
		c, err := newCluster(cfg, reg, rm, d.policy.current, d.bgpTrig)
		if err != nil {
			return err
		}
		d.parts = append(d.parts, c)
		d.blocks = c
		d.onReload = append(d.onReload, c.trig)
		d.reports = append(d.reports, c.report)
	}
	if cfg.TailscaleSocket != "" {
		t, err := newTailscalePart(cfg, reg, rm, d.policy.current, d.blocks, d.routeTrig, d.bgpTrig)
		if err != nil {
			return err
		}
		d.parts = append(d.parts, t)
		d.overlay = t
		if cfg.DiscoverPeers {
			d.peers = t
		}
		d.onReload = append(d.onReload, t.trig)
		d.afterBGP = append(d.afterBGP, t.trig)
		d.reports = append(d.reports, t.report)
	}
	if cfg.Tailnet != nil {
		s, trigs, err := newTailnetPolicy(cfg, reg, rm, d.policy.current, d.blocks)
		if err != nil {
			return err
		}
		d.parts = append(d.parts, s)
		d.onReload = append(d.onReload, trigs...)
		d.reports = append(d.reports, func(st *Status) {
			ts := s.Status()
			st.TailnetPolicy = &ts
		})
	}
	return nil
}

// learnedPaths returns a func giving the speaker's best paths as the
// route planner takes them.
func learnedPaths(sp *bgp.Speaker) func() []routes.Learned {
	return func() []routes.Learned {
		learned := sp.Learned()
		out := make([]routes.Learned, 0, len(learned))
		for _, l := range learned {
			out = append(out, routes.Learned{Prefix: l.Prefix, NextHops: l.NextHops})
		}
		return out
	}
}

// Run runs the daemon until ctx is done, then stops within StopTimeout.
func (d *Daemon) Run(ctx context.Context) error {
	st, self := d.policy.current()
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
	for _, p := range d.parts {
		g.Go(func() error { return p.Run(gctx) })
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
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.speaker.Changes():
			d.routeTrig.Poke()
		case <-d.prober.Changes():
			d.routeTrig.Poke()
		}
	}
}

// reconcileBGP makes the speaker match this node's desired state and its
// own pod blocks, and points the prober at the LAN peers.
func (d *Daemon) reconcileBGP(ctx context.Context) error {
	_, self := d.policy.current()
	own, spk, _ := d.blocks.blocks(self)
	spk = d.peers.speaker(self, spk)
	var targets []probe.Target
	if self.LANAddr.IsValid() {
		for _, p := range self.BGP.Peers {
			if p.Kind == desired.PeerNode && p.Site == self.Site && p.LANAddr.IsValid() {
				targets = append(targets, probe.Target{Name: p.Name, Addr: p.LANAddr})
			}
		}
	}
	d.prober.SetTargets(self.LANAddr, targets)
	n := *self
	n.BGP = spk
	d.bfd.SetPeers(bfdPeers(&n))
	err := d.speaker.Reconcile(ctx, spk, own)
	for _, t := range d.afterBGP {
		t.Poke()
	}
	return err
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
		old, _ := d.policy.current()
		if old.Routing != st.Routing {
			err = fmt.Errorf("routing protocol/table/rule changed (%+v -> %+v): restart netd to apply", old.Routing, st.Routing)
		}
	}
	if err != nil {
		d.policy.reject(err)
		d.policyErrors.Inc()
		d.policyOK.Set(0)
		d.log.Error("policy reload rejected; keeping the last good policy", "policy", d.cfg.PolicyPath, "err", err)
		return
	}
	d.policyOK.Set(1)
	if d.policy.set(st, self) {
		d.log.Info("policy reloaded", "digest", st.Digest)
	}
	for _, t := range d.onReload {
		t.Poke()
	}
}

// readiness tells systemd we are up once both reconcilers have succeeded
// once, and pets the watchdog while they keep running. It polls the loops
// every readyPoll until ready (start-up only), then wakes only for the
// watchdog (every half pet interval), or not at all without one: an idle
// netd has no timer of its own here.
func (d *Daemon) readiness(ctx context.Context) error {
	wd := WatchdogInterval()
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
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
			// Logged before the notification, so that its time precedes
			// the moment systemd marks the unit active (the systemd lab
			// and the VM test compare the two).
			d.log.Info("netd ready")
			_ = d.notify.Notify("READY=1")
			if os.Getenv("NETD_TRIM") != "0" {
				go trimResident(ctx, d.log)
			}
			if wd <= 0 {
				return nil
			}
			tick.Reset(max(wd/2, readyPoll))
		}
		if wd > 0 && time.Since(lastPet) >= wd && d.alive() {
			_ = d.notify.Notify("WATCHDOG=1")
			lastPet = time.Now()
		}
	}
}

// readyPoll is how often readiness looks at the loops until netd is ready.
const readyPoll = 100 * time.Millisecond

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
