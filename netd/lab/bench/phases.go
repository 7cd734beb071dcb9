package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/policy/desired"
)

// Daemon names in the result.
const (
	Netd   = "netd"
	GoBGPd = "gobgpd"
	BIRD   = "BIRD"
)

// blocksOf returns the pod blocks of every node except skip.
func (r *run) blocksOf(skip string) []netip.Prefix {
	var out []netip.Prefix
	for _, n := range r.st.Nodes {
		if n.Name != skip {
			out = append(out, n.PodCIDRs...)
		}
	}
	return out
}

// nodeNS is the namespace of a node.
func (r *run) nodeNS(name string) string { return r.lab.Name + "-" + name }

// kernelBack reports whether every node's kernel table has the blocks of
// all the others (routes of protocol proto; 0: any).
func (r *run) kernelBack(proto int) (bool, error) {
	for _, n := range r.st.Nodes {
		have, err := kernelRoutes(r.nodeNS(n.Name), r.st.Routing.Table, proto)
		if err != nil {
			return false, err
		}
		if !hasAll(have, r.blocksOf(n.Name)) {
			return false, nil
		}
	}
	return true, nil
}

// nodePeerNames are n's peers that are nodes (the sessions that must be
// Established: the external peers are absent from the lab).
func nodePeerNames(n *desired.Node) []string {
	var out []string
	for _, p := range n.BGP.Peers {
		if p.Kind == desired.PeerNode {
			out = append(out, p.Name)
		}
	}
	return out
}

func (r *run) birdPhase(ctx context.Context) error {
	noBFD := map[netip.Addr]bool{edgeAddr.Addr(): true}
	birds := map[string]*daemon{}
	confs := map[string]string{}
	defer func() {
		for _, d := range birds {
			_ = r.lab.SignalProc(d.key, syscall.SIGKILL)
			_ = r.lab.StopProc(context.WithoutCancel(ctx), d.key, 5*time.Second)
			_, _ = ipCmd(context.WithoutCancel(ctx), "-n", d.ns, "route", "flush", "table", fmt.Sprint(r.st.Routing.Table))
		}
	}()
	for i := range r.st.Nodes {
		n := &r.st.Nodes[i]
		confs[n.Name] = birdNodeConf(n, r.st.Overlay, r.st.Networks.Overlay, r.st.Routing.Table, r.cfg.BFD, noBFD)
		d, err := r.startBIRD(r.nodeNS(n.Name), n.Name, confs[n.Name])
		if err != nil {
			return err
		}
		birds[n.Name] = d
	}
	established := func(name string) (bool, error) {
		var protos []string
		for _, p := range nodePeerNames(r.node(name)) {
			protos = append(protos, birdName(p))
		}
		return birds[name].birdEstablished(ctx, protos)
	}
	back := func(ctx context.Context) (bool, error) {
		if ok, err := established(benchNode); !ok || err != nil {
			return false, err
		}
		return r.kernelBack(0)
	}
	if _, err := testutil.Every(100*time.Millisecond).Wait(ctx, time.Minute, "sessions and routes", func() (bool, error) { return back(ctx) }); err != nil {
		return fmt.Errorf("BIRD lab did not converge: %w", err)
	}
	if err := pause(ctx, r.cfg.Settle); err != nil {
		return err
	}
	idle, err := measureIdle(ctx, pidsOf(birds), r.cfg.Idle)
	if err != nil {
		return err
	}
	r.res.Idle[BIRD] = idle
	// A failed figure does not stop the others.
	g, gerr := r.growth(ctx, func() int { return birds[benchNode].pid }, r.kernelCount(0))
	if gerr == nil {
		r.res.Growth[BIRD] = g
	}
	times, err := r.rejoin(ctx, restarter{
		stop: func(ctx context.Context, sig syscall.Signal) error {
			d := birds[benchNode]
			if err := r.lab.SignalProc(d.key, sig); err != nil {
				return err
			}
			return r.lab.StopProc(ctx, d.key, 10*time.Second)
		},
		start: func(context.Context) error {
			d, err := r.startBIRD(r.nodeNS(benchNode), benchNode, confs[benchNode])
			if err == nil {
				birds[benchNode] = d
			}
			return err
		},
		back: back,
	})
	r.res.Rejoin[BIRD] = times
	return errors.Join(gerr, err)
}

func pidsOf(ds map[string]*daemon) []int {
	var out []int
	for _, d := range ds {
		out = append(out, d.pid)
	}
	return out
}

