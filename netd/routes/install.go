package routes

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	"github.com/ducksnest/netd/policy/desired"
)

// Sources are what an Installer reads at the start of every Sync. Each is
// a func returning the current value, so the Installer keeps no pointer to
// the parts that own them.
type Sources struct {
	// State returns the desired state and this node in it.
	State func() (*desired.State, *desired.Node)
	// Learned returns BGP's best paths.
	Learned func() []Learned
	// Synced reports whether BGP has converged (every peer sent
	// End-of-RIB, or the bound passed): the leftovers of a previous run go
	// then.
	Synced func() bool
	// LANUp reports whether the LAN path to a node's LAN address answers.
	LANUp func(netip.Addr) bool
	// Check, if set, returns the overlay check of one Sync (see
	// PlanInput.Check; nil: no check).
	Check func(overlay netip.Prefix) func(p netip.Prefix, nextHop netip.Addr) string
}

// Installer installs BGP's learned best paths as kernel routes. Each Sync
// finds the LAN device, plans the routes (Plan: path, MTU, ECMP), keeps
// the routes a previous netd left until BGP is synced, and reconciles the
// kernel with the Reconciler.
type Installer struct {
	rec *Reconciler
	src Sources
	log *slog.Logger

	mu         sync.Mutex
	planned    []PlannedRoute
	unroutable []Unroutable

	// Owned by Sync.
	leftovers     map[netip.Prefix]Route
	leftoversDone bool
}

// NewInstaller returns an Installer that writes through rec.
func NewInstaller(rec *Reconciler, src Sources, log *slog.Logger) *Installer {
	return &Installer{rec: rec, src: src, log: log}
}

// Sync installs the learned best paths and removes withdrawn ones, keeping
// routes adopted from a previous run until BGP is synced. It is a
// reconcile.Func: safe to repeat, and not to be called concurrently.
func (in *Installer) Sync(ctx context.Context) error {
	st, self := in.src.State()
	learned := in.src.Learned()
	pi := PlanInput{State: st, Self: self, LANDev: in.lanDevice(ctx, self), LANUp: in.src.LANUp, Learned: learned}
	if in.src.Check != nil {
		pi.Check = in.src.Check(st.Networks.Overlay)
	}
	planned, bad := Plan(pi)
	want := make([]Route, len(planned))
	for i := range planned {
		want[i] = planned[i].Route
	}
	in.mu.Lock()
	in.planned, in.unroutable = planned, bad
	in.mu.Unlock()
	want, err := in.withLeftovers(ctx, want)
	if err != nil {
		return err
	}
	_, err = in.rec.Reconcile(ctx, want, true)
	return err
}

// Planned returns the routes of the last Sync and the learned prefixes it
// could not route.
func (in *Installer) Planned() ([]PlannedRoute, []Unroutable) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.planned), slices.Clone(in.unroutable)
}

// lanDevice returns the device holding self's LAN address ("" if self has
// none or no device holds it: the LAN path is then not used).
func (in *Installer) lanDevice(ctx context.Context, self *desired.Node) string {
	if !self.LANAddr.IsValid() {
		return ""
	}
	dev, err := in.rec.k.AddrDevice(ctx, self.LANAddr)
	if err != nil {
		in.log.Debug("lan device not found", "addr", self.LANAddr, "err", err)
	}
	return dev
}

// withLeftovers keeps, until BGP is synced, the routes a previous netd left
// in the kernel that no peer has re-announced yet: a restart must not drop
// pod traffic before the peers have sent End-of-RIB (or the bound passed).
// Routes this process installed itself and that are withdrawn later are
// removed at once.
func (in *Installer) withLeftovers(ctx context.Context, want []Route) ([]Route, error) {
	if in.leftoversDone {
		return want, nil
	}
	if in.leftovers == nil {
		have, err := in.rec.Installed(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading leftover routes: %w", err)
		}
		in.leftovers = map[netip.Prefix]Route{}
		for _, r := range have {
			in.leftovers[r.Dst] = r
		}
		if len(have) > 0 {
			in.log.Info("adopted routes from a previous run; kept until bgp is synced", "routes", len(have))
		}
	}
	if in.src.Synced() {
		in.leftoversDone, in.leftovers = true, nil
		return want, nil
	}
	wanted := make(map[netip.Prefix]bool, len(want))
	for _, r := range want {
		wanted[r.Dst] = true
	}
	for p, r := range in.leftovers {
		if wanted[p] {
			// Re-announced: from now on it lives and dies with BGP.
			delete(in.leftovers, p)
			continue
		}
		want = append(want, r)
	}
	return want, nil
}
