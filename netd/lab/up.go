package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/ducksnest/netd/internal/testutil"
)

func (cfg *Config) defaults() error {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if strings.ContainsAny(cfg.Name, "/ \t") {
		return fmt.Errorf("bad lab name %q", cfg.Name)
	}
	if cfg.StateDir == "" {
		cfg.StateDir = StateDirFor(cfg.Name)
	}
	if cfg.PodsPerNode == 0 {
		cfg.PodsPerNode = DefaultPodsPerNode
	}
	if cfg.PodsPerNode < 1 || cfg.PodsPerNode > 10 {
		return fmt.Errorf("pods per node must be 1..10, not %d", cfg.PodsPerNode)
	}
	if cfg.ConvergeTimeout == 0 {
		cfg.ConvergeTimeout = 90 * time.Second
	}
	return nil
}

// Build creates the topology (no netd runs yet). On error, what was made is
// left for inspection; Down removes it.
func Build(ctx context.Context, cfg Config) (*Lab, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	l, err := plan(cfg)
	if err != nil {
		return nil, err
	}
	// Every namespace the lab will make must be new: the state file
	// records them before any is made, and Down deletes what it records.
	for _, ns := range l.Namespaces {
		if nsExists(ns) {
			return nil, fmt.Errorf("namespace %s already exists: run lab down --name %s first, or choose another lab name", ns, cfg.Name)
		}
	}
	l.log = orDiscard(cfg.Logger)
	l.procs = map[string]*proc{}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("making state dir: %w", err)
	}
	if err := writePolicy(cfg.StateDir, cfg.Policy); err != nil {
		return nil, err
	}
	// Record the plan before touching the kernel so that Down after a
	// crash knows everything.
	if err := l.save(); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := l.create(ctx); err != nil {
		return l, fmt.Errorf("building lab %s: %w", cfg.Name, err)
	}
	l.log.Info("built lab topology", "lab", l.Name, "namespaces", len(l.Namespaces), "took", time.Since(start).Round(time.Millisecond))
	return l, nil
}

// Up builds the lab, starts netd on every node not in cfg.Hold and waits
// until the lab has converged.
func Up(ctx context.Context, cfg Config) (*Lab, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if cfg.Netd == "" {
		return nil, errors.New("lab config has no netd binary")
	}
	l, err := Build(ctx, cfg)
	if err != nil {
		return l, err
	}
	// Run a copy kept in the state dir: `go run ./netd lab up` deletes its
	// temporary binary when it exits, and later `netd lab` calls must still
	// be able to start (and recognise) the nodes' netd.
	bin := filepath.Join(l.StateDir, "netd")
	if err := copyFile(cfg.Netd, bin, 0o755); err != nil {
		return l, fmt.Errorf("copying netd into the state dir: %w", err)
	}
	l.Netd = bin
	if err := l.save(); err != nil {
		return l, err
	}
	if cfg.Rootfs != "" {
		if err := l.bootContainers(ctx, cfg.Rootfs, KindSystemd, nil); err != nil {
			return l, err
		}
	}
	var run []string
	for _, n := range l.Nodes {
		if slices.Contains(cfg.Hold, n.Name) {
			continue
		}
		if err := l.StartNetd(ctx, n.Name); err != nil {
			return l, err
		}
		run = append(run, n.Name)
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.ConvergeTimeout)
	defer cancel()
	return l, l.WaitConverged(cctx, run)
}

// Down ends every process of the lab in stateDir (default: the lab's own)
// and deletes the namespaces it made, as its state file lists them (Build
// and AddRouter record a namespace before making it, so a crashed run
// leaves nothing unlisted). It never touches another lab's namespaces,
// even one whose name starts with "<name>-" (the lab "rel-x" for "rel").
// Without a state file there is nothing of the lab to remove. It is safe
// to repeat.
func Down(ctx context.Context, name, stateDir string, log *slog.Logger) error {
	if stateDir == "" {
		stateDir = StateDirFor(name)
	}
	l, err := Load(stateDir, log)
	if errors.Is(err, ErrNoLab) {
		l = &Lab{Name: name, StateDir: stateDir, log: orDiscard(log), procs: map[string]*proc{}}
	} else if err != nil {
		return err
	}
	if l.Name != name {
		return fmt.Errorf("state dir %s belongs to lab %q, not %q", stateDir, l.Name, name)
	}
	return l.Down(ctx)
}

