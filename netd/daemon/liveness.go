package daemon

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ducksnest/netd/bgp"
	"github.com/ducksnest/netd/netd/bfd"
	"github.com/ducksnest/netd/netd/probe"
	"github.com/ducksnest/netd/netd/routes"
	"github.com/ducksnest/netd/policy/desired"
)

// BFDConfig is the fast failure detection of BGP peers (see package bfd).
type BFDConfig struct {
	Enabled    bool
	Interval   time.Duration // desired transmit and required receive interval (default 100ms)
	Multiplier int           // detect multiplier (default 8)
	HoldDown   time.Duration // first re-admission hold-down (default 1s)
	// WarnAfter is how long a session may stay without coming up before
	// status and the log warn about it (default 30s).
	WarnAfter time.Duration
}

// BFDStatus is the BFD part of the status: the configured timers and every
// session.
type BFDStatus struct {
	Interval   string    `json:"interval"`
	Multiplier int       `json:"multiplier"`
	Peers      []BFDPeer `json:"peers"`
}

// BFDPeer is one session, with the BGP peer's name.
type BFDPeer struct {
	Name string `json:"name,omitempty"`
	bfd.PeerState
}

// bfdStatus reports the sessions of s, named after the node's BGP peers.
func bfdStatus(cfg BFDConfig, s *bfd.Server, current func() (*desired.State, *desired.Node)) *BFDStatus {
	_, self := current()
	names := map[netip.Addr]string{}
	for _, p := range self.BGP.Peers {
		names[p.Address] = p.Name
	}
	out := &BFDStatus{
		Interval:   cmp.Or(cfg.Interval, bfd.DefaultTxInterval).String(),
		Multiplier: cmp.Or(cfg.Multiplier, bfd.DefaultMultiplier), Peers: []BFDPeer{},
	}
	for _, ps := range s.States() {
		out.Peers = append(out.Peers, BFDPeer{Name: names[ps.Peer], PeerState: ps})
	}
	return out
}

// bfdHint says what to check when the session with peer never comes up:
// for a node over the overlay, the tailnet policy and the firewalls; an
// external peer (a router) may simply not run BFD, which is no problem.
func bfdHint(current func() (*desired.State, *desired.Node), peer netip.Addr) string {
	st, self := current()
	for _, p := range self.BGP.Peers {
		if p.Address == peer && p.Kind == desired.PeerExternal {
			return ""
		}
	}
	if st.Networks.Overlay.IsValid() && !st.Networks.Overlay.Contains(peer) {
		return ""
	}
	return fmt.Sprintf("is UDP %d allowed on the tailnet? The tailnet policy must allow it between the nodes (`netd policy check` says whether it does; the generated policy does while spec.bgp.bfd.enabled), and so must the peer's firewall on %s (NixOS: services.netd.openFirewall); and the peer's netd must run BFD too (--bfd)",
		bfd.DefaultPort, cmp.Or(st.Overlay.Interface, "the overlay device"))
}

func speakerOptions(cfg Config) []bgp.Option {
	var opts []bgp.Option
	if cfg.GRPCAddr != "" {
		opts = append(opts, bgp.WithGRPC(cfg.GRPCAddr))
	}
	return opts
}

// newBFD builds the BFD server of the node's overlay address, the optional
// part that is the daemon's peerWatcher when BFD is on, and the path guard
// its reports go through (pathguard.go): a node peer found down is cut off
// (its routes leave the kernel) only if its node does not answer on the
// paths its routes use; an external peer found down while its BGP session
// is up is cut off at once; a peer back up past the hold-down is
// re-admitted. Both are parts of the daemon.
func newBFD(cfg Config, current func() (*desired.State, *desired.Node), sp *bgp.Speaker, reg prometheus.Registerer) (*bfd.Server, *pathGuard, error) {
	if cfg.BFD.Multiplier < 0 || cfg.BFD.Multiplier > 255 {
		return nil, nil, fmt.Errorf("bfd multiplier %d out of range 1-255", cfg.BFD.Multiplier)
	}
	guard, err := newPathGuard(cfg.Log.With("component", "bfd"), sp, probe.Echo{}.Answered, guardedPaths(current), reg)
	if err != nil {
		return nil, nil, fmt.Errorf("bfd path guard: %w", err)
	}
	st, self := current()
	if !self.BGP.BFD {
		cfg.Log.Warn("bfd is on (netd run --bfd) but the policy turns it off (spec.bgp.bfd.enabled: false), so the tailnet policy generated from it does not allow UDP 3784 between the nodes; set spec.bgp.bfd.enabled: true, or run with --bfd=false",
			"policy", st.Source)
	}
	s, err := bfd.New(bfd.Config{
		Local: self.BGP.ListenAddr, TxInterval: cfg.BFD.Interval, Multiplier: uint8(cfg.BFD.Multiplier),
		HoldDown: cfg.BFD.HoldDown, WarnAfter: cfg.BFD.WarnAfter, Log: cfg.Log.With("component", "bfd"),
		Hint:     func(peer netip.Addr) string { return bfdHint(current, peer) },
		OnChange: guard.changed,
		OnQuiet:  guard.quiet,
	}, reg)
	if err != nil {
		return nil, nil, fmt.Errorf("bfd: %w", err)
	}
	s.SetPeers(bfdPeers(self))
	return s, guard, nil
}

// bfdPeers are every BGP peer of the node: the other nodes over the
// overlay, and external peers (a router that does not speak BFD just never
// comes up, which changes nothing).
func bfdPeers(self *desired.Node) []netip.Addr {
	out := make([]netip.Addr, 0, len(self.BGP.Peers))
	for _, p := range self.BGP.Peers {
		out = append(out, p.Address)
	}
	return out
}

// restarting reports whether this start is a restart whose peers kept
// this node's routes: the previous netd stopped gracefully (the marker),
// or it died (kill -9, a crash) but left its routes in the kernel, which is
// the forwarding state RFC 4724 asks a restarting speaker to have kept.
// Either way the sessions announce the Restart State and Forwarding State
// bits, so peers keep the stale routes until End-of-RIB instead of
// dropping them when the new session comes up. It also returns the next
// hops of the routes left in the kernel: the speaker keeps them until the
// peers behind those next hops have re-announced (or their restart time
// passed).
func (d *Daemon) restarting(rt *routes.Reconciler, self *desired.Node) (bool, []netip.Addr) {
	if !self.BGP.GracefulRestart.Enabled {
		return false, nil
	}
	marked, err := takeGracefulMarker(d.cfg.StateDir, self.BGP.GracefulRestart.RestartTime)
	if err != nil {
		d.log.Warn("reading graceful restart marker", "err", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	have, err := rt.Installed(ctx)
	if err != nil {
		d.log.Warn("reading routes left by a previous netd", "err", err)
	}
	var hops []netip.Addr
	for _, r := range have {
		for _, h := range r.NextHops {
			if h.Gateway.IsValid() && !slices.Contains(hops, h.Gateway) {
				hops = append(hops, h.Gateway)
			}
		}
	}
	switch {
	case marked:
		d.log.Info("previous netd stopped gracefully: restarting with the graceful restart R-bit", "routes", len(have))
		return true, hops
	case len(have) > 0:
		d.log.Info("routes of a previous netd are in the kernel (forwarding state kept): restarting with the graceful restart R-bit", "routes", len(have))
		return true, hops
	}
	return false, nil
}
