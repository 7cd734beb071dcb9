package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/netd/netd/kube"

	"github.com/ducksnest/netd/internal/testutil"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ducksnest/netd/internal/kubetest"
	"github.com/ducksnest/netd/netd/calico"
	"github.com/ducksnest/netd/netd/lab"
)

// mutation removes one permission of the module's unit (a runtime drop-in
// on one node) that something netd does needs, and names the failure it
// must cause: a journal line holding every one of line, or what seen
// reports.
type mutation struct {
	name   string // the setting, as the module sets it
	dropIn string
	// provoke, run before the restart, makes the node need the permission
	// (a netd that finds everything in place writes nothing).
	provoke []string
	line    []string
	seen    func(t *testing.T, l *lab.Lab, journal string) bool
	want    string // what seen looks for, for the error message
}

// journalLine returns the first line of j holding every one of subs.
func journalLine(j string, subs ...string) (string, bool) {
	for _, line := range strings.Split(j, "\n") {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			return strings.TrimSpace(line), true
		}
	}
	return "", false
}

const hardenNode = "ultra"

// mutations are the hardening settings of nixos/modules/netd.nix that a
// feature of netd depends on; each entry takes one away.
var mutations = []mutation{{
	name: "CAP_NET_RAW (the LAN path prober's ICMP socket)",
	dropIn: "[Service]\nAmbientCapabilities=\nAmbientCapabilities=CAP_NET_ADMIN CAP_NET_BIND_SERVICE\n" +
		"CapabilityBoundingSet=\nCapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE\n",
	line: []string{"lan probe socket failed", "operation not permitted"},
}, {
	name: "CAP_NET_ADMIN (routes and rules over netlink)",
	dropIn: "[Service]\nAmbientCapabilities=\nAmbientCapabilities=CAP_NET_BIND_SERVICE CAP_NET_RAW\n" +
		"CapabilityBoundingSet=\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_NET_RAW\n",
	provoke: []string{"rule", "del", "priority", "5260"},
	line:    []string{"adding rule 5260", "operation not permitted"},
}, {
	name: "CAP_NET_BIND_SERVICE (BGP on port 179)",
	dropIn: "[Service]\nAmbientCapabilities=\nAmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW\n" +
		"CapabilityBoundingSet=\nCapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW\n",
	line: []string{":179", "permission denied"},
}, {
	name:   "AF_NETLINK in RestrictAddressFamilies (the kernel's routing tables)",
	dropIn: "[Service]\nRestrictAddressFamilies=\nRestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n",
	line:   []string{"address family not supported"},
}, {
	name:   "AF_UNIX in RestrictAddressFamilies (the status socket)",
	dropIn: "[Service]\nRestrictAddressFamilies=\nRestrictAddressFamilies=AF_INET AF_INET6 AF_NETLINK\n",
	line:   []string{"netd.sock", "address family not supported"},
}, {
	name:   "setsockopt in SystemCallFilter (netlink, BGP, BFD and ICMP sockets)",
	dropIn: "[Service]\nSystemCallFilter=~setsockopt\n",
	line:   []string{"socket option", "operation not permitted"},
}, {
	name:   "RuntimeDirectoryPreserve=restart (the graceful-stop marker in /run/netd)",
	dropIn: "[Service]\nRuntimeDirectoryPreserve=no\n",
	seen: func(_ *testing.T, _ *lab.Lab, j string) bool {
		return !strings.Contains(j, "previous netd stopped gracefully") && strings.Contains(j, "netd ready")
	},
	want: `a ready netd without "previous netd stopped gracefully"`,
}, {
	name:   "Type=notify (active only once netd is ready)",
	dropIn: "[Service]\nType=simple\n",
	seen: func(t *testing.T, l *lab.Lab, _ string) bool {
		ready, active, ok := readyVsActive(t, l, hardenNode)
		return ok && active.Before(ready)
	},
	want: `the unit active before netd's "netd ready"`,
}}

