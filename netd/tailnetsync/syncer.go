package tailnetsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ducksnest/netd/acl"
	"github.com/ducksnest/netd/netd/reconcile"
	"github.com/ducksnest/netd/policy/desired"
)

// Control is the control server as the writer uses it (*acl.Client).
type Control interface {
	Name() string
	Diff(ctx context.Context, t *desired.Tailnet) (acl.Change, error)
	ApplyChange(ctx context.Context, t *desired.Tailnet, c acl.Change, opts acl.Options) (acl.Result, error)
	Routes(ctx context.Context) ([]acl.NodeRoutes, error)
}

// Events records Kubernetes Events about the tailnet policy (KubeEvents);
// nil records none.
type Events interface {
	Event(ctx context.Context, typ, reason, msg string) error
}

// Config is what the part gets when it is built.
type Config struct {
	// Node is this netd's node.
	Node    string
	Control Control
	Role    Role
	// State returns the current (last good) policy.
	State func() *desired.State
	// Blocks returns every node's pod blocks by node name (nil: the
	// policy's static blocks).
	Blocks func(st *desired.State) map[string][]netip.Prefix
	Events Events
	Log    *slog.Logger
	// Registry receives the part's metrics; Metrics are the shared loop
	// metrics (both may be nil in tests).
	Registry prometheus.Registerer
	Metrics  *reconcile.Metrics
}

// Syncer is the tailnet policy part: Run competes for the writer role and,
// while it holds it, runs the sync loop.
type Syncer struct {
	cfg  Config
	log  *slog.Logger
	trig *reconcile.Trigger
	m    metrics

	mu       sync.Mutex
	st       Status
	loop     *reconcile.Loop
	interval time.Duration      // of the running loop
	restart  context.CancelFunc // ends the running loop (to change its interval)
	driftKey string             // live version + drift of the drift last reported
	routeKey string             // route problems last reported
	rejected string             // the last write refusal reported
}

