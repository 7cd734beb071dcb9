package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The tailnet lab under systemd (`netd lab up --systemd --overlay
// tailscale`): each node's tailscaled runs as tailscaled.service inside the
// node's container, next to netd.service, as on a NixOS node. So the
// module's ordering (After=/Wants=tailscaled.service) means something, and
// tailscaled resolves its operator ("netd", the module's dynamic user, as
// nixos/profiles/tailscale.nix sets it) through the container's NSS
// (libnss-systemd), which is what lets netd's dynamic user write the
// advertised routes over the LocalAPI. The host reaches the LocalAPI
// socket through a bind of the node's tailnet directory.
const (
	containerTailscaled = "/usr/local/bin/tailscaled"
	tailscaledUnit      = "tailscaled.service"
	// netdOperator is the Tailscale operator the hosts set
	// (nixos/profiles/tailscale.nix: --operator=netd).
	netdOperator = "netd"
)

// tailscaledUnitText is the lab's tailscaled.service: the lab's offline
// flags (no log upload, DERP over plain HTTP to the lab's headscale) with
// state and socket where NixOS' services.tailscale keeps them.
const tailscaledUnitText = `[Unit]
Description=Tailscale node agent (netd lab)
Wants=network-pre.target
After=network-pre.target

[Service]
Type=notify
Environment=TS_NO_LOGS_NO_SUPPORT=true TS_DEBUG_USE_DERP_HTTP=1 TS_LOGS_DIR=/var/lib/tailscale
ExecStart=` + containerTailscaled + ` --state=/var/lib/tailscale/tailscaled.state --statedir=/var/lib/tailscale --socket=/run/tailscale/tailscaled.sock --tun=tailscale0 --port=41641 --no-logs-no-support
`

// bootSystemd copies netd into the state dir and boots every node's
// container with the systemd-tailscale unit, tailscaled's binary, its
// state and socket directories and /dev/net/tun bound in.
func (tn *Tailnet) bootSystemd(ctx context.Context, rootfs string) error {
	l := tn.lab
	bin := filepath.Join(l.StateDir, "netd")
	if err := copyFile(l.Netd, bin, 0o755); err != nil {
		return fmt.Errorf("copying netd into the state dir: %w", err)
	}
	l.Netd = bin
	binds := map[string][]containerBind{}
	for _, n := range l.Nodes {
		state, run := filepath.Join(tn.Dir, n.Name), filepath.Join(tn.Dir, n.Name, "run")
		if err := os.MkdirAll(run, 0o755); err != nil {
			return fmt.Errorf("making %s: %w", run, err)
		}
		binds[n.Name] = []containerBind{
			{src: tn.TailscaledBin, dst: containerTailscaled, ro: true},
			{src: state, dst: "/var/lib/tailscale"},
			{src: run, dst: "/run/tailscale"},
			{src: "/dev/net/tun", dst: "/dev/net/tun"},
		}
	}
	return l.bootContainers(ctx, rootfs, KindSystemdTailscale, binds)
}

// startTailscaledUnit installs and starts tailscaled.service in a node's
// container and records its main process.
func (tn *Tailnet) startTailscaledUnit(ctx context.Context, n *Node) error {
	l := tn.lab
	p, err := l.ContainerPath(n.Name, filepath.Join("/etc/systemd/system", tailscaledUnit))
	if err != nil {
		return err
	}
	if err := os.WriteFile(p, []byte(tailscaledUnitText), 0o644); err != nil {
		return fmt.Errorf("installing %s in %s: %w", tailscaledUnit, n.Name, err)
	}
	sock := filepath.Join(tn.Dir, n.Name, "run", "tailscaled.sock")
	_ = os.Remove(sock)
	for _, args := range [][]string{{"daemon-reload"}, {"reset-failed", tailscaledUnit}, {"start", tailscaledUnit}} {
		if _, err := l.Systemctl(ctx, n.Name, args...); err != nil && args[0] != "reset-failed" {
			out, _ := l.Journal(ctx, n.Name, "-u", tailscaledUnit, "-n", "15", "-o", "cat")
			return fmt.Errorf("%w\n%s", err, out)
		}
	}
	out, err := l.Systemctl(ctx, n.Name, "show", "-p", "MainPID", "--value", tailscaledUnit)
	if err != nil {
		return err
	}
	var inner int
	if _, err := fmt.Sscan(strings.TrimSpace(out), &inner); err != nil || inner == 0 {
		return fmt.Errorf("tailscaled.service of %s has no main process (%q)", n.Name, out)
	}
	pid, err := hostPID(n.Container.Leader.PID, inner)
	if err != nil {
		return err
	}
	ticks, _ := startTicks(pid)
	tn.Tailscaled[n.Name], tn.Socket[n.Name] = &Process{PID: pid, StartTicks: ticks, Started: time.Now()}, sock
	if err := tn.save(); err != nil {
		return err
	}
	return tn.poll(ctx, 30*time.Second, "tailscaled of "+n.Name+" to listen", func() error {
		if !alive(tn.Tailscaled[n.Name]) {
			return errors.New("tailscaled exited")
		}
		_, err := tn.Client(n.Name).GetPrefs(ctx)
		return err
	})
}
