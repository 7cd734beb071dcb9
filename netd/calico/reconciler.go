package calico

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"k8s.io/client-go/dynamic"

	"github.com/ducksnest/netd/netd/kube"
	"github.com/ducksnest/netd/policy/desired"
)

const ownerSelector = OwnerLabel + "=" + OwnerValue

// Pending is an object waiting for something before netd can finish.
type Pending struct {
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// Status is the outcome of the last Reconcile, for `netd status`.
type Status struct {
	Time      time.Time `json:"time"`
	Digest    string    `json:"digest,omitempty"` // of the policy applied
	Applied   []Action  `json:"applied,omitempty"`
	Pending   []Pending `json:"pending,omitempty"`
	Unowned   []Pending `json:"unowned,omitempty"`
	Conflicts []Action  `json:"conflicts,omitempty"`
	// Unapplied counts the planned writes that were not done (failed or
	// conflicting): objects that still differ from the policy.
	Unapplied int    `json:"unapplied,omitempty"`
	Error     string `json:"error,omitempty"`
}

// Reconciler keeps the Calico objects equal to the policy. Run it on the
// Lease holder only (kube.RunWhileHolding) or from the CLI.
type Reconciler struct {
	dyn    dynamic.Interface
	api    API
	events *kube.Recorder
	log    *slog.Logger

	mu       sync.Mutex
	status   Status
	evMu     sync.Mutex
	reported map[string]string // object → last pending/unowned reason sent as an Event
}

// NewReconciler returns a reconciler writing api's objects with c;
// identity names this instance in Events (the node name).
func NewReconciler(c *kube.Client, api API, log *slog.Logger, identity string) *Reconciler {
	return &Reconciler{dyn: c.Dynamic, api: api, events: kube.NewRecorder(c, "netd", identity), log: log,
		reported: map[string]string{}}
}

// API is the Calico API the reconciler writes.
func (r *Reconciler) API() API { return r.api }

// Reconcile makes the cluster match st: Plan, then Apply. It is
// level-triggered and safe to repeat; a second run right after the first
// writes nothing. A retired pool is disabled in one run and deleted in a
// later one, once it has no IPAMBlock.
func (r *Reconciler) Reconcile(ctx context.Context, st *desired.State) (Status, error) {
	s := Status{Time: time.Now(), Digest: st.Digest}
	p, err := r.Plan(ctx, st)
	if err != nil {
		s.Error = err.Error()
		r.setStatus(s)
		return s, err
	}
	res, err := r.Apply(ctx, p)
	s.Applied, s.Conflicts = res.Applied, res.Conflicts
	for _, a := range p.Actions {
		if a.Writes() {
			s.Unapplied++
		}
	}
	s.Unapplied -= len(res.Applied)
	s.Pending = append(s.Pending, p.Notes...)
	for _, a := range p.Actions {
		switch a.Op {
		case OpWaitDrain:
			s.Pending = append(s.Pending, Pending{a.Kind, a.Name, a.Reason})
		case OpUnowned:
			s.Unowned = append(s.Unowned, Pending{a.Kind, a.Name, a.Reason})
		}
	}
	if err != nil {
		s.Error = err.Error()
	}
	r.emitEvents(ctx, s)
	r.setStatus(s)
	return s, err
}

// Status returns the outcome of the last Reconcile.
func (r *Reconciler) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

func (r *Reconciler) setStatus(s Status) {
	r.mu.Lock()
	r.status = s
	r.mu.Unlock()
}

var eventReason = map[Op]string{
	OpCreate: "Created", OpUpdate: "Updated", OpDisable: "Disabled", OpDelete: "Deleted",
	OpWaitDrain: "WaitingToDrain", OpUnowned: "NotOwned",
}

// resultEvents records one Kubernetes Event per write and per conflict.
func (r *Reconciler) resultEvents(ctx context.Context, res Result) {
	var errs []error
	for _, a := range res.Applied {
		errs = append(errs, r.event(ctx, a.Kind, a.Name, kube.Normal, eventReason[a.Op], describeAction(a)))
	}
	for _, a := range res.Conflicts {
		errs = append(errs, r.event(ctx, a.Kind, a.Name, kube.Warning, "Conflict",
			fmt.Sprintf("%s skipped: changed since resourceVersion %s, not overwritten", a.Op, a.ResourceVersion)))
	}
	if err := errors.Join(errs...); err != nil {
		r.log.Warn("recording calico events", "err", err)
	}
}

// emitEvents records one Event per pending or unowned object whenever its
// reason changes (not on every resync).
func (r *Reconciler) emitEvents(ctx context.Context, s Status) {
	r.evMu.Lock()
	defer r.evMu.Unlock()
	var errs []error
	seen := map[string]bool{}
	for _, l := range []struct {
		op Op
		ps []Pending
	}{{OpWaitDrain, s.Pending}, {OpUnowned, s.Unowned}} {
		for _, p := range l.ps {
			key := describe(p.Kind, p.Name)
			seen[key] = true
			if r.reported[key] == p.Reason {
				continue
			}
			r.reported[key] = p.Reason
			reason := eventReason[l.op]
			if l.op == OpWaitDrain && p.Kind != "IPPool" {
				reason = "NotApplied"
			}
			errs = append(errs, r.event(ctx, p.Kind, p.Name, kube.Warning, reason, p.Reason))
		}
	}
	for k := range r.reported {
		if !seen[k] {
			delete(r.reported, k)
		}
	}
	if err := errors.Join(errs...); err != nil {
		r.log.Warn("recording calico events", "err", err)
	}
}

func describeAction(a Action) string {
	msg := fmt.Sprintf("netd %s", a.Op)
	if a.Reason != "" {
		msg += ": " + a.Reason
	}
	if len(a.Changes) > 0 {
		msg += "; " + fmt.Sprint(slices.Clip(a.Changes))
	}
	return msg
}

// event records one Event about a Calico object.
func (r *Reconciler) event(ctx context.Context, kind, name, typ, reason, msg string) error {
	return r.events.Event(ctx, kube.Ref{APIVersion: r.api.GroupVersion.String(), Kind: kind, Name: name}, typ, reason, msg)
}