// New builds the part; it contacts nothing.
func New(cfg Config) (*Syncer, error) {
	if cfg.Control == nil || cfg.Role == nil || cfg.State == nil || cfg.Log == nil {
		return nil, errors.New("tailnetsync: control, role, state and log are required")
	}
	if cfg.Blocks == nil {
		cfg.Blocks = PolicyBlocks
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	s := &Syncer{cfg: cfg, log: cfg.Log.With("component", "tailnet-policy"), trig: reconcile.NewTrigger(), m: m}
	s.st.Target = cfg.Control.Name()
	return s, nil
}

// PolicyBlocks is every node's pod blocks as the policy lists them.
func PolicyBlocks(st *desired.State) map[string][]netip.Prefix {
	out := make(map[string][]netip.Prefix, len(st.Nodes))
	for _, n := range st.Nodes {
		out[n.Name] = n.PodCIDRs
	}
	return out
}

// Trigger is poked when the policy changed: the writer applies it at once.
func (s *Syncer) Trigger() *reconcile.Trigger { return s.trig }

// Run competes for the writer role until ctx is done.
func (s *Syncer) Run(ctx context.Context) error {
	if err := s.cfg.Role.Err(); err != nil {
		s.log.Warn("this netd has tailnet credentials but will not write the tailnet policy", "err", err)
	}
	return s.cfg.Role.Run(ctx, s.lead)
}

// lead runs the sync loop for one term as the writer, starting it again
// when the policy changes the re-check interval.
func (s *Syncer) lead(ctx context.Context) {
	s.log.Info("writing the tailnet policy: this netd is the writer", "node", s.cfg.Node, "mode", s.cfg.Role.Mode(), "target", s.cfg.Control.Name())
	s.m.writer.Set(1)
	defer func() {
		s.m.writer.Set(0)
		s.m.drift.Set(0)
		s.m.inSync.Set(0)
		s.mu.Lock()
		s.st = Status{Target: s.st.Target, Writes: s.st.Writes}
		s.driftKey, s.routeKey, s.rejected = "", "", ""
		s.mu.Unlock()
		s.log.Info("no longer the tailnet policy writer", "node", s.cfg.Node)
	}()
	for ctx.Err() == nil {
		iv := interval(s.cfg.State())
		lctx, cancel := context.WithCancel(ctx)
		loop := &reconcile.Loop{Name: "tailnet-policy", Fn: s.sync, Trigger: s.trig, Resync: iv,
			MaxBackoff: min(iv, 30*time.Second), Log: s.cfg.Log, Metrics: s.cfg.Metrics}
		s.mu.Lock()
		s.loop, s.interval, s.restart = loop, iv, cancel
		s.st.Leading = true
		s.mu.Unlock()
		s.trig.Poke()
		_ = loop.Run(lctx)
		cancel()
	}
}

// interval is the policy's re-check period (a minute if a state built in
// Go has none).
func interval(st *desired.State) time.Duration {
	if iv := st.Tailnet.Sync.Interval; iv > 0 {
		return iv
	}
	return time.Minute
}

// sync is one run of the writer: the policy, then the routes.
func (s *Syncer) sync(ctx context.Context) error {
	st := s.cfg.State()
	s.mu.Lock()
	if iv := interval(st); iv != s.interval && s.restart != nil {
		s.restart() // lead starts the loop again with the new interval
		s.mu.Unlock()
		s.trig.Poke()
		return nil
	}
	s.mu.Unlock()
	err := errors.Join(s.syncPolicy(ctx, st), s.checkRoutes(ctx, st))
	s.mu.Lock()
	s.st.LastCheck = time.Now()
	s.st.Error = ""
	if err != nil {
		s.st.Error = err.Error()
	}
	s.mu.Unlock()
	return err
}

// syncPolicy reads the live policy, reports drift, and writes the
// compiled policy unless nothing changed or drift forbids it.
func (s *Syncer) syncPolicy(ctx context.Context, st *desired.State) error {
	t := &st.Tailnet
	c, err := s.cfg.Control.Diff(ctx, t)
	if err != nil {
		return fmt.Errorf("reading the live tailnet policy: %w", err)
	}
	s.noteDrift(ctx, st, c)
	switch {
	case c.Unchanged:
		s.setSynced(st, c.LiveVersion)
		return nil
	case c.Drift != "" && !t.Sync.Exclusive:
		s.setBlocked(c.LiveVersion, "the live policy was edited outside netd, so the policy file is not applied (ownership shared): "+
			"put the edit into the policy file, or apply it by hand with `netd policy apply --force`, or set spec.tailnetSync.ownership: exclusive")
		return nil
	}
	res, err := s.cfg.Control.ApplyChange(ctx, t, c, acl.Options{Force: t.Sync.Exclusive})
	switch {
	case errors.Is(err, acl.ErrConflict):
		// Edited between the read and the write: the retry (with backoff)
		// reads it again and reports it.
		s.setBlocked(c.LiveVersion, "")
		return fmt.Errorf("applying the tailnet policy: %w", err)
	case err != nil:
		s.noteRejected(ctx, st, err)
		s.setBlocked(c.LiveVersion, "")
		return fmt.Errorf("applying the tailnet policy: %w", err)
	}
	s.m.writes.Inc()
	s.noteRejected(ctx, st, nil)
	msg := fmt.Sprintf("applied policy %s (%s) to %s: version %s -> %s", st.Name, short(st.Digest), c.Target, orNone(c.LiveVersion), res.Version)
	s.log.Info("tailnet policy applied", "target", c.Target, "digest", st.Digest, "from", c.LiveVersion, "to", res.Version)
	s.event(ctx, "Normal", "TailnetPolicyApplied", msg)
	if c.Drift != "" {
		s.event(ctx, "Warning", "TailnetPolicyOverwritten", "overwrote a live tailnet policy edited outside netd (ownership: exclusive): "+c.Drift)
		s.noteDrift(ctx, st, acl.Change{Target: c.Target, LiveVersion: res.Version})
	}
	s.mu.Lock()
	s.st.LastWrite, s.st.Writes = time.Now(), s.st.Writes+1
	s.mu.Unlock()
	s.setSynced(st, res.Version)
	return nil
}

// checkRoutes lists every node's routes on the control server and reports
// the pod blocks that are not approved subnet routes.
func (s *Syncer) checkRoutes(ctx context.Context, st *desired.State) error {
	live, err := s.cfg.Control.Routes(ctx)
	if err != nil {
		return fmt.Errorf("reading the nodes' subnet routes: %w", err)
	}
	probs, unserved := CheckRoutes(st.Nodes, s.cfg.Blocks(st), live)
	s.m.unserved.Set(float64(unserved))
	key := fmt.Sprint(probs)
	s.mu.Lock()
	s.st.RoutesChecked, s.st.RouteProblems = true, probs
	prev := s.routeKey
	s.routeKey = key
	s.mu.Unlock()
	if key == prev {
		return nil
	}
	if len(probs) == 0 {
		s.log.Info("every node's pod blocks are approved subnet routes", "nodes", len(st.Nodes))
		if prev != "" { // problems were reported before
			s.event(ctx, "Normal", "PodRoutesApproved", "every node's pod blocks are approved subnet routes again")
		}
		return nil
	}
	msg := fmt.Sprintf("%d pod blocks are not approved subnet routes (Tailscale drops pod traffic to them): %v; check the policy's autoApprovers and that each node runs tailscaled with the node tag", unserved, probs)
	s.log.Warn("pod blocks not approved on the tailnet", "unserved", unserved, "problems", fmt.Sprint(probs))
	s.event(ctx, "Warning", "PodRoutesNotApproved", msg)
	return nil
}

// noteDrift reports a new drift (once per edit: per live version and
// reason) and its end.
func (s *Syncer) noteDrift(ctx context.Context, st *desired.State, c acl.Change) {
	s.mu.Lock()
	prev := s.driftKey
	key := ""
	if c.Drift != "" {
		key = c.LiveVersion + "\x00" + c.Drift
	}
	s.driftKey = key
	if c.Drift == "" {
		s.st.Drift, s.st.DriftDiff, s.st.DriftSince = "", "", time.Time{}
	} else if key != prev {
		s.st.Drift, s.st.DriftDiff, s.st.DriftSince = c.Drift, capText(c.Diff, 8<<10), time.Now()
	}
	s.mu.Unlock()
	if key == prev {
		return
	}
	if key == "" {
		s.m.drift.Set(0)
		s.log.Info("tailnet policy drift resolved: the live policy is the one netd last wrote", "target", c.Target)
		s.event(ctx, "Normal", "TailnetPolicyDriftResolved", "the live tailnet policy is again the one netd last wrote")
		return
	}
	s.m.drift.Set(1)
	action := "left alone (spec.tailnetSync.ownership: shared)"
	if st.Tailnet.Sync.Exclusive {
		action = "overwriting it (spec.tailnetSync.ownership: exclusive)"
	}
	s.log.Warn("tailnet policy edited outside netd", "target", c.Target, "version", c.LiveVersion, "drift", c.Drift, "action", action)
	s.event(ctx, "Warning", "TailnetPolicyDrift", fmt.Sprintf("%s (version %s); %s", c.Drift, orNone(c.LiveVersion), action))
}

// noteRejected records an Event once per distinct refusal of a write (nil
// clears it).
func (s *Syncer) noteRejected(ctx context.Context, st *desired.State, err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	s.mu.Lock()
	changed := msg != s.rejected
	s.rejected = msg
	s.mu.Unlock()
	if changed && err != nil {
		s.event(ctx, "Warning", "TailnetPolicyRejected", fmt.Sprintf("policy %s (%s) not applied: %v", st.Name, short(st.Digest), err))
	}
}

func (s *Syncer) setSynced(st *desired.State, version string) {
	s.m.inSync.Set(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.InSync, s.st.Version, s.st.Digest, s.st.Blocked = true, version, st.Digest, ""
}

func (s *Syncer) setBlocked(version, blocked string) {
	s.m.inSync.Set(0)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.InSync, s.st.Version, s.st.Blocked = false, version, blocked
}

func (s *Syncer) event(ctx context.Context, typ, reason, msg string) {
	if s.cfg.Events == nil {
		return
	}
	// What happened is recorded even if this term ends right after it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.cfg.Events.Event(ctx, typ, reason, msg); err != nil {
		s.log.Warn("recording a Kubernetes event", "reason", reason, "err", err)
	}
}

func short(digest string) string {
	if len(digest) > len("sha256:")+12 {
		return digest[:len("sha256:")+12]
	}
	return digest
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func capText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "\n… (truncated)\n"
}
