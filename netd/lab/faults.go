package lab

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
)

// KillNetd ends a node's netd with SIGKILL (a crash: nothing is withdrawn,
// no marker is written) and waits until it is gone.
func (l *Lab) KillNetd(ctx context.Context, node string) error {
	n, err := l.Node(node)
	if err != nil {
		return err
	}
	if n.Container != nil {
		if err := l.refreshNetd(ctx, n); err != nil {
			return err
		}
	}
	if n.Netd == nil || !alive(n.Netd) {
		return fmt.Errorf("netd of %s is not running", node)
	}
	pid := n.Netd.PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing netd of %s (pid %d): %w", node, pid, err)
	}
	if !waitGone(ctx, l.procByPID(pid), pid, 10*time.Second) {
		return fmt.Errorf("netd of %s (pid %d) still there after SIGKILL", node, pid)
	}
	n.Netd = nil
	delete(l.procs, node)
	return l.save()
}

// SignalNetd sends sig to a node's netd (SIGSTOP freezes it: its sockets
// stay open and silent; SIGCONT thaws it). In the systemd lab the pid is
// netd.service's main process.
func (l *Lab) SignalNetd(node string, sig syscall.Signal) error {
	n, err := l.Node(node)
	if err != nil {
		return err
	}
	if n.Container != nil {
		if err := l.refreshNetd(context.Background(), n); err != nil {
			return err
		}
	}
	if n.Netd == nil || !alive(n.Netd) {
		return fmt.Errorf("netd of %s is not running", node)
	}
	if err := syscall.Kill(n.Netd.PID, sig); err != nil {
		return fmt.Errorf("signalling netd of %s: %w", node, err)
	}
	return nil
}

// SetOverlayLink sets a node's port on the overlay (WAN) bridge up or
// down: a cut without any packet telling the peers (no TCP FIN). In the
// tailnet lab that is the port of the node's underlay (wan0, which
// tailscaled's WireGuard packets take): tailscale0 stays up and silent.
func (l *Lab) SetOverlayLink(node string, up bool) error {
	for i, n := range l.Nodes {
		if n.Name != node {
			continue
		}
		port := ifname("w", i, n.Name)
		if _, ok := l.TailscaleSockets[n.Name]; ok {
			port = ifname("t", i, n.Name)
		}
		return withHandle(l.WAN, func(h *netlink.Handle) error {
			lk, err := h.LinkByName(port)
			if err != nil {
				return fmt.Errorf("finding %s in %s: %w", port, l.WAN, err)
			}
			if up {
				return h.LinkSetUp(lk)
			}
			return h.LinkSetDown(lk)
		})
	}
	return fmt.Errorf("no node %q in lab %s", node, l.Name)
}
