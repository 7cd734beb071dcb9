// Package routes is netd's routing: it decides which kernel route each BGP
// best path becomes, and installs it.
//
//   - Plan (plan.go) chooses each learned prefix's path (the site LAN, the
//     overlay, or an external peer's network), its MTU and its ECMP set, and
//     says why a prefix cannot be routed.
//   - Installer (install.go) runs that each time: it finds the LAN device,
//     plans, keeps the routes a previous netd left until BGP is synced, and
//     hands the result to the Reconciler.
//   - Reconciler makes the routes of netd's own protocol in netd's own
//     table, and the one "from all lookup <table>" rule, equal to the
//     desired ones. It never touches a route of another protocol or in
//     another table, nor another rule.
//
// Every kernel read and write goes through the small nl.Kernel interface.
package routes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ducksnest/netd/netd/routes/nl"
	"github.com/ducksnest/netd/policy/desired"
)

// Config says what netd owns: routes with Protocol in Table, and the rule
// "from all lookup Table" at RulePriority (desired.Routing).
type Config struct{ Protocol, Table, RulePriority int }

// ConfigFor returns the Config of the compiled policy's routing section.
func ConfigFor(r desired.Routing) Config {
	return Config{Protocol: r.Protocol, Table: r.Table, RulePriority: r.RulePriority}
}

// NextHop is one path of a route.
type NextHop struct {
	Gateway netip.Addr // invalid for a device route
	Device  string     // empty: the kernel picks it (not with Onlink)
	Onlink  bool       // the gateway is on the device even without a covering subnet
}

// Route is one route netd wants in its table.
type Route struct {
	Dst      netip.Prefix
	NextHops []NextHop // more than one: ECMP multipath
	MTU      int       // 0: not set
	AdvMSS   int       // 0: not set
}

// Result is what one Reconcile did.
type Result struct {
	Added, Replaced, Deleted, Unchanged int
	// Kept counts netd's routes in the table that are not wanted but were
	// left in place because prune was false (adopted leftovers).
	Kept int
	// Failed counts the wanted routes that could not be installed and the
	// deletes that failed.
	Failed    int
	RuleAdded bool
}

// Writes is the number of kernel writes.
func (r Result) Writes() int {
	n := r.Added + r.Replaced + r.Deleted
	if r.RuleAdded {
		n++
	}
	return n
}

// Change is a wanted route that the kernel has in another form.
type Change struct{ Want, Have Route }

// Drift is how the kernel differs from what is wanted.
type Drift struct {
	Missing     []Route  // wanted, not in the kernel
	Extra       []Route  // netd's, in the kernel, not wanted
	Different   []Change // in the kernel with other next hops, mtu or advmss
	RuleMissing bool
}

// Empty reports whether there is no drift.
func (d Drift) Empty() bool {
	return len(d.Missing) == 0 && len(d.Extra) == 0 && len(d.Different) == 0 && !d.RuleMissing
}

// Reconciler owns netd's routes and rule in one network namespace.
type Reconciler struct {
	k   nl.Kernel
	cfg Config
	log *slog.Logger
	m   *metrics
	mu  sync.Mutex // one reconcile at a time
}