// Down ends the lab's processes (its netds and whatever runs in its
// namespaces) and deletes its namespaces.
func (l *Lab) Down(ctx context.Context) error {
	// Containers first: their netd goes with them (ending it by pid
	// would only make systemd restart it).
	errs := l.downContainers(ctx)
	for _, n := range l.Nodes {
		if n.Netd == nil || n.Container != nil {
			continue
		}
		if alive(n.Netd) && ourNetd(n.Netd.PID, l.Netd, n.Name) {
			if err := l.kill(ctx, n.Netd.PID, 10*time.Second); err != nil {
				errs = append(errs, err)
			}
		}
		n.Netd = nil
	}
	nss := l.ownNamespaces()
	for _, ns := range nss {
		pids, err := nsPIDs(ctx, ns)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, pid := range pids {
			if pid == os.Getpid() {
				continue
			}
			l.log.Info("ending process left in lab namespace", "ns", ns, "pid", pid)
			if err := l.kill(ctx, pid, 5*time.Second); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, ns := range nss {
		if err := delNS(ctx, ns); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		// The state file, the policy, the copy of netd, each node's netd
		// state dir (the graceful-stop marker), sockets and logs.
		for _, f := range []string{stateFileName, policyFileName, "netd"} {
			_ = os.Remove(filepath.Join(l.StateDir, f))
		}
		for _, n := range l.Nodes {
			_ = os.RemoveAll(filepath.Join(l.StateDir, n.Name))
		}
		ents, _ := filepath.Glob(filepath.Join(l.StateDir, "*"))
		for _, e := range ents {
			if strings.HasSuffix(e, ".sock") || strings.HasSuffix(e, ".log") {
				_ = os.Remove(e)
			}
		}
		_ = os.Remove(l.StateDir) // only if empty
		l.log.Info("lab down", "lab", l.Name, "namespaces", len(nss))
	}
	return errors.Join(errs...)
}

// NetdStatus is what a node's netd says on GET /status.
type NetdStatus struct {
	Ready bool            `json:"ready"`
	Raw   json.RawMessage `json:"-"`
}

// Status asks a node's netd for its status over its unix socket.
func (l *Lab) Status(ctx context.Context, node string) (*NetdStatus, error) {
	n, err := l.Node(node)
	if err != nil {
		return nil, err
	}
	// One request per connection: the transport is dropped after the call,
	// and a kept-alive connection would stay open on both ends (the lab
	// polls status every 100ms).
	c := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", n.Socket)
		},
	}}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://netd/status", nil)
	if err != nil {
		return nil, fmt.Errorf("making status request: %w", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking netd of %s: %w", node, err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		return nil, fmt.Errorf("decoding status of %s: %w", node, err)
	}
	st := &NetdStatus{Raw: raw}
	if err := json.Unmarshal(raw, st); err != nil {
		return nil, fmt.Errorf("decoding status of %s: %w", node, err)
	}
	return st, nil
}

// PeerStates returns the BGP session state of each peer of a node's netd
// (by peer name, "established", "active", "idle", ...).
func (l *Lab) PeerStates(ctx context.Context, node string) (map[string]string, error) {
	st, err := l.Status(ctx, node)
	if err != nil {
		return nil, err
	}
	var v struct {
		BGP struct {
			Peers []struct{ Name, State string }
		} `json:"bgp"`
	}
	if err := json.Unmarshal(st.Raw, &v); err != nil {
		return nil, fmt.Errorf("decoding bgp peers of %s: %w", node, err)
	}
	out := map[string]string{}
	for _, p := range v.BGP.Peers {
		out[p.Name] = p.State
	}
	return out, nil
}

// Routes returns the destinations of netd's routes (its table and
// protocol) in a node.
func (l *Lab) Routes(node string) ([]netlink.Route, error) {
	n, err := l.Node(node)
	if err != nil {
		return nil, err
	}
	var out []netlink.Route
	err = withHandle(n.NS, func(h *netlink.Handle) error {
		rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: l.Table}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return fmt.Errorf("listing table %d in %s: %w", l.Table, n.NS, err)
		}
		for _, r := range rs {
			if int(r.Protocol) == l.Protocol {
				out = append(out, r)
			}
		}
		return nil
	})
	return out, err
}

