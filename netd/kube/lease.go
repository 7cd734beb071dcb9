package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// LeaseNamespace holds netd's Leases unless a Lease names another.
const LeaseNamespace = "kube-system"

// Leases is the coordination.k8s.io/v1 Lease resource.
var Leases = schema.GroupVersionResource{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"}

// Lease names a Lease and how this instance competes for it.
type Lease struct {
	Namespace string // LeaseNamespace if empty
	Name      string
	// Identity is this instance's holderIdentity (the node name).
	Identity string
	// Duration is how long a holder that stopped renewing keeps the Lease
	// (15 s if zero; at least 3 s). A released Lease is taken at once.
	Duration time.Duration
	// RenewDeadline is how long the holder keeps trying to renew before it
	// gives up leading (2/3 of Duration if zero); RetryPeriod is the time
	// between attempts (1/6 of Duration if zero).
	RenewDeadline, RetryPeriod time.Duration
	Log                        *slog.Logger
	// Metrics receives whether this instance holds the Lease and how often
	// it lost it (nil: none).
	Metrics *LeaseMetrics
}

// Elector competes for one Lease. Its semantics are client-go's
// leaderelection with ReleaseOnCancel: another holder's Lease counts as
// valid until Duration after this instance last saw it change (no trust
// in remote clocks); the holder renews every RetryPeriod and stops leading
// when it has not renewed within RenewDeadline; on cancellation it
// releases the Lease (empty holder) after run has returned.
type Elector struct {
	c   *Client
	l   Lease
	log *slog.Logger

	mu           sync.Mutex
	leading      bool
	holder       string
	err          error
	observed     leaseRecord
	observedTime time.Time
}

type leaseRecord struct {
	Holder      string
	Duration    int64
	Acquire     string
	Renew       string
	Transitions int64
}

// NewElector checks l and returns its elector.
func NewElector(c *Client, l Lease) (*Elector, error) {
	if l.Namespace == "" {
		l.Namespace = LeaseNamespace
	}
	if l.Duration == 0 {
		l.Duration = 15 * time.Second
	}
	if l.Duration < 3*time.Second {
		return nil, fmt.Errorf("lease %s/%s: duration %v: want at least 3s", l.Namespace, l.Name, l.Duration)
	}
	if l.RenewDeadline == 0 {
		l.RenewDeadline = l.Duration * 2 / 3
	}
	if l.RetryPeriod == 0 {
		l.RetryPeriod = l.Duration / 6
	}
	if l.Name == "" || l.Identity == "" || l.RenewDeadline >= l.Duration || l.RetryPeriod >= l.RenewDeadline {
		return nil, fmt.Errorf("lease %s/%s for %q: want a name, an identity and retry < renew deadline < duration", l.Namespace, l.Name, l.Identity)
	}
	log := l.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l.Metrics.init(l.Name)
	return &Elector{c: c, l: l, log: log.With("lease", l.Namespace+"/"+l.Name)}, nil
}

// RunWhileHolding runs run while identity holds the Lease: see
// Elector.Run.
func RunWhileHolding(ctx context.Context, c *Client, l Lease, run func(ctx context.Context)) error {
	e, err := NewElector(c, l)
	if err != nil {
		return err
	}
	return e.Run(ctx, run)
}

// Run competes for the Lease until ctx is done. While it holds the Lease,
// run runs with a context that is cancelled as soon as the Lease is lost;
// after run returns, Run competes again. One term has always ended (run
// returned) before the next starts. Cancellation is not an error: Run
// returns nil once run has returned and the Lease is released.
func (e *Elector) Run(ctx context.Context, run func(ctx context.Context)) error {
	for e.acquire(ctx) {
		e.log.Info("leading", "identity", e.l.Identity)
		e.l.Metrics.setHeld(e.l.Name, true)
		lctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			run(lctx)
		}()
		e.renew(lctx)
		cancel()
		<-done
		e.setLeading(false)
		e.l.Metrics.setHeld(e.l.Name, false)
		e.log.Info("not leading", "identity", e.l.Identity)
		if ctx.Err() != nil {
			e.release()
		} else {
			e.l.Metrics.lostOne(e.l.Name)
		}
	}
	return nil
}

// Leading reports whether this instance holds the Lease now.
func (e *Elector) Leading() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leading
}

// Holder is the holder last seen ("" if none or not read yet).
func (e *Elector) Holder() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.holder
}

// Err is the error of the last attempt to read or write the Lease, nil
// after a success (a Lease held by another is not an error).
func (e *Elector) Err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

func (e *Elector) setLeading(v bool) {
	e.mu.Lock()
	e.leading = v
	e.mu.Unlock()
}