// hardening checks that the unmodified unit passes the checks the
// mutations must fail, then applies each mutation to one node: restart,
// the named failure must show, then the drop-in goes and netd comes back.
func hardening(t *testing.T, l *lab.Lab) {
	ctx := t.Context()
	var ready, active time.Time
	testutil.Poll(t, 30*time.Second, "the unmodified unit is active and netd ready", func() (bool, error) {
		var ok bool
		ready, active, ok = readyVsActive(t, l, hardenNode)
		return ok, nil
	})
	if active.Before(ready) {
		t.Fatalf("unmodified unit: active at %v, %v before netd was ready", active, ready.Sub(active))
	}
	// Each mutation restores the unit (netd ready again); the sessions
	// are waited for once at the end.
	defer testutil.Poll(t, 90*time.Second, "sessions back after the mutations", func() (bool, error) { return sessionsUp(t, l, hardenNode) })
	for _, m := range mutations {
		t.Run(strings.Fields(m.name)[0], func(t *testing.T) {
			cursor := journalCursor(t, l, hardenNode)
			if err := l.SetNetdDropIn(ctx, hardenNode, "mutation", m.dropIn); err != nil {
				t.Fatal(err)
			}
			defer restoreUnit(t, l, hardenNode)
			if m.provoke != nil {
				n, _ := l.Node(hardenNode)
				if out, err := exec.CommandContext(ctx, "ip", append([]string{"-n", n.NS}, m.provoke...)...).CombinedOutput(); err != nil {
					t.Fatalf("ip %v: %v: %s", m.provoke, err, out)
				}
			}
			// --no-block: some mutations keep netd from ever being ready.
			if _, err := l.Systemctl(ctx, hardenNode, "restart", "--no-block", "netd.service"); err != nil {
				t.Fatal(err)
			}
			want, named := m.want, ""
			if m.line != nil {
				want = fmt.Sprintf("a journal line with %q", m.line)
			}
			d := testutil.Poll(t, 60*time.Second, "without "+m.name+": "+want, func() (bool, error) {
				j := journalSince(t, l, hardenNode, cursor)
				if m.line != nil {
					var ok bool
					named, ok = journalLine(j, m.line...)
					return ok, nil
				}
				named = m.want
				return m.seen(t, l, j), nil
			})
			t.Logf("without %s: seen after %v (unit %s/%s): %s", m.name, d.Round(time.Millisecond),
				unitProp(t, l, hardenNode, "ActiveState"), unitProp(t, l, hardenNode, "SubState"), named)
		})
	}
}

// restoreUnit removes the drop-in and brings netd back to ready.
func restoreUnit(t *testing.T, l *lab.Lab, node string) {
	t.Helper()
	ctx := t.Context()
	if err := l.SetNetdDropIn(ctx, node, "mutation", ""); err != nil {
		t.Error(err)
		return
	}
	_, _ = l.Systemctl(ctx, node, "stop", "netd.service")
	// RuntimeDirectoryPreserve=no leaves /run/netd a plain directory;
	// with the module's setting and DynamicUser systemd wants its link to
	// /run/private/netd there and fails the start ("File exists") until
	// it is gone.
	if _, err := l.InContainer(ctx, node, "sh", "-c", "[ -L /run/netd ] || rm -rf /run/netd"); err != nil {
		t.Error(err)
	}
	_, _ = l.Systemctl(ctx, node, "reset-failed", "netd.service")
	if _, err := l.Systemctl(ctx, node, "start", "netd.service"); err != nil {
		t.Errorf("restoring netd on %s: %v\n%s", node, err, l.LogTail(node, 20))
	}
}

