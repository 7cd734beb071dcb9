package lab

import (
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// labNodes are the nodes of the example policy (examples/ducksnest), the
// NixOS hosts of nixos/lab.nix.
var labNodes = []string{"control-plane", "firebat", "old", "ultra"}

// splitExecStart splits a unit's ExecStart value the way the module writes
// it (lib.escapeShellArgs: bare words or single-quoted ones).
func splitExecStart(t *testing.T, unit string) []string {
	t.Helper()
	var line string
	for l := range strings.SplitSeq(unit, "\n") {
		if v, ok := strings.CutPrefix(l, "ExecStart="); ok {
			if line != "" {
				t.Fatalf("two ExecStart lines in the unit")
			}
			line = v
		}
	}
	var out []string
	for w := range strings.FieldsSeq(line) {
		if strings.HasPrefix(w, "'") {
			if !strings.HasSuffix(w, "'") || len(w) < 2 || strings.Contains(w[1:len(w)-1], "'") {
				t.Fatalf("ExecStart word %q: not a simple quoted argument", w)
			}
			w = w[1 : len(w)-1]
		}
		out = append(out, w)
	}
	return out
}

// The embedded file covers every lab node on both overlays, its argv is
// the unit's own ExecStart, and the unit is the one the lab expects.
func TestNixOSUnitsCoverTheLab(t *testing.T) {
	for _, overlay := range []string{overlayEmulated, overlayTailscale} {
		for _, node := range append(slices.Clone(labNodes), templateNode) {
			u, err := NixOSUnitFor(overlay, node)
			if err != nil {
				t.Fatal(err)
			}
			if got := splitExecStart(t, u.Unit); !slices.Equal(got, u.Argv) {
				t.Errorf("%s/%s: argv %q is not the unit's ExecStart %q", overlay, node, u.Argv, got)
			}
			want := "--node=" + node
			if node == templateNode {
				want = "--node=" + nodePlaceholder
			}
			for _, a := range []string{want, "--log-format=json", "--stop-mode=withdraw"} {
				if !slices.Contains(u.Argv, a) {
					t.Errorf("%s/%s: argv %q lacks %s", overlay, node, u.Argv, a)
				}
			}
			hasTS := slices.Contains(u.Argv, "--tailscale-socket=/run/tailscale/tailscaled.sock")
			if hasTS != (overlay == overlayTailscale) {
				t.Errorf("%s/%s: --tailscale-socket present = %v", overlay, node, hasTS)
			}
			for _, k := range []string{"KUBECONFIG", "HEADSCALE_URL", "TS_API_KEY_FILE"} {
				if _, ok := u.Environment[k]; ok {
					t.Errorf("%s/%s: the unit sets %s, which the lab does not apply", overlay, node, k)
				}
			}
		}
	}
}

// The lab scrapes each node's metrics at DefaultMetricsAddr inside its
// namespace: the module must listen on that port.
func TestNixOSUnitsMetricsPort(t *testing.T) {
	_, port, err := net.SplitHostPort(DefaultMetricsAddr)
	if err != nil {
		t.Fatal(err)
	}
	u, err := NixOSUnitFor(overlayEmulated, "firebat")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range u.Argv {
		if v, ok := strings.CutPrefix(a, "--metrics-addr="); ok {
			if _, p, err := net.SplitHostPort(v); err != nil || p != port {
				t.Errorf("module listens for metrics on %q, the lab scrapes %s", v, DefaultMetricsAddr)
			}
			return
		}
	}
	t.Errorf("module renders no --metrics-addr: %q", u.Argv)
}

// testLabValue is a lab value (no kernel state) with one node.
func testLabValue(node string) (*Lab, *Node) {
	n := &Node{Name: node, NS: "dnt-" + node, Socket: "/s/" + node + ".sock"}
	return &Lab{Name: "dnt", StateDir: "/s", PolicyPath: "/s/policy.yaml", Netd: "/s/netd",
		Nodes: []*Node{n}, NetdArgs: map[string][]string{}}, n
}

// The lab's command line of a node is the module's ExecStart for it, with
// exactly the deployed paths mapped, then NetdArgs, then the extras.
func TestNodeArgvIsTheModulesExecStart(t *testing.T) {
	for _, overlay := range []string{overlayEmulated, overlayTailscale} {
		for _, node := range append(slices.Clone(labNodes), "n9") {
			l, n := testLabValue(node)
			if overlay == overlayTailscale {
				l.TailscaleSockets = map[string]string{node: "/s/tailnet/" + node + "/tailscaled.sock"}
			}
			l.NetdArgs[node] = []string{"--kubeconfig", "/s/kc"}
			got, err := l.nodeArgv(n, []string{"--stop-mode", "graceful"})
			if err != nil {
				t.Fatal(err)
			}
			u, err := NixOSUnitFor(overlay, node)
			if err != nil {
				t.Fatal(err)
			}
			mapped := map[string]string{
				"--policy=/etc/netd/policy.yaml":                    "--policy=/s/policy.yaml",
				"--socket=/run/netd/netd.sock":                      "--socket=/s/" + node + ".sock",
				"--state-dir=/run/netd":                             "--state-dir=" + filepath.Join("/s", node),
				"--tailscale-socket=/run/tailscale/tailscaled.sock": "--tailscale-socket=/s/tailnet/" + node + "/tailscaled.sock",
			}
			want := []string{"/s/netd"}
			for _, a := range u.Argv[1:] {
				if m, ok := mapped[a]; ok {
					a = m
				}
				want = append(want, a)
			}
			want = append(want, "--kubeconfig", "/s/kc", "--stop-mode", "graceful")
			if !slices.Equal(got, want) {
				t.Errorf("%s/%s:\n got %q\nwant %q", overlay, node, got, want)
			}
			if !slices.Contains(got, "--node="+node) {
				t.Errorf("%s/%s: %q lacks --node=%s", overlay, node, got, node)
			}
			// StartNetd runs exactly that, in the node's namespace.
			cmd, err := l.netdCommand(n, []string{"--stop-mode", "graceful"})
			if err != nil {
				t.Fatal(err)
			}
			if wantCmd := append([]string{"ip", "netns", "exec", n.NS}, want...); !slices.Equal(cmd.Args, wantCmd) {
				t.Errorf("%s/%s: StartNetd would run %q, want %q", overlay, node, cmd.Args, wantCmd)
			}
		}
	}
}

// A path or placeholder the lab cannot map stops the start instead of
// running something other than what the module deploys.
func TestNodeArgvRefusesUnmappedPaths(t *testing.T) {
	paths := map[string]string{"/etc/netd/policy.yaml": "/s/policy.yaml"}
	for _, argv := range [][]string{
		{netdExe, "run", "--policy=/etc/netd/policy.yaml", "--kubeconfig=%d/kubeconfig"},
		{netdExe, "run", "--state-dir=/var/lib/netd"},
		{netdExe, "run", "--grpc-addr=@placeholder@"},
		{"/usr/bin/netd", "run"},
		{netdExe, "status"},
	} {
		if got, err := netdArgv(NixOSUnit{Argv: argv}, "/s/netd", paths); err == nil {
			t.Errorf("netdArgv(%q) = %q, want an error", argv, got)
		}
	}
	got, err := netdArgv(NixOSUnit{Argv: []string{netdExe, "run", "--policy=/etc/netd/policy.yaml", "--metrics-addr=", "--bfd=true"}}, "/s/netd", paths)
	if err != nil || !slices.Equal(got, []string{"/s/netd", "run", "--policy=/s/policy.yaml", "--metrics-addr=", "--bfd=true"}) {
		t.Errorf("netdArgv = %q, %v", got, err)
	}
}

// The lab recognises its netd by the --node the module renders.
func TestIsNetdOfModuleArgv(t *testing.T) {
	l, n := testLabValue("old")
	argv, err := l.nodeArgv(n, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !isNetdOf(argv, l.Netd, "old") {
		t.Errorf("isNetdOf(%q) = false", argv)
	}
	if isNetdOf(argv, l.Netd, "ol") || isNetdOf(argv, l.Netd, "firebat") {
		t.Errorf("isNetdOf(%q) matches another node", argv)
	}
	if !isNetdOf([]string{"/s/netd", "run", "--node", "old"}, l.Netd, "old") {
		t.Error("isNetdOf does not match --node old")
	}
}
