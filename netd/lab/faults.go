package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
)

// StartNetdArgs starts a node's netd like StartNetd, with extra arguments
// appended (for example "--stop-mode", "graceful" or "--bfd=false").
func (l *Lab) StartNetdArgs(ctx context.Context, node string, extra ...string) error {
	n, err := l.Node(node)
	if err != nil {
		return err
	}
	if n.Netd != nil && alive(n.Netd) {
		return fmt.Errorf("netd of %s already runs as pid %d", node, n.Netd.PID)
	}
	logf, err := os.OpenFile(n.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening log: %w", err)
	}
	defer logf.Close()
	_ = os.Remove(n.Socket)
	args := append([]string{"netns", "exec", n.NS, l.Netd, "run",
		"--policy", l.PolicyPath, "--node", n.Name, "--socket", n.Socket,
		"--state-dir", filepath.Join(l.StateDir, n.Name),
		"--metrics-addr", DefaultMetricsAddr, "--log-format", "json"}, extra...)
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting netd for %s: %w", node, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	l.procs[node] = p
	ticks, _ := startTicks(cmd.Process.Pid)
	n.Netd = &Process{PID: cmd.Process.Pid, StartTicks: ticks, Started: time.Now()}
	l.log.Info("started netd", "node", node, "pid", n.Netd.PID, "ns", n.NS, "extra", extra)
	return l.save()
}

// KillNetd ends a node's netd with SIGKILL (a crash: nothing is withdrawn,
// no marker is written) and waits until it is gone.
func (l *Lab) KillNetd(ctx context.Context, node string) error {
	n, err := l.Node(node)
	if err != nil {
		return err
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
// stay open and silent; SIGCONT thaws it).
func (l *Lab) SignalNetd(node string, sig syscall.Signal) error {
	n, err := l.Node(node)
	if err != nil {
		return err
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
// down: a cut without any packet telling the peers (no TCP FIN).
func (l *Lab) SetOverlayLink(node string, up bool) error {
	for i, n := range l.Nodes {
		if n.Name != node {
			continue
		}
		port := ifname("w", i, n.Name)
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
