package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The systemd lab (`netd lab up --systemd`, Config.Rootfs): every node is
// a systemd container (systemd-nspawn) in the node's network namespace,
// booted from one cached Debian root file system
// (scripts/systemd-rootfs.sh) through an overlay of its own, and runs the
// netd.service that the NixOS module renders for it (nixos_units.json,
// kinds "systemd*") with only the store paths mapped to files of the root
// file system (ContainerUnit). What the containers see of the lab:
//
//	/usr/local/bin/netd          the lab's netd (read-only bind)
//	/var/lib/netd-lab/           <statedir>/share, read-only: policy.yaml
//	/etc/netd/policy.yaml        -> /var/lib/netd-lab/policy.yaml (on NixOS a
//	                             link into the store)
//	/run/netd/netd.sock          netd's status socket (the lab reaches it
//	                             through /proc/<container systemd>/root)
//
// The lab drives systemd from outside with nsenter into the container's
// namespaces (Systemctl, Journal, InContainer).
const (
	// Kinds of the systemd lab's units (keys of nixos_units.json).
	KindSystemd          = "systemd"
	KindSystemdTailscale = "systemd-tailscale"
	KindSystemdKube      = "systemd-kube"

	netdUnit       = "netd.service"
	containerShare = "/var/lib/netd-lab"
	containerNetd  = "/usr/local/bin/netd"
	shareDir       = "share"
)

// SystemdLab is what lab.json records of a systemd lab.
type SystemdLab struct {
	// Rootfs is the cached root file system every container overlays.
	Rootfs string `json:"rootfs"`
	// Kind is the kind of unit the nodes run (nixos_units.json).
	Kind string `json:"kind"`
}

// storePrefixes maps the store path placeholders of a rendered unit to
// where the container's Debian root file system has the same files: netd
// at /usr/local/bin/netd, coreutils' kill and the service PATH's tools in
// /usr/bin, the zoneinfo and locale archive under /usr.
var storePrefixes = map[string]string{
	"netd":          "/usr/local",
	"coreutils":     "/usr",
	"findutils":     "/usr",
	"gnugrep":       "/usr",
	"gnused":        "/usr",
	"systemd":       "/usr",
	"glibc-locales": "/usr",
	"tzdata":        "/usr",
}

var placeholderRE = regexp.MustCompile(`@([A-Za-z0-9._+-]+)@`)

// ContainerUnit is the unit file of u with every store path placeholder
// mapped to the container's file; X-Reload-Triggers (a key systemd
// ignores) keeps its placeholder. Any other placeholder is an error: the
// container runs the module's unit or nothing.
func ContainerUnit(u NixOSUnit) (string, error) {
	var bad []string
	out := placeholderRE.ReplaceAllStringFunc(u.Unit, func(m string) string {
		name := m[1 : len(m)-1]
		if p, ok := storePrefixes[name]; ok {
			return p
		}
		if strings.HasPrefix(name, "X-Reload-Triggers-") {
			return m
		}
		bad = append(bad, m)
		return m
	})
	if len(bad) > 0 {
		return "", fmt.Errorf("unit has store paths the container cannot map: %s (netd/lab/systemd.go storePrefixes)", strings.Join(bad, " "))
	}
	return out, nil
}

// NetdUnitText is the netd.service a node of the systemd lab runs for the
// given kind (KindSystemd, ...), store paths mapped.
func NetdUnitText(kind, node string) (string, error) {
	u, err := NixOSUnitFor(kind, node)
	if err != nil {
		return "", err
	}
	return ContainerUnit(u)
}