// RouteText shows netd's routes in a node as iproute2 prints them.
func (l *Lab) RouteText(ctx context.Context, node string) ([]string, error) {
	n, err := l.Node(node)
	if err != nil {
		return nil, err
	}
	out, err := ipCmd(ctx, "-n", n.NS, "-4", "route", "show", "table", strconv.Itoa(l.Table), "proto", strconv.Itoa(l.Protocol))
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, s := range strings.Split(out, "\n") {
		if s = strings.TrimSpace(s); s != "" {
			lines = append(lines, s)
		}
	}
	return lines, nil
}

// HasRoutes reports whether node has a netd route for every block of
// every node in peers (itself excluded), and lists what is missing.
func (l *Lab) HasRoutes(node string, peers []string) (bool, []netip.Prefix, error) {
	rs, err := l.Routes(node)
	if err != nil {
		return false, nil, err
	}
	have := map[netip.Prefix]bool{}
	for _, r := range rs {
		if r.Dst != nil {
			if p, ok := prefixOf(r.Dst); ok {
				have[p] = true
			}
		}
	}
	var missing []netip.Prefix
	for _, pn := range peers {
		if pn == node {
			continue
		}
		n, err := l.Node(pn)
		if err != nil {
			return false, nil, err
		}
		for _, b := range n.PodCIDRs {
			if !have[b] {
				missing = append(missing, b)
			}
		}
	}
	return len(missing) == 0, missing, nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits), true
}

// WaitConverged polls until every node in nodes says ready and has routes
// to the blocks of all the others, or ctx ends. It fails early if a netd
// exits.
func (l *Lab) WaitConverged(ctx context.Context, nodes []string) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	start, last := time.Now(), ""
	var seen []string // what was pending, and since when: the error tells the story
	for {
		var pending []string
		for _, name := range nodes {
			n, err := l.Node(name)
			if err != nil {
				return err
			}
			if running, err := l.netdUp(ctx, n); err != nil {
				return err
			} else if !running {
				pending = append(pending, name+"(restarting)")
				continue
			}
			st, err := l.Status(ctx, name)
			if err != nil {
				pending = append(pending, name+"(status: "+err.Error()+")")
				continue
			}
			if !st.Ready {
				pending = append(pending, name+"(not ready)")
				continue
			}
			ok, missing, err := l.HasRoutes(name, nodes)
			if err != nil {
				return err
			}
			if !ok {
				pending = append(pending, fmt.Sprintf("%s(missing %d routes: %v)", name, len(missing), missing))
			}
		}
		if len(pending) == 0 {
			l.log.Info("lab converged", "lab", l.Name, "nodes", len(nodes), "took", time.Since(start).Round(time.Millisecond))
			return nil
		}
		// A pass cut short by the deadline says only that the deadline
		// came; the error keeps what the last whole pass found missing.
		if s := strings.Join(pending, " "); s != last && ctx.Err() == nil {
			el := time.Since(start).Round(time.Millisecond)
			l.log.Info("waiting for convergence", "pending", s, "elapsed", el)
			last = s
			seen = append(seen, fmt.Sprintf("from %v: %s", el, s))
		}
		select {
		case <-ctx.Done():
			if len(seen) > 6 {
				seen = append(seen[:2], append([]string{"…"}, seen[len(seen)-3:]...)...)
			}
			return fmt.Errorf("lab %s did not converge in %v (%s): %w", l.Name,
				time.Since(start).Round(time.Millisecond), strings.Join(seen, "; "), ctx.Err())
		case <-tick.C:
		}
	}
}

// LogTail returns the last lines of a node's netd log.
func (l *Lab) LogTail(node string, lines int) string {
	n, err := l.Node(node)
	if err != nil {
		return err.Error()
	}
	if n.Container != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := l.Journal(ctx, node, "-u", netdUnit, "-o", "cat", "-n", strconv.Itoa(lines))
		if err != nil {
			return err.Error()
		}
		return strings.TrimRight(out, "\n")
	}
	return testutil.TailFile(n.Log, lines)
}

// copyFile copies src to dst (replacing it) with the given mode.
func copyFile(src, dst string, mode os.FileMode) error {
	if filepath.Clean(src) == filepath.Clean(dst) {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
