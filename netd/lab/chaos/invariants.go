package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/ducksnest/netd/netd/lab"
)

// Foreign routes planted on every node at the start: netd must never
// touch them (one in its own table with another protocol, one in main).
const (
	foreignInTable = "198.51.100.0/24"
	foreignInMain  = "203.0.113.0/24"
)

// wantRoute is a route a node's netd table must hold.
type wantRoute struct {
	Dst netip.Prefix
	Gw  netip.Addr
	Dev string
	MTU int
}

func (w wantRoute) String() string {
	return fmt.Sprintf("%s via %s dev %s mtu %d", w.Dst, w.Gw, w.Dev, w.MTU)
}

// expectedRoutes is what the policy and the live state call for in
// node's netd table with every node up and every link healthy: each
// block of every other node, via its LAN address when both sit on the
// same LAN, via its overlay address otherwise.
func expectedRoutes(l *lab.Lab, n *lab.Node, extra map[string]netip.Prefix) []wantRoute {
	var out []wantRoute
	for _, o := range l.Nodes {
		if o.Name == n.Name {
			continue
		}
		blocks := o.PodCIDRs
		if b, ok := extra[o.Name]; ok {
			blocks = append(slices.Clone(blocks), b)
		}
		for _, b := range blocks {
			w := wantRoute{Dst: b, Gw: o.OverlayAddr, Dev: l.Overlay.Interface, MTU: l.Overlay.MTU}
			if n.LAN != "" && n.LAN == o.LAN && o.LANAddr.IsValid() {
				w = wantRoute{Dst: b, Gw: o.LANAddr, Dev: n.LANLink.Interface, MTU: n.LANLink.MTU}
			}
			out = append(out, w)
		}
	}
	return out
}

// checkRoutes compares node's netd routes with expectedRoutes: nothing
// missing, nothing stale, nothing extra, right next hop, device and MTU.
func checkRoutes(l *lab.Lab, n *lab.Node, extra map[string]netip.Prefix) error {
	rs, err := l.Routes(n.Name)
	if err != nil {
		return err
	}
	var have []string
	err = lab.InNS(n.NS, func() error {
		for _, r := range rs {
			s := "?"
			if r.Dst != nil {
				s = r.Dst.String()
			}
			gw, _ := netip.AddrFromSlice(r.Gw)
			dev := strconv.Itoa(r.LinkIndex)
			if lk, err := net.InterfaceByIndex(r.LinkIndex); err == nil {
				dev = lk.Name
			}
			have = append(have, fmt.Sprintf("%s via %s dev %s mtu %d", s, gw.Unmap(), dev, r.MTU))
		}
		return nil
	})
	if err != nil {
		return err
	}
	var want []string
	for _, w := range expectedRoutes(l, n, extra) {
		want = append(want, w.String())
	}
	slices.Sort(have)
	slices.Sort(want)
	if slices.Equal(have, want) {
		return nil
	}
	var missing, wrong []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			missing = append(missing, w)
		}
	}
	for _, h := range have {
		if !slices.Contains(want, h) {
			wrong = append(wrong, h)
		}
	}
	return fmt.Errorf("table %d of %s: missing %q, stale or wrong %q", l.Table, n.Name, missing, wrong)
}

// plantForeign adds, on every node, a blackhole route in netd's table
// with another protocol and one in main, and returns how ip shows them.
func plantForeign(ctx context.Context, l *lab.Lab) (map[string]string, error) {
	out := map[string]string{}
	for _, n := range l.Nodes {
		for _, args := range [][]string{
			{"route", "replace", "blackhole", foreignInTable, "table", strconv.Itoa(l.Table), "proto", "static"},
			{"route", "replace", "blackhole", foreignInMain, "proto", "static"},
		} {
			if _, err := ip(ctx, n.NS, args...); err != nil {
				return nil, err
			}
		}
		s, err := foreignText(ctx, l, n)
		if err != nil {
			return nil, err
		}
		if strings.Count(s, "\n") != 2 {
			return nil, fmt.Errorf("planting foreign routes on %s: ip shows %q", n.Name, s)
		}
		out[n.Name] = s
	}
	return out, nil
}