// readyVsActive returns, for the node's current netd.service invocation,
// netd's time of "netd ready" (logged just before it sends READY=1) and
// the time systemd marked the unit active; ok is false until both exist.
// With Type=notify the unit is active after netd is ready.
func readyVsActive(t *testing.T, l *lab.Lab, node string) (ready, active time.Time, ok bool) {
	t.Helper()
	inv := unitProp(t, l, node, "InvocationID")
	out, err := l.Journal(t.Context(), node, "-u", "netd.service", "-o", "json", "_SYSTEMD_INVOCATION_ID="+inv)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		var e struct{ MESSAGE any }
		if json.Unmarshal([]byte(line), &e) != nil {
			continue
		}
		msg, _ := e.MESSAGE.(string)
		var rec struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal([]byte(msg), &rec) == nil && rec.Msg == "netd ready" {
			ready = rec.Time
			break
		}
	}
	// Both of this run: an ActiveEnterTimestamp older than the main
	// process is the previous run's.
	out, err = l.Systemctl(t.Context(), node, "show", "--timestamp=us+utc", "-p", "ActiveEnterTimestamp", "-p", "ExecMainStartTimestamp", "netd.service")
	if err != nil {
		t.Fatal(err)
	}
	var exec time.Time
	for _, line := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		if v == "" {
			continue
		}
		ts, err := time.Parse("Mon 2006-01-02 15:04:05.000000 MST", v)
		if err != nil {
			t.Fatalf("%s %q: %v", k, v, err)
		}
		switch k {
		case "ActiveEnterTimestamp":
			active = ts
		case "ExecMainStartTimestamp":
			exec = ts
		}
	}
	return ready, active, !ready.IsZero() && !active.IsZero() && !active.Before(exec)
}

// kubeconfigCredential: the unit as the hosts deploy it with a kubeconfig
// (LoadCredential=kubeconfig:/var/lib/secrets/kubernetes/netd.kubeconfig,
// --kubeconfig=%d/kubeconfig) on one node, against a real kube-apiserver:
// netd (a dynamic user that cannot read the root-only file itself) takes
// its pod blocks from Calico IPAM and, holding the Lease, writes the
// policy's IPPool. Without LoadCredential= it fails naming the file.
func kubeconfigCredential(t *testing.T, l *lab.Lab) {
	s := kubetest.Start(t)
	c, err := kube.NewClient(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	const node = "ultra"
	kc := apiThroughLab(t, l, s)(node)
	n, _ := l.Node(node)
	for _, b := range n.PodCIDRs {
		addAffinity(ctx, t, c, node, b)
	}
	b, err := os.ReadFile(kc)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := l.ContainerPath(node, "/var/lib/secrets/kubernetes/netd.kubeconfig")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(secret), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := l.InstallNetdUnit(ctx, node, lab.KindSystemdKube); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := l.InstallNetdUnit(ctx, node, lab.KindSystemd); err != nil {
			t.Error(err)
		}
		restoreUnit(t, l, node)
		testutil.Poll(t, 90*time.Second, "sessions back", func() (bool, error) { return sessionsUp(t, l, node) })
	}()
	if _, err := l.Systemctl(ctx, node, "restart", "netd.service"); err != nil {
		t.Fatalf("netd with the kubeconfig credential: %v\n%s", err, l.LogTail(node, 20))
	}
	testutil.Poll(t, 60*time.Second, "netd takes its blocks from Calico IPAM and leads", func() (bool, error) {
		st, err := l.Status(ctx, node)
		if err != nil {
			return false, nil
		}
		var v struct {
			PodSource string `json:"podSource"`
			Cluster   *struct {
				Leader bool `json:"leader"`
			} `json:"cluster"`
		}
		if err := json.Unmarshal(st.Raw, &v); err != nil {
			return false, err
		}
		return v.PodSource == "calico-ipam" && v.Cluster != nil && v.Cluster.Leader, nil
	})
	testutil.Poll(t, 60*time.Second, "the leader wrote the policy's IPPool", func() (bool, error) {
		u, err := c.Dynamic.Resource(calico.IPPools).Get(ctx, "default-ipv4", metav1.GetOptions{})
		return err == nil && u.GetLabels()["netd.ducksnest.dev/managed-by"] == "netd", nil
	})
	testutil.Poll(t, 60*time.Second, "converged with the Calico blocks", func() (bool, error) { return blocksEverywhere(l, names(l), names(l)) })

	// The credential is what lets the dynamic user read the kubeconfig.
	cursor := journalCursor(t, l, node)
	if err := l.SetNetdDropIn(ctx, node, "mutation", "[Service]\nLoadCredential=\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Systemctl(ctx, node, "restart", "--no-block", "netd.service"); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 60*time.Second, "without LoadCredential=: netd names the missing kubeconfig", func() (bool, error) {
		_, ok := journalLine(journalSince(t, l, node, cursor), "loading kubeconfig", "/run/credentials/netd.service/kubeconfig")
		return ok, nil
	})
}