// New returns a Reconciler; its metrics are registered on reg (if not nil).
func New(k nl.Kernel, cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Reconciler, error) {
	switch {
	case k == nil || log == nil:
		return nil, errors.New("routes: kernel and logger are required")
	case cfg.Protocol <= 0 || cfg.Protocol > 255:
		return nil, fmt.Errorf("routes: protocol %d is not in 1..255", cfg.Protocol)
	case cfg.Table <= 0 || cfg.Table == 253 || cfg.Table == 254 || cfg.Table == 255:
		return nil, fmt.Errorf("routes: table %d is not a table netd may own", cfg.Table)
	case cfg.RulePriority <= 0:
		return nil, fmt.Errorf("routes: rule priority %d must be positive", cfg.RulePriority)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Reconciler{k: k, cfg: cfg, log: log, m: m}, nil
}

// Reconcile makes the kernel state netd owns equal to want: it adds or
// replaces the wanted routes that differ (all additions before any delete),
// deletes netd's unwanted routes only if prune is true (so a restarted netd
// adopts its leftovers until BGP has converged), and ensures the rule. It
// never writes a route of another protocol, in another table, or another
// rule. It returns what it did and the errors.Join of the failures.
func (r *Reconciler) Reconcile(ctx context.Context, want []Route, prune bool) (Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := time.Now()
	res, err := r.reconcile(ctx, want, prune)
	r.m.observe(res, err, time.Since(start))
	if res.Writes() > 0 || res.Failed > 0 {
		r.log.Info("reconciled routes", "table", r.cfg.Table, "added", res.Added, "replaced", res.Replaced,
			"deleted", res.Deleted, "unchanged", res.Unchanged, "kept", res.Kept, "failed", res.Failed,
			"ruleAdded", res.RuleAdded, "prune", prune, "duration", time.Since(start))
	}
	return res, err
}

func (r *Reconciler) reconcile(ctx context.Context, want []Route, prune bool) (Result, error) {
	var res Result
	wanted, wantIdx, errs := normalize(want)
	res.Failed += len(errs)
	have, err := r.k.ListRoutes(ctx, r.cfg.Table)
	if err != nil {
		return res, errors.Join(append(errs, err)...)
	}
	ours, oursOther, foreign := r.split(have)
	nOurs := len(ours) + len(oursOther)
	devs := newDevices(r.k)

	var ops []nl.Op
	var scratch []nl.NextHop
	replaced := map[key]bool{}
	for j, w := range wanted {
		k := keyOf(w.Dst)
		if p, ok := foreign[k]; ok {
			errs = append(errs, fmt.Errorf("route %v: table %d holds a route of protocol %d there; not replacing it", w.Dst, r.cfg.Table, p))
			res.Failed++
			continue
		}
		kr, err := r.toKernel(ctx, devs, w, scratch)
		scratch = kr.NextHops
		if err != nil {
			errs = append(errs, fmt.Errorf("route %v: %w", w.Dst, err))
			res.Failed++
			continue
		}
		if i, ok := ours[k]; ok {
			if sameKernel(kr, have[i]) {
				res.Unchanged++
				continue
			}
			replaced[k] = true
		}
		kr.NextHops = slices.Clone(kr.NextHops)
		if ops == nil {
			ops = make([]nl.Op, 0, len(wanted)-j+len(oursOther)+8)
		}
		ops = append(ops, nl.Op{Kind: nl.Replace, Route: kr})
	}
	nReplace := len(ops)
	for k, i := range ours {
		if _, ok := wantIdx[k]; !ok {
			oursOther = append(oursOther, have[i])
		}
	}
	if prune {
		sortKernel(oursOther)
		for _, kr := range oursOther {
			ops = append(ops, nl.Op{Kind: nl.Delete, Route: kr})
		}
	} else {
		res.Kept = len(oursOther)
	}

	if len(ops) > 0 {
		for i, e := range r.k.Apply(ctx, ops) {
			switch {
			case e != nil:
				errs = append(errs, e)
				res.Failed++
			case i >= nReplace:
				res.Deleted++
			case replaced[keyOf(ops[i].Route.Dst)]:
				res.Replaced++
			default:
				res.Added++
			}
		}
	}
	r.m.installed.Set(float64(nOurs + res.Added - res.Deleted))

	added, err := r.ensureRule(ctx)
	res.RuleAdded = added
	drift := res.Failed + res.Kept
	if err != nil {
		errs = append(errs, err)
		drift++
	}
	r.m.drift.Set(float64(drift))
	return res, joinCapped(errs)
}

// isOurRule reports whether rule is the plain "from all lookup Table" at
// our priority (whoever added it).
func (r *Reconciler) isOurRule(rule nl.Rule) bool {
	return !rule.Selectors && rule.Priority == r.cfg.RulePriority && rule.Table == r.cfg.Table
}

func (r *Reconciler) ourRule() nl.Rule {
	return nl.Rule{Priority: r.cfg.RulePriority, Table: r.cfg.Table, Protocol: r.cfg.Protocol}
}

// ensureRule adds the rule unless it is there.
func (r *Reconciler) ensureRule(ctx context.Context) (bool, error) {
	rules, err := r.k.ListRules(ctx)
	if err != nil {
		return false, err
	}
	if slices.ContainsFunc(rules, r.isOurRule) {
		return false, nil
	}
	if err := r.k.AddRule(ctx, r.ourRule()); err != nil {
		return false, err
	}
	return true, nil
}

// Installed reads netd's routes (its protocol in its table) from the
// kernel, sorted by destination.
func (r *Reconciler) Installed(ctx context.Context) ([]Route, error) {
	have, err := r.k.ListRoutes(ctx, r.cfg.Table)
	if err != nil {
		return nil, err
	}
	devs := newDevices(r.k)
	var out []Route
	for _, kr := range have {
		if kr.Protocol == r.cfg.Protocol {
			out = append(out, fromKernel(ctx, devs, kr))
		}
	}
	sortRoutes(out)
	return out, nil
}

// Drift compares want with the kernel without writing anything. Invalid
// wanted routes are reported in the error.
func (r *Reconciler) Drift(ctx context.Context, want []Route) (Drift, error) {
	var d Drift
	wanted, wantIdx, errs := normalize(want)
	have, err := r.k.ListRoutes(ctx, r.cfg.Table)
	if err != nil {
		return d, errors.Join(append(errs, err)...)
	}
	ours, oursOther, _ := r.split(have)
	devs := newDevices(r.k)
	for _, w := range wanted {
		i, ok := ours[keyOf(w.Dst)]
		if !ok {
			d.Missing = append(d.Missing, w)
			continue
		}
		kr, err := r.toKernel(ctx, devs, w, nil)
		if err != nil || !sameKernel(kr, have[i]) {
			d.Different = append(d.Different, Change{Want: w, Have: fromKernel(ctx, devs, have[i])})
		}
	}
	for k, i := range ours {
		if _, ok := wantIdx[k]; !ok {
			oursOther = append(oursOther, have[i])
		}
	}
	for _, kr := range oursOther {
		d.Extra = append(d.Extra, fromKernel(ctx, devs, kr))
	}
	sortRoutes(d.Extra)
	rules, err := r.k.ListRules(ctx)
	if err != nil {
		return d, errors.Join(append(errs, err)...)
	}
	d.RuleMissing = !slices.ContainsFunc(rules, r.isOurRule)
	return d, joinCapped(errs)
}

// RemoveAll deletes every route of netd's protocol in netd's table and
// netd's rule; nothing else.
func (r *Reconciler) RemoveAll(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	have, err := r.k.ListRoutes(ctx, r.cfg.Table)
	if err != nil {
		errs = append(errs, err)
	}
	ops := make([]nl.Op, 0, len(have))
	for _, kr := range have {
		if kr.Protocol == r.cfg.Protocol {
			ops = append(ops, nl.Op{Kind: nl.Delete, Route: kr})
		}
	}
	deleted := 0
	if len(ops) > 0 {
		for _, e := range r.k.Apply(ctx, ops) {
			if e != nil {
				errs = append(errs, e)
			} else {
				deleted++
			}
		}
	}
	r.m.writes.WithLabelValues("delete").Add(float64(deleted))
	r.m.installed.Set(0)
	rules, err := r.k.ListRules(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	ruleDeleted := 0
	for _, rule := range rules {
		if r.isOurRule(rule) && rule.Protocol == r.cfg.Protocol {
			if err := r.k.DelRule(ctx, r.ourRule()); err != nil {
				errs = append(errs, err)
			} else {
				ruleDeleted++
			}
		}
	}
	r.log.Info("removed netd routes", "table", r.cfg.Table, "deleted", deleted, "rulesDeleted", ruleDeleted, "failed", len(errs))
	return joinCapped(errs)
}
