package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
)

// Router is an extra namespace on the LAN or overlay bridge for a BGP
// daemon nobody here wrote (BIRD, FRR, gobgpd): a home router on the LAN,
// or a peer on the overlay.
type Router struct {
	Name string       `json:"name"`
	NS   string       `json:"ns"`
	Addr netip.Prefix `json:"addr"`
	// BridgeNS and Port are its port on the bridge (SetRouterLink).
	BridgeNS string `json:"bridgeNS"`
	Port     string `json:"port"`
}

// Bridges a Router can sit on.
const (
	OnLAN = "lan"
	OnWAN = "wan"
)

// AddRouter makes namespace "<lab>-<name>" with eth0 (address addr) on the
// LAN bridge (on = OnLAN; the first LAN) or the overlay bridge (OnWAN). A
// LAN router gets a route to each LAN node's overlay address via the
// node's LAN address, since netd speaks BGP only from the overlay address.
// Down removes it with the rest of the lab.
func (l *Lab) AddRouter(ctx context.Context, name, on string, addr netip.Prefix) (*Router, error) {
	r := &Router{Name: name, NS: l.Name + "-" + name, Addr: addr}
	var brNS string
	mtu := l.Overlay.MTU
	switch on {
	case OnLAN:
		if len(l.LANs) == 0 {
			return nil, fmt.Errorf("lab %s has no LAN", l.Name)
		}
		brNS, mtu = l.LANs[0].NS, l.LANs[0].MTU
	case OnWAN:
		brNS = l.WAN
	default:
		return nil, fmt.Errorf("router %s: on must be %q or %q, not %q", name, OnLAN, OnWAN, on)
	}
	// Recorded before it is made, so that Down finds it after a crash.
	if nsExists(r.NS) {
		return nil, fmt.Errorf("namespace %s already exists", r.NS)
	}
	l.Namespaces = append(l.Namespaces, r.NS)
	if err := l.save(); err != nil {
		return nil, err
	}
	if err := addNS(ctx, r.NS); err != nil {
		return nil, err
	}
	if err := withHandle(r.NS, func(h *netlink.Handle) error { return linkUp(h, "lo") }); err != nil {
		return nil, err
	}
	r.BridgeNS, r.Port = brNS, ifname("r", len(l.Namespaces), name)
	if err := l.uplink(r.NS, "eth0", addr, mtu, brNS, r.Port); err != nil {
		return nil, err
	}
	if on != OnLAN {
		return r, nil
	}
	err := withHandle(r.NS, func(h *netlink.Handle) error {
		lk, err := h.LinkByName("eth0")
		if err != nil {
			return fmt.Errorf("finding eth0: %w", err)
		}
		for _, n := range l.Nodes {
			if !n.LANAddr.IsValid() || n.LAN != l.LANs[0].Name {
				continue
			}
			rt := &netlink.Route{LinkIndex: lk.Attrs().Index, Dst: ipnet(netip.PrefixFrom(n.OverlayAddr, 32)), Gw: n.LANAddr.AsSlice()}
			if err := h.RouteAdd(rt); err != nil {
				return fmt.Errorf("adding route to %s via %s: %w", n.OverlayAddr, n.LANAddr, err)
			}
		}
		return nil
	})
	return r, err
}

// Spawn starts argv in namespace ns in its own session, logging to
// logPath, and registers it under key for StopProc. It returns once the
// process runs in ns, so that Down, which ends whatever runs in the lab's
// namespaces, finds it.
func (l *Lab) Spawn(key, ns, logPath string, argv ...string) (*Process, error) {
	if _, ok := l.procs[key]; ok {
		return nil, fmt.Errorf("process %q already started", key)
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", key, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	l.procs[key] = p
	ticks, _ := startTicks(cmd.Process.Pid)
	l.log.Info("started", "proc", key, "pid", cmd.Process.Pid, "ns", ns)
	pid := cmd.Process.Pid
	if err := waitStarted(context.Background(), p, key, func() bool { in, _ := PIDInNS(pid, ns); return in }); err != nil {
		return nil, err
	}
	return &Process{PID: pid, StartTicks: ticks, Started: time.Now()}, nil
}

// ProcRunning reports whether the process started under key still runs.
func (l *Lab) ProcRunning(key string) bool {
	p, ok := l.procs[key]
	if !ok {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// StopProc ends the process started under key (SIGTERM, SIGKILL after
// grace) and waits for it.
func (l *Lab) StopProc(ctx context.Context, key string, grace time.Duration) error {
	p, ok := l.procs[key]
	if !ok {
		return nil
	}
	err := l.kill(ctx, p.cmd.Process.Pid, grace)
	delete(l.procs, key)
	return err
}

// SignalProc sends sig to the process started under key.
func (l *Lab) SignalProc(key string, sig syscall.Signal) error {
	p, ok := l.procs[key]
	if !ok {
		return fmt.Errorf("no process %q", key)
	}
	return syscall.Kill(p.cmd.Process.Pid, sig)
}

// SetRouterLink sets a router's port on its bridge up or down (a silent
// cut).
func (l *Lab) SetRouterLink(r *Router, up bool) error {
	return withHandle(r.BridgeNS, func(h *netlink.Handle) error {
		lk, err := h.LinkByName(r.Port)
		if err != nil {
			return fmt.Errorf("finding %s in %s: %w", r.Port, r.BridgeNS, err)
		}
		if up {
			return h.LinkSetUp(lk)
		}
		return h.LinkSetDown(lk)
	})
}