// acquire tries every RetryPeriod (with jitter) until it holds the Lease;
// false when ctx is done first.
func (e *Elector) acquire(ctx context.Context) bool {
	for {
		actx, cancel := context.WithTimeout(ctx, e.l.RenewDeadline)
		ok := e.tryAcquireOrRenew(actx)
		cancel()
		if ok {
			return true
		}
		t := time.NewTimer(jitter(e.l.RetryPeriod))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// renew renews every RetryPeriod until ctx is done or a renewal has not
// succeeded within RenewDeadline (or another instance holds the Lease).
func (e *Elector) renew(ctx context.Context) {
	t := time.NewTicker(e.l.RetryPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		deadline := time.Now().Add(e.l.RenewDeadline)
		for {
			rctx, cancel := context.WithDeadline(ctx, deadline)
			ok := e.tryAcquireOrRenew(rctx)
			cancel()
			if ok {
				break
			}
			if ctx.Err() != nil {
				return
			}
			if !e.Leading() || !time.Now().Add(e.l.RetryPeriod).Before(deadline) {
				e.log.Warn("lease lost: not renewed within the renew deadline", "identity", e.l.Identity,
					"renewDeadline", e.l.RenewDeadline, "err", e.Err())
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(e.l.RetryPeriod):
			}
		}
	}
}

// tryAcquireOrRenew reads the Lease and, if it is free, expired, or ours,
// writes this instance as holder (conditional on the version read).
func (e *Elector) tryAcquireOrRenew(ctx context.Context) bool {
	res := e.c.Dynamic.Resource(Leases).Namespace(e.l.Namespace)
	now := time.Now()
	cur, err := res.Get(ctx, e.l.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		rec := leaseRecord{Holder: e.l.Identity, Duration: e.seconds(), Acquire: microTime(now), Renew: microTime(now)}
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
			"metadata": map[string]any{"name": e.l.Name, "namespace": e.l.Namespace},
			"spec":     rec.spec(),
		}}
		if _, err := res.Create(ctx, u, metav1.CreateOptions{}); err != nil {
			e.fail(Explain(err, "create", Leases, e.l.Namespace))
			return false
		}
		e.won(rec, now)
		return true
	}
	if err != nil {
		e.fail(Explain(err, "get", Leases, e.l.Namespace))
		return false
	}
	rec := readLease(cur)
	e.mu.Lock()
	if rec != e.observed {
		e.observed, e.observedTime = rec, now
	}
	e.holder = rec.Holder
	valid := e.observedTime.Add(time.Duration(rec.Duration) * time.Second).After(now)
	e.err = nil
	e.mu.Unlock()
	if rec.Holder != "" && rec.Holder != e.l.Identity && valid {
		if e.Leading() {
			e.log.Warn("lease taken by another holder", "holder", rec.Holder)
			e.setLeading(false)
		}
		return false
	}
	next := rec
	if rec.Holder != e.l.Identity {
		next.Acquire = microTime(now)
		next.Transitions++
	}
	next.Holder, next.Duration, next.Renew = e.l.Identity, e.seconds(), microTime(now)
	cur.Object["spec"] = next.spec()
	if _, err := res.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		e.fail(Explain(err, "update", Leases, e.l.Namespace))
		return false
	}
	e.won(next, now)
	return true
}

func (e *Elector) won(rec leaseRecord, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.observed, e.observedTime, e.holder, e.err, e.leading = rec, now, rec.Holder, nil, true
}

func (e *Elector) fail(err error) {
	e.mu.Lock()
	e.err = err
	e.mu.Unlock()
	var f *ForbiddenError
	if errors.As(err, &f) {
		e.log.Error("lease refused by RBAC", "err", err)
		return
	}
	e.log.Debug("lease attempt failed", "err", err)
}

// release gives the Lease up (empty holder, 1 s) if this instance still
// holds it, so that another takes over at once.
func (e *Elector) release() {
	ctx, cancel := context.WithTimeout(context.Background(), e.l.RenewDeadline)
	defer cancel()
	res := e.c.Dynamic.Resource(Leases).Namespace(e.l.Namespace)
	cur, err := res.Get(ctx, e.l.Name, metav1.GetOptions{})
	if err != nil {
		e.log.Warn("releasing lease", "err", Explain(err, "get", Leases, e.l.Namespace))
		return
	}
	rec := readLease(cur)
	if rec.Holder != e.l.Identity {
		return
	}
	rec.Holder, rec.Duration, rec.Renew = "", 1, microTime(time.Now())
	cur.Object["spec"] = rec.spec()
	if _, err := res.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		e.log.Warn("releasing lease", "err", Explain(err, "update", Leases, e.l.Namespace))
	}
}

func (e *Elector) seconds() int64 { return int64((e.l.Duration + time.Second - 1) / time.Second) }

func readLease(u *unstructured.Unstructured) leaseRecord {
	var r leaseRecord
	r.Holder, _, _ = unstructured.NestedString(u.Object, "spec", "holderIdentity")
	r.Duration, _, _ = unstructured.NestedInt64(u.Object, "spec", "leaseDurationSeconds")
	r.Acquire, _, _ = unstructured.NestedString(u.Object, "spec", "acquireTime")
	r.Renew, _, _ = unstructured.NestedString(u.Object, "spec", "renewTime")
	r.Transitions, _, _ = unstructured.NestedInt64(u.Object, "spec", "leaseTransitions")
	return r
}

func (r leaseRecord) spec() map[string]any {
	s := map[string]any{"leaseDurationSeconds": r.Duration, "leaseTransitions": r.Transitions}
	if r.Holder != "" {
		s["holderIdentity"] = r.Holder
	}
	if r.Acquire != "" {
		s["acquireTime"] = r.Acquire
	}
	if r.Renew != "" {
		s["renewTime"] = r.Renew
	}
	return s
}

// microTime is metav1.MicroTime's wire form.
func microTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z07:00") }

// jitter spreads retries over [d, 1.2 d), as client-go does.
func jitter(d time.Duration) time.Duration { return d + time.Duration(rand.Int64N(int64(d)/5+1)) }
