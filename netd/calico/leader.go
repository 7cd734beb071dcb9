package calico

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaseNamespace holds the Lease when the lock name has no "namespace/".
const LeaseNamespace = "kube-system"

// RunLeader runs run while this instance (identity, usually the node name)
// holds the coordination.k8s.io Lease lockName ("name" in kube-system, or
// "namespace/name"). run's context is cancelled as soon as the lease is
// lost; RunLeader then tries to acquire it again, until ctx is done. On
// ctx cancellation the lease is released so that another instance takes
// over at once; a holder that dies is replaced within lease (plus one
// retry period). RunLeader returns nil when ctx is cancelled.
func RunLeader(ctx context.Context, client kubernetes.Interface, lockName, identity string, lease time.Duration, run func(ctx context.Context)) error {
	return runLeader(ctx, client, lockName, identity, lease, slog.New(slog.DiscardHandler), run)
}

// RunLeaderLog is RunLeader with a logger for lease transitions.
func RunLeaderLog(ctx context.Context, client kubernetes.Interface, lockName, identity string, lease time.Duration, log *slog.Logger, run func(ctx context.Context)) error {
	return runLeader(ctx, client, lockName, identity, lease, log, run)
}

func runLeader(ctx context.Context, client kubernetes.Interface, lockName, identity string, lease time.Duration, log *slog.Logger, run func(ctx context.Context)) error {
	ns, name := LeaseNamespace, lockName
	if i := strings.IndexByte(lockName, '/'); i >= 0 {
		ns, name = lockName[:i], lockName[i+1:]
	}
	if lease < 3*time.Second {
		return fmt.Errorf("lease duration %v: want at least 3s", lease)
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, ns, name,
		client.CoreV1(), client.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: identity})
	if err != nil {
		return fmt.Errorf("creating lease lock %s/%s: %w", ns, name, err)
	}
	for ctx.Err() == nil {
		// run runs here, not in the elector's goroutine, so that one term
		// has ended before the next can start.
		leading := make(chan context.Context, 1)
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			Name:            name,
			LeaseDuration:   lease,
			RenewDeadline:   lease * 2 / 3,
			RetryPeriod:     lease / 6,
			ReleaseOnCancel: true,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) { leading <- ctx },
				OnStoppedLeading: func() {},
				OnNewLeader:      func(id string) { log.Debug("lease holder", "lease", ns+"/"+name, "holder", id) },
			},
		})
		if err != nil {
			return fmt.Errorf("leader election on %s/%s: %w", ns, name, err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			le.Run(ctx) // returns when leadership is lost or ctx is done
		}()
		select {
		case lctx := <-leading:
			log.Info("leading", "lease", ns+"/"+name, "identity", identity)
			run(lctx)
			<-done
			log.Info("not leading", "lease", ns+"/"+name, "identity", identity)
		case <-done:
		}
	}
	return nil
}
