package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"tailscale.com/ipn"

	"github.com/ducksnest/netd/internal/testutil"
)

// headscaleConfig keeps headscale offline: its own embedded DERP server is
// the only DERP region (urls and paths empty, no auto update), no update
// check, no logtail, no MagicDNS, policy in the database (so the acl
// package can apply it through the API).
const headscaleConfig = `server_url: %[1]s
listen_addr: %[2]s:%[3]d
metrics_listen_addr: 127.0.0.1:9090
grpc_listen_addr: 127.0.0.1:50443
grpc_allow_insecure: false
noise:
  private_key_path: %[4]s/noise_private.key
prefixes:
  v4: 100.64.0.0/10
  allocation: sequential
derp:
  server:
    enabled: true
    region_id: 999
    region_code: lab
    region_name: netd lab embedded DERP
    stun_listen_addr: %[2]s:3478
    private_key_path: %[4]s/derp_server_private.key
    automatically_add_embedded_derp_region: true
    ipv4: %[2]s
  urls: []
  paths: []
  auto_update_enabled: false
  update_frequency: 24h
disable_check_updates: true
ephemeral_node_inactivity_timeout: 30m
database:
  type: sqlite
  sqlite:
    path: %[4]s/db.sqlite
    write_ahead_log: true
log:
  format: text
  level: info
policy:
  mode: database
dns:
  magic_dns: false
  override_local_dns: false
  nameservers:
    global: []
unix_socket: %[4]s/headscale.sock
unix_socket_permission: "0700"
logtail:
  enabled: false
randomize_client_port: false
`

// tsEnv is the environment of every Tailscale process: no log upload,
// DERP over plain HTTP (the lab's DERP has no TLS).
func tsEnv() []string {
	return append(os.Environ(), "TS_NO_LOGS_NO_SUPPORT=true", "TS_DEBUG_USE_DERP_HTTP=1")
}

func (tn *Tailnet) hsConfig() string { return filepath.Join(tn.Dir, "headscale.yaml") }

func (tn *Tailnet) startHeadscale(ctx context.Context) error {
	cfg := fmt.Sprintf(headscaleConfig, tn.URL, tsControlIP, tsHSPort, tn.Dir)
	if err := os.WriteFile(tn.hsConfig(), []byte(cfg), 0o600); err != nil {
		return fmt.Errorf("writing headscale config: %w", err)
	}
	p, err := tn.spawn(tn.WAN, "headscale", filepath.Join(tn.Dir, "headscale.log"), nil, tn.HeadscaleBin, "serve", "-c", tn.hsConfig())
	if err != nil {
		return err
	}
	tn.HeadscaleProc = p
	if err := tn.save(); err != nil {
		return err
	}
	return tn.poll(ctx, 30*time.Second, "headscale to answer", func() error {
		if !alive(p) {
			return errors.New("headscale exited: " + testutil.TailFile(filepath.Join(tn.Dir, "headscale.log"), 15))
		}
		c, err := tn.dialWAN(ctx, "tcp", fmt.Sprintf("%s:%d", tsControlIP, tsHSPort))
		if err != nil {
			return err
		}
		c.Close()
		_, err = tn.hs(ctx, "users", "list")
		return err
	})
}

// hs runs the headscale CLI (over its unix socket, from the host namespace).
func (tn *Tailnet) hs(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, tn.HeadscaleBin, append([]string{"-c", tn.hsConfig()}, args...)...)
	cmd.Env = tsEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("headscale %s: %w: %s %s", strings.Join(args, " "), err, bytes.TrimSpace(errb.Bytes()), bytes.TrimSpace(out.Bytes()))
	}
	return out.String(), nil
}

// spawn starts a long-running process in ns ("ip netns exec" execs it, so
// the pid is the process's own) in its own session and registers it for
// reaping.
func (tn *Tailnet) spawn(ns, key, logPath string, env []string, bin string, args ...string) (*Process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, bin}, args...)...)
	cmd.Env = append(tsEnv(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", key, err)
	}
	pr := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { pr.err = cmd.Wait(); close(pr.done) }()
	tn.lab.procs[key] = pr
	ticks, _ := startTicks(cmd.Process.Pid)
	tn.lab.log.Info("started", "proc", key, "pid", cmd.Process.Pid, "ns", ns)
	return &Process{PID: cmd.Process.Pid, StartTicks: ticks, Started: time.Now()}, nil
}