func foreignText(ctx context.Context, l *lab.Lab, n *lab.Node) (string, error) {
	a, err := ip(ctx, n.NS, "-4", "route", "show", "table", strconv.Itoa(l.Table), "proto", "static")
	if err != nil {
		return "", err
	}
	b, err := ip(ctx, n.NS, "-4", "route", "show", "table", "main", "proto", "static")
	return a + b, err
}

func ip(ctx context.Context, ns string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ip -n %s %s: %w: %s", ns, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// nodeStatus is what the invariants read of a node's status.
type nodeStatus struct {
	Ready  bool `json:"ready"`
	Policy struct {
		Digest    string `json:"digest"`
		LastError string `json:"lastError"`
	} `json:"policy"`
	BGP struct {
		Peers []struct{ Name, State string }
	} `json:"bgp"`
}

func statusOf(ctx context.Context, l *lab.Lab, node string) (*nodeStatus, error) {
	st, err := l.Status(ctx, node)
	if err != nil {
		return nil, err
	}
	var v nodeStatus
	if err := json.Unmarshal(st.Raw, &v); err != nil {
		return nil, fmt.Errorf("decoding status of %s: %w", node, err)
	}
	return &v, nil
}

// checkNode checks one node: netd runs and is ready with the expected
// policy, every session with the other nodes (and with the external peer,
// when it runs and the node is on its LAN) is established, its table is
// exact and the foreign routes are as planted.
func (r *run) checkNode(ctx context.Context, n *lab.Node) error {
	if !r.lab.NetdRunning(n.Name) {
		return fmt.Errorf("netd of %s is not running", n.Name)
	}
	st, err := statusOf(ctx, r.lab, n.Name)
	if err != nil {
		return err
	}
	if !st.Ready {
		return fmt.Errorf("netd of %s is not ready", n.Name)
	}
	if st.Policy.LastError != "" {
		return fmt.Errorf("netd of %s: last policy reload failed: %s", n.Name, st.Policy.LastError)
	}
	if r.digest != "" && st.Policy.Digest != r.digest {
		return fmt.Errorf("netd of %s runs policy %s, want %s", n.Name, st.Policy.Digest, r.digest)
	}
	state := map[string]string{}
	for _, p := range st.BGP.Peers {
		state[p.Name] = p.State
	}
	for _, o := range r.lab.Nodes {
		if o.Name != n.Name && state[o.Name] != "established" {
			return fmt.Errorf("session %s -> %s is %q", n.Name, o.Name, state[o.Name])
		}
	}
	if r.peer != nil && r.peer.running && n.LAN != "" && state[r.peer.name] != "established" {
		return fmt.Errorf("session %s -> %s (external) is %q", n.Name, r.peer.name, state[r.peer.name])
	}
	var extra map[string]netip.Prefix
	if r.kube != nil && r.kube.extra.IsValid() {
		extra = map[string]netip.Prefix{r.kube.extraNode: r.kube.extra}
	}
	if err := checkRoutes(r.lab, n, extra); err != nil {
		return err
	}
	s, err := foreignText(ctx, r.lab, n)
	if err != nil {
		return err
	}
	if s != r.foreign[n.Name] {
		return fmt.Errorf("foreign routes on %s changed: %q, planted %q", n.Name, s, r.foreign[n.Name])
	}
	return nil
}

// checkAll checks every node (see checkNode).
func (r *run) checkAll(ctx context.Context) error {
	for _, n := range r.lab.Nodes {
		if err := r.checkNode(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// removeForeign removes the planted routes (at the end of a run).
func removeForeign(ctx context.Context, l *lab.Lab) {
	for _, n := range l.Nodes {
		_, _ = ip(ctx, n.NS, "route", "del", foreignInTable, "table", strconv.Itoa(l.Table), "proto", "static")
		_, _ = ip(ctx, n.NS, "route", "del", foreignInMain, "proto", "static")
	}
}
