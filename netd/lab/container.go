package lab

import (
	"bufio"
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

	"github.com/ducksnest/netd/internal/testutil"
)

// Container is a lab node booted as a systemd container (systemd-nspawn)
// in the node's network namespace. lab.json records it so that Down finds
// it after a crash.
type Container struct {
	// Machine is the nspawn machine name, "<lab>-<node>".
	Machine string `json:"machine"`
	// Dir holds the overlay (upper, work) and the merged root (root).
	Dir string `json:"dir"`
	// Cgroups are the cgroup directories the container runs in, one per
	// hierarchy (made by the lab, removed by Down).
	Cgroups []string `json:"cgroups"`
	// Nspawn is the systemd-nspawn process (the supervisor).
	Nspawn *Process `json:"nspawn,omitempty"`
	// Leader is the container's systemd (pid 1 inside), as a host pid.
	Leader *Process `json:"leader,omitempty"`
	// Console is nspawn's output (the container's console).
	Console string `json:"console"`
	// Boot is the time from starting nspawn to `systemctl
	// is-system-running` saying running.
	Boot time.Duration `json:"boot"`
}

// Root is the container's root file system as the host sees it.
func (c *Container) Root() string { return filepath.Join(c.Dir, "root") }

// Path is a path inside the running container, seen through its
// systemd's /proc entry (covers its private /run and /tmp).
func (c *Container) Path(p string) string {
	if c.Leader == nil {
		return filepath.Join(c.Root(), p)
	}
	return filepath.Join(fmt.Sprintf("/proc/%d/root", c.Leader.PID), p)
}

// containerBind is one --bind / --bind-ro of nspawn.
type containerBind struct {
	src, dst string
	ro       bool
}

