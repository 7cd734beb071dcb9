package tailnetsync

import (
	"context"
	"fmt"

	"github.com/ducksnest/netd/netd/kube"
	"github.com/ducksnest/netd/netd/reconcile"
)

// Role decides when this netd is the tailnet policy writer.
type Role interface {
	// Run calls lead while this netd is the writer, with a context that
	// ends as soon as it stops being the writer, until ctx is done. One
	// term has ended (lead returned) before the next starts.
	Run(ctx context.Context, lead func(ctx context.Context)) error
	// Writer names the writer as last seen ("" if none or not known yet).
	Writer() string
	// Mode says how the writer is chosen, for the status.
	Mode() string
	// Err is why the role cannot be decided now (nil if it can).
	Err() error
}

// LeaseRole is the writer role with Kubernetes: the holder of a Lease.
type LeaseRole struct {
	E *kube.Elector
	// Lease names it for the status ("kube-system/netd-tailnet").
	Lease string
}

// Run competes for the Lease.
func (r LeaseRole) Run(ctx context.Context, lead func(ctx context.Context)) error {
	return r.E.Run(ctx, lead)
}

// Writer is the Lease holder last seen.
func (r LeaseRole) Writer() string { return r.E.Holder() }

// Mode names the Lease.
func (r LeaseRole) Mode() string { return "lease " + r.Lease }

// Err is why the Lease cannot be read or written.
func (r LeaseRole) Err() error { return r.E.Err() }

// NamedRole is the writer role without Kubernetes: the node the policy
// names. Changed must be poked whenever the policy may have changed.
type NamedRole struct {
	Self string
	// Named returns the writer the current policy names ("" = none).
	Named   func() string
	Changed *reconcile.Trigger
}

// Run leads while the policy names Self.
func (r NamedRole) Run(ctx context.Context, lead func(ctx context.Context)) error {
	for ctx.Err() == nil {
		if r.Named() != r.Self {
			select {
			case <-ctx.Done():
			case <-r.Changed.C():
			}
			continue
		}
		r.term(ctx, lead)
	}
	return nil
}

// term runs lead until the policy no longer names Self (seen when Changed
// is poked) or ctx is done, and returns once lead has returned.
func (r NamedRole) term(ctx context.Context, lead func(ctx context.Context)) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		lead(lctx)
	}()
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
		case <-r.Changed.C():
			if r.Named() == r.Self {
				continue
			}
		}
		cancel()
		<-done
		return
	}
}

// Writer is the node the policy names.
func (r NamedRole) Writer() string { return r.Named() }

// Mode says the policy names the writer.
func (r NamedRole) Mode() string { return "policy (spec.tailnetSync.writer)" }

// Err says why no netd writes when the policy names none.
func (r NamedRole) Err() error {
	if r.Named() == "" {
		return fmt.Errorf("no tailnet policy writer: netd runs without Kubernetes and the policy names no spec.tailnetSync.writer")
	}
	return nil
}