// bootContainers boots every node's container (in parallel) with the
// unit of the given kind installed, netd not started yet.
func (l *Lab) bootContainers(ctx context.Context, rootfs, kind string, extraBinds map[string][]containerBind) error {
	if _, err := os.Stat(filepath.Join(rootfs, "usr/lib/systemd/systemd")); err != nil {
		return fmt.Errorf("root file system %s has no systemd (scripts/systemd-rootfs.sh builds it): %w", rootfs, err)
	}
	l.Systemd = &SystemdLab{Rootfs: rootfs, Kind: kind}
	share := filepath.Join(l.StateDir, shareDir)
	if err := os.MkdirAll(share, 0o755); err != nil {
		return fmt.Errorf("making %s: %w", share, err)
	}
	// The policy moves into the shared directory, readable by netd's
	// dynamic user (on NixOS it is in the world-readable store).
	b, err := os.ReadFile(l.PolicyPath)
	if err != nil {
		return fmt.Errorf("reading the lab's policy: %w", err)
	}
	shared := filepath.Join(share, policyFileName)
	if err := os.WriteFile(shared, b, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", shared, err)
	}
	if shared != l.PolicyPath {
		_ = os.Remove(l.PolicyPath)
		l.PolicyPath = shared
	}
	if err := l.save(); err != nil {
		return err
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, n := range l.Nodes {
		unit, err := NetdUnitText(kind, n.Name)
		if err != nil {
			return err
		}
		binds := append([]containerBind{
			{src: share, dst: containerShare, ro: true},
			{src: l.Netd, dst: containerNetd, ro: true},
		}, extraBinds[n.Name]...)
		p, err := l.startContainer(n, rootfs, binds, func(root string) error { return prepareRoot(root, n.Name, unit) })
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.waitBooted(ctx, n, p); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, n := range l.Nodes {
		if c := n.Container; c != nil && c.Leader != nil {
			n.Socket = c.Path("/run/netd/netd.sock")
			l.log.Info("container booted", "node", n.Name, "machine", c.Machine, "leader", c.Leader.PID, "took", c.Boot.Round(time.Millisecond))
		}
	}
	return errors.Join(append(errs, l.save())...)
}

// prepareRoot writes what a node's container needs before it boots: the
// unit and the policy link, as NixOS' activation would.
func prepareRoot(root, node, unit string) error {
	if err := os.WriteFile(filepath.Join(root, "etc/hostname"), []byte(node+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing hostname: %w", err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/systemd/system", netdUnit), []byte(unit), 0o644); err != nil {
		return fmt.Errorf("installing %s: %w", netdUnit, err)
	}
	if err := os.MkdirAll(filepath.Join(root, "etc/netd"), 0o755); err != nil {
		return err
	}
	link := filepath.Join(root, "etc/netd", policyFileName)
	_ = os.Remove(link)
	if err := os.Symlink(filepath.Join(containerShare, policyFileName), link); err != nil {
		return fmt.Errorf("linking the policy: %w", err)
	}
	return nil
}

// container returns the running container of a node.
func (l *Lab) container(node string) (*Node, *Container, error) {
	n, err := l.Node(node)
	if err != nil {
		return nil, nil, err
	}
	if n.Container == nil {
		return n, nil, fmt.Errorf("node %s is not a systemd container (netd lab up --systemd)", node)
	}
	return n, n.Container, nil
}

// InContainer runs a command inside a node's container (all of its
// namespaces, as root) and returns its combined output.
func (l *Lab) InContainer(ctx context.Context, node string, args ...string) (string, error) {
	_, c, err := l.container(node)
	if err != nil {
		return "", err
	}
	return l.inContainer(ctx, c, args...)
}

// Systemctl runs systemctl inside a node's container.
func (l *Lab) Systemctl(ctx context.Context, node string, args ...string) (string, error) {
	return l.InContainer(ctx, node, append([]string{"systemctl", "--no-pager"}, args...)...)
}

// Journal runs journalctl inside a node's container.
func (l *Lab) Journal(ctx context.Context, node string, args ...string) (string, error) {
	return l.InContainer(ctx, node, append([]string{"journalctl", "--no-pager", "-q"}, args...)...)
}

// ContainerPath is a path inside a node's running container as the host
// sees it (through /proc/<its systemd>/root).
func (l *Lab) ContainerPath(node, p string) (string, error) {
	_, c, err := l.container(node)
	if err != nil {
		return "", err
	}
	return c.Path(p), nil
}

// InstallNetdUnit replaces a node's netd.service by the unit of another
// kind (e.g. KindSystemdKube) and reloads systemd's configuration; it
// does not restart netd.
func (l *Lab) InstallNetdUnit(ctx context.Context, node, kind string) error {
	unit, err := NetdUnitText(kind, node)
	if err != nil {
		return err
	}
	p, err := l.ContainerPath(node, filepath.Join("/etc/systemd/system", netdUnit))
	if err != nil {
		return err
	}
	if err := os.WriteFile(p, []byte(unit), 0o644); err != nil {
		return fmt.Errorf("installing %s in %s: %w", netdUnit, node, err)
	}
	_, err = l.Systemctl(ctx, node, "daemon-reload")
	return err
}

// SetNetdDropIn writes (text != "") or removes (text == "") the runtime
// drop-in /run/systemd/system/netd.service.d/<name>.conf of a node and
// reloads systemd's configuration; it does not restart netd.
func (l *Lab) SetNetdDropIn(ctx context.Context, node, name, text string) error {
	p, err := l.ContainerPath(node, filepath.Join("/run/systemd/system", netdUnit+".d", name+".conf"))
	if err != nil {
		return err
	}
	if text == "" {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing drop-in: %w", err)
		}
	} else {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("making drop-in dir: %w", err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			return fmt.Errorf("writing drop-in: %w", err)
		}
	}
	_, err = l.Systemctl(ctx, node, "daemon-reload")
	return err
}

// startUnit starts a node's netd.service: systemctl start returns once
// netd has sent READY=1 (Type=notify), or fails.
func (l *Lab) startUnit(ctx context.Context, n *Node) error {
	start := time.Now()
	if _, err := l.Systemctl(ctx, n.Name, "start", netdUnit); err != nil {
		return fmt.Errorf("starting netd.service on %s: %w\n%s", n.Name, err, l.LogTail(n.Name, 15))
	}
	if err := l.refreshNetd(ctx, n); err != nil {
		return err
	}
	l.log.Info("netd.service active", "node", n.Name, "pid", n.Netd.PID, "took", time.Since(start).Round(time.Millisecond))
	return l.save()
}

// stopUnit stops a node's netd.service (the unit's own stop: SIGTERM,
// TimeoutStopSec).
func (l *Lab) stopUnit(ctx context.Context, n *Node) error {
	if _, err := l.Systemctl(ctx, n.Name, "stop", netdUnit); err != nil {
		return err
	}
	n.Netd = nil
	return l.save()
}

// refreshNetd sets n.Netd to the host pid of netd.service's main process
// (nil when the unit has none).
func (l *Lab) refreshNetd(ctx context.Context, n *Node) error {
	out, err := l.Systemctl(ctx, n.Name, "show", "-p", "MainPID", "--value", netdUnit)
	if err != nil {
		return err
	}
	inner, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		return fmt.Errorf("MainPID of netd.service on %s: %q", n.Name, out)
	}
	if inner == 0 {
		n.Netd = nil
		return nil
	}
	pid, err := hostPID(n.Container.Leader.PID, inner)
	if err != nil {
		return fmt.Errorf("netd of %s: %w", n.Name, err)
	}
	ticks, _ := startTicks(pid)
	if n.Netd == nil || n.Netd.PID != pid || n.Netd.StartTicks != ticks {
		n.Netd = &Process{PID: pid, StartTicks: ticks, Started: time.Now()}
	}
	return nil
}