// startContainer mounts an overlay of rootfs for node n (files written
// into it first by prepare) and starts systemd-nspawn in the node's
// namespace; waitBooted then waits for it.
func (l *Lab) startContainer(n *Node, rootfs string, binds []containerBind, prepare func(root string) error) (*proc, error) {
	c := &Container{Machine: l.Name + "-" + n.Name, Dir: filepath.Join(l.StateDir, "containers", n.Name)}
	c.Console = filepath.Join(l.StateDir, n.Name+".console.log")
	for _, d := range []string{"upper", "work", "root"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("making container dir: %w", err)
		}
	}
	cgs, err := containerCgroups(l.Name, n.Name)
	if err != nil {
		return nil, err
	}
	c.Cgroups = cgs
	n.Container = c
	if err := l.save(); err != nil { // Down must know before anything exists
		return nil, err
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", rootfs, filepath.Join(c.Dir, "upper"), filepath.Join(c.Dir, "work"))
	if err := syscall.Mount("overlay", c.Root(), "overlay", 0, opts); err != nil {
		return nil, fmt.Errorf("mounting the overlay root of %s: %w", n.Name, err)
	}
	if err := prepare(c.Root()); err != nil {
		return nil, fmt.Errorf("preparing the container of %s: %w", n.Name, err)
	}
	for _, cg := range cgs {
		if err := os.MkdirAll(cg, 0o755); err != nil {
			return nil, fmt.Errorf("making cgroup %s: %w", cg, err)
		}
	}
	args := []string{
		"-D", c.Root(), "--machine=" + c.Machine, "--hostname=" + n.Name,
		"--register=no", "--keep-unit", "--network-namespace-path=" + filepath.Join(netnsDir, n.NS),
		"--resolv-conf=off", "--timezone=off", "--link-journal=no", "--settings=no", "--console=passive",
		// nspawn keeps CAP_NET_ADMIN only with a network it makes itself;
		// in the node's namespace the container needs it as a host does.
		"--capability=CAP_NET_ADMIN",
	}
	for _, b := range binds {
		opt := "--bind="
		if b.ro {
			opt = "--bind-ro="
		}
		args = append(args, opt+b.src+":"+b.dst+":norbind")
	}
	args = append(args, "--boot")
	// The shell puts itself (then nspawn, which it execs) into the
	// container's own cgroups: nspawn splits the cgroup it starts in into
	// "supervisor" and "payload", so two containers must not share one.
	script := `n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ >"$1/cgroup.procs" || exit 1; shift; n=$((n-1)); done; exec "$@"`
	shArgs := append([]string{"-c", script, "sh", strconv.Itoa(len(cgs))}, cgs...)
	shArgs = append(shArgs, append([]string{"systemd-nspawn"}, args...)...)
	logf, err := os.OpenFile(c.Console, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening console log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command("sh", shArgs...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting systemd-nspawn for %s: %w", n.Name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	l.procs["nspawn/"+n.Name] = p
	ticks, _ := startTicks(cmd.Process.Pid)
	c.Nspawn = &Process{PID: cmd.Process.Pid, StartTicks: ticks, Started: start}
	return p, l.save()
}

// waitBooted finds the container's systemd (nspawn's child, once it has
// exec'd systemd) and waits until it says the system is running. It
// changes only n.Container (boots run in parallel).
func (l *Lab) waitBooted(ctx context.Context, n *Node, p *proc) error {
	c := n.Container
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		select {
		case <-p.done:
			err := p.err
			if err == nil {
				err = errors.New("exit status 0")
			}
			return fmt.Errorf("systemd-nspawn of %s exited (%w): %s", n.Name, err, testutil.TailFile(c.Console, 15))
		default:
		}
		if c.Leader == nil {
			if pid := childOf(c.Nspawn.PID); pid > 0 && comm(pid) == "systemd" {
				ticks, _ := startTicks(pid)
				c.Leader = &Process{PID: pid, StartTicks: ticks, Started: time.Now()}
			}
		} else {
			// --wait returns once the boot is over (or fails at once
			// while systemd inside is not listening yet).
			out, _ := l.inContainer(ctx, c, "systemctl", "is-system-running", "--wait")
			last = strings.TrimSpace(out)
			switch last {
			case "running":
				c.Boot = time.Since(c.Nspawn.Started)
				return nil
			case "degraded":
				c.Boot = time.Since(c.Nspawn.Started)
				failed, _ := l.inContainer(ctx, c, "systemctl", "--failed", "--no-legend", "--plain")
				l.log.Warn("container booted degraded", "node", n.Name, "failed", strings.TrimSpace(failed))
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("container of %s did not boot (last state %q): %w: %s", n.Name, last, ctx.Err(), testutil.TailFile(c.Console, 15))
		case <-tick.C:
		}
	}
}

// inContainer runs a command inside a container (every namespace of its
// systemd) and returns its combined output.
func (l *Lab) inContainer(ctx context.Context, c *Container, args ...string) (string, error) {
	if c.Leader == nil || !alive(c.Leader) {
		return "", fmt.Errorf("container %s is not running", c.Machine)
	}
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(c.Leader.PID), "-a", "--"}, args...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %w: %s", strings.Join(args, " "), c.Machine, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// stopContainer powers a container off (SIGTERM to nspawn makes systemd
// inside shut down), kills it after grace, then unmounts its root and
// removes its cgroups and directories. A container already gone is only
// cleaned up.
func (l *Lab) stopContainer(ctx context.Context, n *Node, grace time.Duration) error {
	c := n.Container
	var errs []error
	if c.Nspawn != nil && alive(c.Nspawn) && isNspawnOf(c.Nspawn.PID, c.Machine) {
		if err := l.kill(ctx, c.Nspawn.PID, grace); err != nil {
			errs = append(errs, err)
		}
	}
	// What is left in its cgroups (nspawn died, or a crash lost lab.json's
	// pids) is the container's: end it by pid.
	for _, pid := range cgroupPIDs(c.Cgroups) {
		l.log.Warn("ending process left in a container's cgroup", "node", n.Name, "pid", pid)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("killing %d: %w", pid, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := unmountAll(c.Root()); err != nil {
		return err
	}
	for _, cg := range c.Cgroups {
		if err := removeCgroup(ctx, cg); err != nil {
			errs = append(errs, err)
		}
	}
	// nspawn keeps a mount propagation directory per machine.
	_ = os.RemoveAll(filepath.Join("/run/systemd/nspawn/propagate", c.Machine))
	if len(errs) == 0 {
		if err := os.RemoveAll(c.Dir); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", c.Dir, err))
		}
		n.Container = nil
	}
	return errors.Join(errs...)
}

// isNspawnOf reports whether pid is systemd-nspawn (or the shell that
// execs it) for machine.
func isNspawnOf(pid int, machine string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(b), "systemd-nspawn\x00") && strings.Contains(string(b), "\x00--machine="+machine+"\x00")
}

// childOf returns a child of pid (0 if none).
func childOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	c, _ := strconv.Atoi(f[0])
	return c
}

func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// containerCgroups returns, for every cgroup hierarchy systemd uses (the
// unified one and the v1 name=systemd one), the directory for the
// container of node: "<mount><own cgroup>/netd-lab/<lab>/<node>".
func containerCgroups(labName, node string) ([]string, error) {
	own := map[string]string{} // "" = unified, "name=systemd"
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("reading own cgroup: %w", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) == 3 && (f[1] == "" || f[1] == "name=systemd") {
			own[f[1]] = f[2]
		}
	}
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading mounts: %w", err)
	}
	defer mi.Close()
	var out []string
	sc := bufio.NewScanner(mi)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 {
			continue
		}
		key := "-"
		switch {
		case qf[0] == "cgroup2":
			key = ""
		case qf[0] == "cgroup" && strings.Contains(","+qf[2]+",", ",name=systemd,"):
			key = "name=systemd"
		}
		if path, ok := own[key]; ok && pf[3] == "/" {
			out = append(out, filepath.Join(pf[4], path, "netd-lab", labName, node))
			delete(own, key)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no cgroup hierarchy for systemd found (cgroup2 or name=systemd)")
	}
	return out, nil
}

