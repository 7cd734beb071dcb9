package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a netd started by this Lab value; done closes when it was reaped.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// StartNetd starts the netd of a node: ip netns exec execs netd, so the
// recorded pid is netd's. Its command line is the ExecStart that the NixOS
// module renders for the node (nodeArgv, nixos_units.json), then the
// node's NetdArgs.
func (l *Lab) StartNetd(ctx context.Context, node string) error {
	return l.StartNetdArgs(ctx, node)
}

// StartNetdArgs starts a node's netd like StartNetd, with extra arguments
// appended after the node's NetdArgs (for example "--stop-mode",
// "graceful" or "--bfd=false"; a later flag wins). It returns once ip has entered the
// namespace and exec'd netd, so that what follows (a signal, lab down)
// finds netd, not ip.
func (l *Lab) StartNetdArgs(ctx context.Context, node string, extra ...string) error {
	n, err := l.Node(node)
	if err != nil {
		return err
	}
	if n.Container != nil {
		if len(extra) > 0 || len(l.NetdArgs[node]) > 0 {
			return fmt.Errorf("netd of %s runs as the module's netd.service: the systemd lab adds no arguments (%q)", node, append(l.NetdArgs[node], extra...))
		}
		return l.startUnit(ctx, n)
	}
	if n.Netd != nil && alive(n.Netd) {
		return fmt.Errorf("netd of %s already runs as pid %d", node, n.Netd.PID)
	}
	cmd, err := l.netdCommand(n, extra)
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(n.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening log: %w", err)
	}
	defer logf.Close()
	_ = os.Remove(n.Socket)
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
	if err := l.save(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	return waitStarted(ctx, p, "netd of "+node, func() bool { return ourNetd(pid, l.Netd, node) })
}

// waitStarted waits until ready says that p, just started with "ip netns
// exec", is where the caller expects it (in the namespace, exec'd); it
// fails if p exits first.
func waitStarted(ctx context.Context, p *proc, what string, ready func() bool) error {
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !ready() {
		select {
		case <-p.done:
			if p.err == nil {
				return fmt.Errorf("%s exited at start", what)
			}
			return fmt.Errorf("%s exited at start: %w", what, p.err)
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to start: %w", what, ctx.Err())
		case <-deadline.C:
			return fmt.Errorf("%s (pid %d) did not start within 30s", what, p.cmd.Process.Pid)
		case <-tick.C:
		}
	}
	return nil
}

// netdCommand is the command that starts a node's netd in its namespace:
// ip netns exec, then the node's command line (nodeArgv). Not
// CommandContext: netd outlives the command that starts the lab.
func (l *Lab) netdCommand(n *Node, extra []string) (*exec.Cmd, error) {
	argv, err := l.nodeArgv(n, extra)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.NS}, argv...)...)
	cmd.Env = append(withoutTailnetCredentials(os.Environ()), l.NetdEnv...)
	return cmd, nil
}

// withoutTailnetCredentials drops the variables that would give a lab
// netd the caller's tailnet credentials (acl.TargetFromEnv): a lab netd
// writes to the lab's own headscale, or to nothing.
func withoutTailnetCredentials(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "HEADSCALE_") || strings.HasPrefix(name, "TS_API_") || strings.HasPrefix(name, "TS_OAUTH_") || name == "TS_TAILNET" {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// StopNetd sends SIGTERM to a node's netd and waits until it is gone
// (SIGKILL after grace). In the systemd lab it stops netd.service (the
// unit's own stop and timeout).
func (l *Lab) StopNetd(ctx context.Context, node string, grace time.Duration) error {
	n, err := l.Node(node)
	if err != nil {
		return err
	}
	if n.Container != nil {
		return l.stopUnit(ctx, n)
	}
	if n.Netd == nil {
		return nil
	}
	if err := l.kill(ctx, n.Netd.PID, grace); err != nil {
		return fmt.Errorf("stopping netd of %s: %w", node, err)
	}
	n.Netd = nil
	delete(l.procs, node)
	return l.save()
}

// NetdRunning reports whether the node's netd process is alive.
func (l *Lab) NetdRunning(node string) bool {
	n, err := l.Node(node)
	if err == nil && n.Container != nil {
		_ = l.refreshNetd(context.Background(), n)
	}
	return err == nil && n.Netd != nil && alive(n.Netd) && ourNetd(n.Netd.PID, l.Netd, node)
}

// kill ends pid: SIGTERM, then SIGKILL after grace; it waits for the exit.
func (l *Lab) kill(ctx context.Context, pid int, grace time.Duration) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("signalling %d: %w", pid, err)
	}
	if waitGone(ctx, l.procByPID(pid), pid, grace) {
		return nil
	}
	l.log.Warn("process ignored SIGTERM; killing", "pid", pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing %d: %w", pid, err)
	}
	if !waitGone(ctx, l.procByPID(pid), pid, 5*time.Second) {
		return fmt.Errorf("pid %d still there after SIGKILL", pid)
	}
	return nil
}

func (l *Lab) procByPID(pid int) *proc {
	for _, p := range l.procs {
		if p.cmd.Process.Pid == pid {
			return p
		}
	}
	return nil
}

// waitGone polls until pid has exited (or been reaped, for our children).
func waitGone(ctx context.Context, p *proc, pid int, d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if p != nil {
			select {
			case <-p.done:
				return true
			default:
			}
		} else if !pidAlive(pid) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return false
		case <-tick.C:
		}
	}
}

// pidAlive: the process exists and is not a zombie.
func pidAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := statFields(b)
	return len(f) > 0 && f[0] != "Z"
}

func alive(p *Process) bool {
	if !pidAlive(p.PID) {
		return false
	}
	t, err := startTicks(p.PID)
	return err == nil && (p.StartTicks == 0 || t == p.StartTicks)
}

// statFields returns the fields of /proc/PID/stat after the command name,
// starting with the state (field 3).
func statFields(b []byte) []string {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

func startTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading stat of %d: %w", pid, err)
	}
	f := statFields(b)
	if len(f) < 20 {
		return 0, fmt.Errorf("short stat of %d", pid)
	}
	return strconv.ParseUint(f[19], 10, 64) // field 22
}

// ourNetd reports whether pid runs "<netd> run ... --node node" (or
// --node=node, as the module renders it).
func ourNetd(pid int, netd, node string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	return isNetdOf(strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), netd, node)
}

// isNetdOf reports whether args (a command line) is "<netd> run ... --node
// node".
func isNetdOf(args []string, netd, node string) bool {
	if len(args) < 2 || args[1] != "run" {
		return false
	}
	if filepath.Clean(args[0]) != filepath.Clean(netd) && filepath.Base(args[0]) != filepath.Base(netd) {
		return false
	}
	for i, a := range args {
		if a == "--node="+node || (a == "--node" && i+1 < len(args) && args[i+1] == node) {
			return true
		}
	}
	return false
}

// RSS returns the resident set size of a node's netd in bytes.
func (l *Lab) RSS(node string) (int64, error) {
	n, err := l.Node(node)
	if err != nil {
		return 0, err
	}
	if n.Netd == nil {
		return 0, fmt.Errorf("netd of %s is not running", node)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.Netd.PID))
	if err != nil {
		return 0, fmt.Errorf("reading status of %d: %w", n.Netd.PID, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parsing VmRSS %q: %w", rest, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", n.Netd.PID)
}