func (r *run) gobgpdPhase(ctx context.Context) error {
	ds := map[string]*daemon{}
	defer func() {
		for _, d := range ds {
			_ = r.lab.StopProc(context.WithoutCancel(ctx), d.key, 5*time.Second)
		}
	}()
	for i := range r.st.Nodes {
		n := &r.st.Nodes[i]
		d, err := r.startGoBGPd(ctx, r.nodeNS(n.Name), n.Name, gobgpdNodeConf(n), n.OverlayAddr, n.PodCIDRs)
		if err != nil {
			return err
		}
		ds[n.Name] = d
	}
	total := len(r.blocksOf(""))
	_, err := testutil.Every(100*time.Millisecond).Wait(ctx, time.Minute, "every gobgpd's routes", func() (bool, error) {
		for _, d := range ds {
			c, err := d.gobgpDestinations(ctx)
			if up := err == nil && c >= total; !up {
				return false, nil // an error: not up yet
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("gobgpd lab did not converge: %w", err)
	}
	if err := pause(ctx, r.cfg.Settle); err != nil {
		return err
	}
	idle, err := measureIdle(ctx, pidsOf(ds), r.cfg.Idle)
	if err != nil {
		return err
	}
	r.res.Idle[GoBGPd] = idle
	d := ds[benchNode]
	g, err := r.growth(ctx, func() int { return d.pid }, func() (int, error) {
		c, err := d.gobgpDestinations(ctx)
		return c - total, err
	})
	r.res.Growth[GoBGPd] = g
	return err
}

func (r *run) netdPhase(ctx context.Context) error {
	defer func() {
		for _, n := range r.st.Nodes {
			_ = r.lab.StopNetd(context.WithoutCancel(ctx), n.Name, 10*time.Second)
		}
	}()
	var names []string
	for _, n := range r.st.Nodes {
		if err := r.lab.StartNetd(ctx, n.Name); err != nil {
			return err
		}
		names = append(names, n.Name)
	}
	cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	err := r.lab.WaitConverged(cctx, names)
	cancel()
	if err != nil {
		return err
	}
	if err := pause(ctx, r.cfg.Settle); err != nil {
		return err
	}
	var pids []int
	var heap []float64
	for _, name := range names {
		n, err := r.lab.Node(name)
		if err != nil {
			return err
		}
		pids = append(pids, n.Netd.PID)
		h, err := metricIn(ctx, n.NS, "127.0.0.1:9180", "go_memstats_heap_inuse_bytes")
		if err != nil {
			r.log.Warn("reading netd's Go heap", "node", name, "err", err)
			continue
		}
		heap = append(heap, h)
	}
	idle, err := measureIdle(ctx, pids, r.cfg.Idle)
	if err != nil {
		return err
	}
	idle.Heap = median(heap)
	r.res.Idle[Netd] = idle
	netdPID := func() int {
		n, err := r.lab.Node(benchNode)
		if err != nil || n.Netd == nil {
			return 0
		}
		return n.Netd.PID
	}
	g, gerr := r.growth(ctx, netdPID, r.kernelCount(r.st.Routing.Protocol))
	if gerr == nil {
		r.res.Growth[Netd] = g
	}
	self := r.node(benchNode)
	back := func(ctx context.Context) (bool, error) {
		if !r.lab.NetdRunning(benchNode) {
			return false, nil
		}
		if !r.netdEstablished(ctx, nodePeerNames(self)) {
			return false, nil
		}
		return r.kernelBack(r.st.Routing.Protocol)
	}
	times, err := r.rejoin(ctx, restarter{
		stop: func(ctx context.Context, sig syscall.Signal) error {
			if sig == syscall.SIGKILL {
				return r.lab.KillNetd(ctx, benchNode)
			}
			return r.lab.StopNetd(ctx, benchNode, 10*time.Second)
		},
		start: func(ctx context.Context) error { return r.lab.StartNetd(ctx, benchNode) },
		back:  back,
	})
	r.res.Rejoin[Netd] = times
	return errors.Join(gerr, err)
}

// ipCmd runs ip(8).
func ipCmd(ctx context.Context, args ...string) (string, error) {
	out, err := execOut(ctx, "ip", args...)
	if err != nil {
		return out, fmt.Errorf("ip %v: %w: %s", args, err, out)
	}
	return out, nil
}

// netdEstablished reports whether the bench node's netd answers and has
// every one of peers Established.
func (r *run) netdEstablished(ctx context.Context, peers []string) bool {
	states, err := r.lab.PeerStates(ctx, benchNode)
	if err != nil {
		return false // not answering yet
	}
	for _, p := range peers {
		if states[p] != "established" {
			return false
		}
	}
	return true
}
