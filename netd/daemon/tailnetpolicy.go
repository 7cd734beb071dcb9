package daemon

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ducksnest/netd/acl"
	"github.com/ducksnest/netd/netd/kube"
	"github.com/ducksnest/netd/netd/reconcile"
	"github.com/ducksnest/netd/netd/tailnetsync"
	"github.com/ducksnest/netd/policy/desired"
)

// tailnetLease is the Lease whose holder writes the tailnet policy when
// netd runs with Kubernetes.
const tailnetLease = "netd-tailnet"

// newTailnetPolicy builds the tailnet policy part (package tailnetsync) for
// the control server cfg.Tailnet: with a kubeconfig, the holder of the
// netd-tailnet Lease writes and Events are recorded; without one, the node
// the policy names writes. It returns the part and the triggers a reload
// must poke.
func newTailnetPolicy(cfg Config, reg prometheus.Registerer, rm *reconcile.Metrics, current func() (*desired.State, *desired.Node),
	blocks blockSource,
) (*tailnetsync.Syncer, []*reconcile.Trigger, error) {
	c, err := acl.NewClient(*cfg.Tailnet)
	if err != nil {
		return nil, nil, fmt.Errorf("tailnet credentials: %w", err)
	}
	state := func() *desired.State {
		st, _ := current()
		return st
	}
	log := cfg.Log.With("component", "tailnet-policy")
	var role tailnetsync.Role
	var events tailnetsync.Events
	var triggers []*reconcile.Trigger
	if cfg.Kubeconfig != "" {
		rc, err := kube.LoadConfig(cfg.Kubeconfig)
		if err != nil {
			return nil, nil, fmt.Errorf("kubeconfig: %w", err)
		}
		kc, err := kube.NewClient(rc)
		if err != nil {
			return nil, nil, err
		}
		e, err := kube.NewElector(kc, kube.Lease{Name: tailnetLease, Identity: cfg.Node, Log: log})
		if err != nil {
			return nil, nil, err
		}
		role = tailnetsync.LeaseRole{E: e, Lease: kube.LeaseNamespace + "/" + tailnetLease}
		events = tailnetsync.KubeEvents{R: kube.NewRecorder(kc, "netd", cfg.Node), Name: func() string { return state().Name }}
	} else {
		changed := reconcile.NewTrigger()
		role = tailnetsync.NamedRole{Self: cfg.Node, Named: func() string { return state().Tailnet.Sync.Writer }, Changed: changed}
		triggers = append(triggers, changed)
	}
	s, err := tailnetsync.New(tailnetsync.Config{
		Node: cfg.Node, Control: c, Role: role, State: state, Blocks: blocks.allBlocks,
		Events: events, Log: cfg.Log, Registry: reg, Metrics: rm,
	})
	if err != nil {
		return nil, nil, err
	}
	return s, append(triggers, s.Trigger()), nil
}
