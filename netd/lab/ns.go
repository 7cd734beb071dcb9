package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// netnsDir is where iproute2 keeps named namespaces.
const netnsDir = "/run/netns"

// InNS runs fn on an OS thread switched into the named network namespace.
// Sockets fn creates stay in that namespace after InNS returns. If the
// thread cannot be switched back, it is left locked so that the runtime
// throws it away.
func InNS(name string, fn func() error) error {
	target, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("opening namespace %s: %w", name, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("opening current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering namespace %s: %w", name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leaving namespace %s: %w", name, err))
			return // thread stays locked and dies with the goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// withHandle runs fn with a netlink handle bound to the named namespace.
func withHandle(name string, fn func(h *netlink.Handle) error) error {
	ns, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("opening namespace %s: %w", name, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink handle in %s: %w", name, err)
	}
	defer h.Close()
	return fn(h)
}

// sysctl writes value to /proc/sys/<key> (key with dots or slashes) inside ns.
func sysctl(ns string, kv ...string) error {
	return InNS(ns, func() error {
		for i := 0; i+1 < len(kv); i += 2 {
			p := filepath.Join("/proc/sys", strings.ReplaceAll(kv[i], ".", "/"))
			if err := os.WriteFile(p, []byte(kv[i+1]), 0o644); err != nil {
				return fmt.Errorf("sysctl %s=%s in %s: %w", kv[i], kv[i+1], ns, err)
			}
		}
		return nil
	})
}

// ipCmd runs iproute2's ip with args.
func ipCmd(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func nsExists(name string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, name))
	return err == nil
}

func addNS(ctx context.Context, name string) error {
	if nsExists(name) {
		return fmt.Errorf("namespace %s already exists (run lab down first)", name)
	}
	_, err := ipCmd(ctx, "netns", "add", name)
	return err
}

// delNS deletes a named namespace; a missing one is not an error.
func delNS(ctx context.Context, name string) error {
	if !nsExists(name) {
		return nil
	}
	_, err := ipCmd(ctx, "netns", "del", name)
	if err != nil && !nsExists(name) {
		return nil
	}
	return err
}

// ownNamespaces returns the namespaces the lab made (as its state lists
// them) that exist.
func (l *Lab) ownNamespaces() []string {
	var out []string
	for _, ns := range l.Namespaces {
		if nsExists(ns) {
			out = append(out, ns)
		}
	}
	return out
}

// nsPIDs returns the pids of the processes in the named namespace.
func nsPIDs(ctx context.Context, name string) ([]int, error) {
	out, err := ipCmd(ctx, "netns", "pids", name)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

// PIDInNS reports whether process pid runs in the named network namespace
// (its /proc/PID/ns/net is the namespace's file). "ip netns exec NS cmd"
// enters NS only after it started: wait for this before acting on what
// runs in NS (ip netns pids, lab down).
func PIDInNS(pid int, ns string) (bool, error) {
	want, err := os.Stat(filepath.Join(netnsDir, ns))
	if err != nil {
		return false, fmt.Errorf("namespace %s: %w", ns, err)
	}
	got, err := os.Stat(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return false, fmt.Errorf("network namespace of process %d: %w", pid, err)
	}
	return os.SameFile(want, got), nil
}