// MainPID returns the host pid of a node's netd.service main process,
// asking systemd (0 when it has none).
func (l *Lab) MainPID(ctx context.Context, node string) (int, error) {
	n, _, err := l.container(node)
	if err != nil {
		return 0, err
	}
	if err := l.refreshNetd(ctx, n); err != nil {
		return 0, err
	}
	if n.Netd == nil {
		return 0, nil
	}
	return n.Netd.PID, nil
}

// netdUp returns an error when a node's netd is not running and will not
// come back by itself: a bare netd that exited, or a unit that failed.
// A unit restarting (Restart=) is pending, not an error.
func (l *Lab) netdUp(ctx context.Context, n *Node) (running bool, err error) {
	if n.Container == nil {
		if n.Netd == nil || !alive(n.Netd) {
			return false, fmt.Errorf("netd of %s is not running: %s", n.Name, l.LogTail(n.Name, 10))
		}
		return true, nil
	}
	if n.Netd != nil && alive(n.Netd) {
		return true, nil
	}
	if err := l.refreshNetd(ctx, n); err != nil {
		return false, err
	}
	if n.Netd != nil {
		return true, nil
	}
	state, _ := l.Systemctl(ctx, n.Name, "show", "-p", "ActiveState", "--value", netdUnit)
	if s := strings.TrimSpace(state); s == "failed" || s == "inactive" {
		return false, fmt.Errorf("netd.service of %s is %s: %s", n.Name, s, l.LogTail(n.Name, 10))
	}
	return false, nil
}

// downContainers stops every container of the lab, those recorded in
// lab.json and, after a crash that lost it, those found in the lab's
// cgroups; then unmounts what is left under the containers' directory.
func (l *Lab) downContainers(ctx context.Context) []error {
	var errs []error
	for _, n := range l.Nodes {
		if n.Container == nil {
			continue
		}
		if err := l.stopContainer(ctx, n, 20*time.Second); err != nil {
			errs = append(errs, err)
			continue
		}
		n.Netd = nil
	}
	cgs, err := containerCgroups(l.Name, "")
	if err != nil {
		return append(errs, err)
	}
	for _, root := range cgs {
		ents, _ := os.ReadDir(root)
		for _, e := range ents {
			if !e.IsDir() {
				continue
			}
			node := &Node{Name: e.Name(), Container: &Container{
				Machine: l.Name + "-" + e.Name(), Dir: filepath.Join(l.StateDir, "containers", e.Name()),
			}}
			node.Container.Cgroups, _ = containerCgroups(l.Name, e.Name())
			l.log.Warn("removing a container the lab state does not record", "node", e.Name())
			if err := l.stopContainer(ctx, node, 0); err != nil {
				errs = append(errs, err)
			}
		}
	}
	dir := filepath.Join(l.StateDir, "containers")
	if err := unmountAll(dir); err != nil {
		return append(errs, err)
	}
	if len(errs) == 0 {
		_ = os.RemoveAll(dir)
		_ = os.RemoveAll(filepath.Join(l.StateDir, shareDir))
		ents, _ := filepath.Glob(filepath.Join(l.StateDir, "*.console.log"))
		for _, e := range ents {
			_ = os.Remove(e)
		}
	}
	return errs
}