func (tn *Tailnet) startTailscaled(ctx context.Context, n *Node) error {
	if n.Container != nil {
		return tn.startTailscaledUnit(ctx, n)
	}
	dir := filepath.Join(tn.Dir, n.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	sock := filepath.Join(dir, "tailscaled.sock")
	_ = os.Remove(sock)
	// TS_LOGS_DIR keeps tailscaled's log config out of /var/lib/tailscale.
	p, err := tn.spawn(n.NS, "tailscaled/"+n.Name, filepath.Join(dir, "tailscaled.log"), []string{"TS_LOGS_DIR=" + dir}, tn.TailscaledBin,
		"--state="+filepath.Join(dir, "tailscaled.state"), "--statedir="+dir, "--socket="+sock,
		"--tun=tailscale0", "--port=41641", "--no-logs-no-support")
	if err != nil {
		return err
	}
	tn.Tailscaled[n.Name], tn.Socket[n.Name] = p, sock
	if err := tn.save(); err != nil {
		return err
	}
	return tn.poll(ctx, 30*time.Second, "tailscaled of "+n.Name+" to listen", func() error {
		if !alive(p) {
			return errors.New("tailscaled exited: " + testutil.TailFile(filepath.Join(dir, "tailscaled.log"), 15))
		}
		_, err := tn.Client(n.Name).GetPrefs(ctx)
		return err
	})
}

// join starts tailscaled on n, logs it in with a pre-auth key carrying the
// node's tags and waits until it has its overlay address, which must be
// the one the policy gives the node.
func (tn *Tailnet) join(ctx context.Context, n *Node, tags []string, userRoutes []netip.Prefix) error {
	if err := tn.startTailscaled(ctx, n); err != nil {
		return err
	}
	args := []string{"preauthkeys", "create", "--user", "1", "--expiration", "1h"}
	if len(tags) > 0 {
		args = append(args, "--tags", strings.Join(tags, ","))
	}
	key, err := tn.hs(ctx, args...)
	if err != nil {
		return err
	}
	var rs []string
	for _, r := range userRoutes {
		rs = append(rs, r.String())
	}
	args = []string{"--socket=" + tn.Socket[n.Name], "up",
		"--login-server=" + tn.URL, "--authkey=" + strings.TrimSpace(key), "--hostname=" + n.Name,
		"--accept-routes", "--accept-dns=false", "--netfilter-mode=off", "--snat-subnet-routes=false",
		"--advertise-routes=" + strings.Join(rs, ","), "--timeout=120s"}
	if n.Container != nil {
		// netd.service runs as the dynamic user "netd": the operator, as
		// the hosts set it, may edit the advertised routes.
		args = append(args, "--operator="+netdOperator)
	}
	up := exec.CommandContext(ctx, tn.TailscaleBin, args...)
	up.Env = tsEnv()
	if out, err := up.CombinedOutput(); err != nil {
		return fmt.Errorf("tailscale up: %w: %s", err, bytes.TrimSpace(out))
	}
	return tn.waitAddr(ctx, n)
}

// waitAddr waits until the node's tailscale0 has its overlay address and
// tailscaled is Running.
func (tn *Tailnet) waitAddr(ctx context.Context, n *Node) error {
	return tn.poll(ctx, 60*time.Second, n.Name+" to be on the tailnet", func() error {
		st, err := tn.Client(n.Name).Status(ctx)
		if err != nil {
			return err
		}
		if st.BackendState != ipn.Running.String() {
			return fmt.Errorf("backend state %s", st.BackendState)
		}
		for _, a := range st.TailscaleIPs {
			if a.Is4() && a != n.OverlayAddr {
				return fmt.Errorf("%w: headscale gave %s to %s, the policy says %s", errPermanent, a, n.Name, n.OverlayAddr)
			}
		}
		return tn.hasAddr(n)
	})
}

func (tn *Tailnet) hasAddr(n *Node) error {
	var found bool
	err := InNS(n.NS, func() error {
		ifc, err := net.InterfaceByName(tn.lab.Overlay.Interface)
		if err != nil {
			return err
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr() == n.OverlayAddr {
				found = true
			}
		}
		return nil
	})
	if err == nil && !found {
		err = fmt.Errorf("%s has no %s yet", tn.lab.Overlay.Interface, n.OverlayAddr)
	}
	return err
}

var errPermanent = errors.New("permanent")

// RestartTailscaled stops a node's tailscaled (SIGTERM, by pid) and starts
// it again with the same state: no `tailscale up`, no approval, nothing
// by hand. It returns once tailscaled is running with its address again.
func (tn *Tailnet) RestartTailscaled(ctx context.Context, node string) error {
	n, err := tn.lab.Node(node)
	if err != nil {
		return err
	}
	if p := tn.Tailscaled[node]; p != nil && alive(p) {
		if err := tn.lab.kill(ctx, p.PID, 10*time.Second); err != nil {
			return err
		}
	}
	if err := tn.startTailscaled(ctx, n); err != nil {
		return err
	}
	return tn.waitAddr(ctx, n)
}

// poll calls fn until it returns nil, a permanent error, or timeout.
func (tn *Tailnet) poll(ctx context.Context, timeout time.Duration, what string, fn func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := fn()
		if err == nil || errors.Is(err, errPermanent) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (%w)", what, err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