// cgroupPIDs lists every process in the cgroup trees.
func cgroupPIDs(cgs []string) []int {
	seen := map[int]bool{}
	var out []int
	for _, cg := range cgs {
		_ = filepath.WalkDir(cg, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil //nolint:nilerr // a vanished cgroup has no processes
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
					seen[pid] = true
					out = append(out, pid)
				}
			}
			return nil
		})
	}
	return out
}

// removeCgroup removes a cgroup tree made for a container (deepest first),
// then its lab's and the netd-lab directory if they are empty. A process
// that just died may keep a cgroup busy for a moment.
func removeCgroup(ctx context.Context, cg string) error {
	var dirs []string
	_ = filepath.WalkDir(cg, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	deadline := time.Now().Add(5 * time.Second)
	for i := len(dirs) - 1; i >= 0; i-- {
		for {
			err := syscall.Rmdir(dirs[i])
			if err == nil || errors.Is(err, syscall.ENOENT) {
				break
			}
			if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("removing cgroup %s: %w", dirs[i], err)
			}
			time.Sleep(20 * time.Millisecond) // a poll: the kernel frees the cgroup after the last exit
		}
	}
	_ = syscall.Rmdir(filepath.Dir(cg))               // <lab>
	_ = syscall.Rmdir(filepath.Dir(filepath.Dir(cg))) // netd-lab
	return nil
}

// unmountAll unmounts dir (and anything mounted below it), if mounted.
func unmountAll(dir string) error {
	for {
		mounted, err := mountsUnder(dir)
		if err != nil {
			return err
		}
		if len(mounted) == 0 {
			return nil
		}
		// Deepest last in mountinfo order: unmount from the end.
		m := mounted[len(mounted)-1]
		if err := syscall.Unmount(m, 0); err != nil {
			return fmt.Errorf("unmounting %s: %w", m, err)
		}
	}
}

// mountsUnder lists the mount points at or below dir, in mountinfo order.
func mountsUnder(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading mounts: %w", err)
	}
	dir = filepath.Clean(dir)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space, ...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
