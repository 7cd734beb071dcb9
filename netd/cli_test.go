package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/ducksnest/netd/policy"
)

// TestMain lets a test run this binary as netd itself (runMain), for what
// client-go reads once per process: $HOME's ~/.kube/config.
func TestMain(m *testing.M) {
	if os.Getenv("NETD_TEST_AS_MAIN") == "1" {
		main()
	}
	os.Exit(m.Run())
}

// runMain runs netd args in a new process with env added.
func runMain(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "NETD_TEST_AS_MAIN=1"), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("running %v: %v", args, err)
	}
	return code, o.String(), e.String()
}

// runStdin runs a command line with stdin as its standard input.
func runStdin(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = execute(context.Background(), args, streams{in: strings.NewReader(stdin), out: &o, err: &e})
	return code, o.String(), e.String()
}

// TestExitCodes: 0 success, 1 invalid, 2 usage (with a one-line hint on
// stderr), 3 cannot read, the same for every command.
func TestExitCodes(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	unreadable := t.TempDir() // a directory: open works, read fails
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string // substring
	}{
		{args: []string{"policy", "check", examplePolicy}, code: 0},
		{args: []string{"policy", "check", invalidPolicy}, code: 1},
		{args: []string{"policy", "check", missing}, code: 3},
		{args: []string{"policy", "check", unreadable}, code: 3},
		{args: []string{"policy", "render", missing, "--state"}, code: 3, stderr: "cannot read the file"},
		{args: []string{"policy", "render", invalidPolicy, "--state"}, code: 1, stderr: "2 problems found"},
		{args: []string{"policy", "test", missing}, code: 3},
		{args: []string{"policy", "test", invalidPolicy}, code: 1},
		{args: []string{"policy", "diff", missing}, code: 3},
		{args: []string{"policy", "apply", missing}, code: 3},
		{args: []string{"policy", "apply", invalidPolicy}, code: 1},
		{args: []string{"doctor", "--policy", missing}, code: 3},
		{args: []string{"status", "--socket", filepath.Join(t.TempDir(), "netd.sock")}, code: 3, stderr: "is it running?"},
		{args: []string{"status", "--socket", deadSocket(t)}, code: 3, stderr: "connection refused"},

		{args: nil, code: 2, stderr: "netd: missing command"},
		{args: []string{"frobnicate"}, code: 2, stderr: `unknown command "frobnicate"`},
		{args: []string{"polcy"}, code: 2, stderr: `did you mean "policy"?`},
		{args: []string{"--bogus"}, code: 2, stderr: "unknown flag: --bogus"},
		{args: []string{"policy"}, code: 2, stderr: "netd policy: missing command"},
		{args: []string{"policy", "frobnicate"}, code: 2, stderr: `unknown command "frobnicate"`},
		{args: []string{"policy", "check"}, code: 2, stderr: "missing FILE"},
		{args: []string{"policy", "check", "a", "b"}, code: 2, stderr: "unexpected arguments"},
		{args: []string{"policy", "check", examplePolicy, "-o", "xml"}, code: 2, stderr: "want text, json or yaml"},
		{args: []string{"policy", "render", examplePolicy}, code: 2, stderr: "choose exactly one"},
		{args: []string{"policy", "render", examplePolicy, "--calico", "-o", "json"}, code: 2, stderr: "-o applies to --node and --state"},
		{args: []string{"policy", "render", examplePolicy, "--calico", "--calico-api", "v2"}, code: 2, stderr: "want v3 or v1"},
		{args: []string{"policy", "diff", examplePolicy, "--only", "bgp"}, code: 2, stderr: "want calico or tailnet"},
		{args: []string{"policy", "schema", "extra"}, code: 2},
		{args: []string{"run", "extra"}, code: 2},
		{args: []string{"run", "--stop-mode", "bogus"}, code: 2, stderr: "--stop-mode must be"},
		{args: []string{"run", "--log-level", "loud"}, code: 2, stderr: "--log-level"},
		{args: []string{"run", "--bfd-interval", "fast"}, code: 2, stderr: "invalid argument"},
		{args: []string{"lab"}, code: 2},
		{args: []string{"lab", "up", "--overlay", "wireguard"}, code: 2},
		{args: []string{"version", "extra"}, code: 2},
		{args: []string{"completion", "tcsh"}, code: 2},
		{args: []string{"status", "-o", "xml"}, code: 2},
		{args: []string{"help", "frobnicate"}, code: 2, stderr: `no help topic "frobnicate"`},
		{args: []string{"help", "policy", "frob"}, code: 2},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := runStdin(t, "", tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.stderr) {
				t.Fatalf("exit %d, want %d; stderr %q, want it to contain %q\nstdout: %s", code, tc.code, errOut, tc.stderr, out)
			}
			if tc.code == 2 {
				lines := strings.Split(strings.TrimSpace(errOut), "\n")
				if len(lines) != 2 || !strings.HasPrefix(lines[1], "usage: netd") || !strings.HasSuffix(lines[1], "--help)") || out != "" {
					t.Errorf("a usage error is one line and a one-line hint on stderr, nothing on stdout; got stderr %q stdout %q", errOut, out)
				}
			}
		})
	}
}

// TestHelpEverywhere: -h and --help print the command's help on stdout
// with exit 0, at every level of the command tree, and `netd help CMD`
// does too.
func TestHelpEverywhere(t *testing.T) {
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() {
				walk(sub, append(slices.Clone(path), sub.Name()))
			}
		}
	}
	walk(newRootCmd(streams{}), nil)
	if len(paths) < 20 {
		t.Fatalf("only %d commands in the tree: %v", len(paths), paths)
	}
	for _, p := range paths {
		for _, h := range []string{"-h", "--help"} {
			args := append(slices.Clone(p), h)
			code, out, errOut := runStdin(t, "", args...)
			use := "netd " + strings.Join(p, " ")
			if code != 0 || errOut != "" || !strings.Contains(out, "Usage:\n  "+strings.TrimSpace(use)) {
				t.Errorf("%v: exit %d, stderr %q, stdout %.200q", args, code, errOut, out)
			}
		}
		if len(p) > 0 {
			code, out, _ := runStdin(t, "", append([]string{"help"}, p...)...)
			if code != 0 || !strings.Contains(out, "Usage:") {
				t.Errorf("netd help %v: exit %d, %.200q", p, code, out)
			}
		}
	}
	// The exit statuses are documented.
	_, out, _ := runStdin(t, "", "--help")
	for _, s := range []string{"Exit status:", "2  usage error", "3  an input could not be read"} {
		if !strings.Contains(out, s) {
			t.Errorf("netd --help does not say %q", s)
		}
	}
}

// TestStdin: "-" reads the policy from standard input, with the same
// positions, problems and exit statuses as a file.
func TestStdin(t *testing.T) {
	example, err := os.ReadFile(examplePolicy)
	if err != nil {
		t.Fatal(err)
	}
	invalid, err := os.ReadFile(invalidPolicy)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runStdin(t, string(example), "policy", "check", "-")
	if code != 0 || !strings.HasPrefix(out, "<stdin>: ok: 4 nodes") {
		t.Errorf("check - (example): exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runStdin(t, string(invalid), "policy", "check", "-", "-o", "json")
	var probs []policy.Error
	if err := json.Unmarshal([]byte(out), &probs); err != nil || code != 1 || len(probs) != 2 || probs[1].File != "<stdin>" || probs[1].Line != 38 {
		t.Errorf("check - (invalid): exit %d, err %v, %+v", code, err, probs)
	}
	code, out, _ = runStdin(t, string(example), "policy", "render", "-", "--node", "old", "-o", "json")
	if code != 0 || !strings.Contains(out, `"name": "old"`) {
		t.Errorf("render - --node old: exit %d\n%s", code, out)
	}
	code, out, _ = runStdin(t, string(example), "policy", "test", "-")
	if code != 0 || !strings.Contains(out, " 0 failed") {
		t.Errorf("test -: exit %d\n%s", code, out)
	}
}

// TestSizeCap: a policy file over 4 MiB is refused with a clear problem
// (exit 1, invalid), from a file or from standard input.
func TestSizeCap(t *testing.T) {
	big := strings.Repeat("# a comment line of padding\n", policy.MaxFileSize/28+1)
	path := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(path, []byte(big), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"policy", "check", path}, {"policy", "check", "-"}} {
		code, out, _ := runStdin(t, big, args...)
		if code != 1 || !strings.Contains(out, "larger than 4 MiB, the limit for a policy file") || !strings.Contains(out, "1 problem found") {
			t.Errorf("%v: exit %d\n%s", args, code, out)
		}
	}
}

// TestOutputFormats: -o json and -o yaml carry the same document; the old
// --format is a deprecated alias that warns on stderr only.
func TestOutputFormats(t *testing.T) {
	code, j, _ := runStdin(t, "", "policy", "render", examplePolicy, "--node", "old", "-o", "json")
	code2, y, _ := runStdin(t, "", "policy", "render", examplePolicy, "--node", "old", "-o", "yaml")
	yj, err := yamlToJSON(y)
	if code != 0 || code2 != 0 || err != nil || !jsonEqual(t, j, yj) {
		t.Errorf("render --node -o json and -o yaml differ (exit %d, %d, err %v)\n%s\n%s", code, code2, err, j, y)
	}
	code, out, errOut := runStdin(t, "", "policy", "check", examplePolicy, "--format", "json")
	if code != 0 || strings.TrimSpace(out) != "[]" || !strings.Contains(errOut, "--format is deprecated: use -o/--output") {
		t.Errorf("check --format json: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, o := range []string{"json", "yaml"} {
		code, out, _ := runStdin(t, "", "version", "-o", o)
		if o == "yaml" {
			out, err = yamlToJSON(out)
		}
		var v map[string]any
		if code != 0 || err != nil || json.Unmarshal([]byte(out), &v) != nil || v["goVersion"] == "" || v["version"] == nil || v["revision"] == nil {
			t.Errorf("version -o %s: exit %d, %v, %s", o, code, err, out)
		}
	}
	code, out, _ = runStdin(t, "", "version")
	if code != 0 || !strings.HasPrefix(out, "netd ") || !strings.Contains(out, "go:") {
		t.Errorf("version: exit %d, %q", code, out)
	}
	code, out, _ = runStdin(t, "", "--version")
	if code != 0 || !strings.HasPrefix(out, "netd ") {
		t.Errorf("--version: exit %d, %q", code, out)
	}
}

func yamlToJSON(y string) (string, error) {
	var v any
	if err := yaml.Unmarshal([]byte(y), &v); err != nil {
		return "", err
	}
	b, err := json.Marshal(v)
	return string(b), err
}

func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal([]byte(a), &va); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(b), &vb); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(va) == fmt.Sprint(vb)
}

// TestCompletion: netd completion SHELL prints a script for each shell,
// and the dynamic completion knows the commands and -o's values.
func TestCompletion(t *testing.T) {
	for shell, marker := range map[string]string{
		"bash": "complete -o default -F __start_netd netd", "zsh": "#compdef netd",
		"fish": "complete -c netd", "powershell": "Register-ArgumentCompleter",
	} {
		code, out, errOut := runStdin(t, "", "completion", shell)
		if code != 0 || !strings.Contains(out, marker) || errOut != "" {
			t.Errorf("completion %s: exit %d, %d bytes, no %q; stderr %q", shell, code, len(out), marker, errOut)
		}
	}
	code, out, _ := runStdin(t, "", "__complete", "pol")
	if code != 0 || !strings.Contains(out, "policy\t") {
		t.Errorf("completing pol: %q", out)
	}
	code, out, _ = runStdin(t, "", "__complete", "policy", "check", "x.yaml", "-o", "")
	if code != 0 || !strings.Contains(out, "json\nyaml\n") {
		t.Errorf("completing -o: %q", out)
	}
	code, out, _ = runStdin(t, "", "__complete", "doctor", "--only", "")
	if code != 0 || !strings.Contains(out, "sysctl\n") {
		t.Errorf("completing doctor --only: %q", out)
	}
}

// TestRunFlagsOfTheModule: every `netd run` command line the NixOS module
// renders for the lab parses, and every flag netd run ever had is still
// there; the standard flag package's -name spelling is still accepted.
func TestRunFlagsOfTheModule(t *testing.T) {
	b, err := os.ReadFile("lab/nixos_units.json")
	if err != nil {
		t.Fatal(err)
	}
	var units struct {
		Nodes map[string]map[string]struct{ Argv []string }
	}
	if err := json.Unmarshal(b, &units); err != nil {
		t.Fatal(err)
	}
	n := 0
	for kind, nodes := range units.Nodes {
		for node, u := range nodes {
			cmd := newRunCmd()
			if len(u.Argv) < 2 || u.Argv[1] != "run" {
				t.Fatalf("%s/%s: %v", kind, node, u.Argv)
			}
			if err := cmd.ParseFlags(u.Argv[2:]); err != nil {
				t.Errorf("%s/%s: %v: %v", kind, node, u.Argv, err)
			}
			n++
		}
	}
	if n == 0 {
		t.Fatal("no units")
	}
	cmd := newRunCmd()
	for _, f := range []string{"policy", "node", "socket", "metrics-addr", "log-level", "log-format", "resync", "stop-mode",
		"stop-timeout", "state-dir", "grpc-addr", "bfd", "bfd-interval", "bfd-multiplier", "kubeconfig", "sync-calico",
		"tailscale-socket", "discover-peers", "flush-on-exit"} {
		if cmd.Flags().Lookup(f) == nil {
			t.Errorf("netd run has no --%s", f)
		}
	}
	root := newRootCmd(streams{})
	got := goFlagStyle(root, []string{"run", "-policy=/p.yaml", "-node", "a", "--bfd=false", "-", "--", "-resync"})
	want := []string{"run", "--policy=/p.yaml", "--node", "a", "--bfd=false", "-", "--", "-resync"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("goFlagStyle: %q, want %q", got, want)
	}
	code, _, errOut := runStdin(t, "", "doctor", "-only", "nosuch", "-policy", examplePolicy)
	if code != 2 || !strings.Contains(errOut, `no check "nosuch"`) {
		t.Errorf("doctor -only nosuch: exit %d, %s", code, errOut)
	}
}

// TestKubeconfigDiscovery: policy diff finds the API server as kubectl
// does; no server answers (the addresses refuse connections), so the error
// names the server the rules picked. ~/.kube/config is read once per
// process by client-go, so these run netd as a child process.
func TestKubeconfigDiscovery(t *testing.T) {
	home := t.TempDir()
	write := func(path, server, ctxName string) {
		t.Helper()
		s := fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: %[2]s
clusters:
- name: %[2]s
  cluster: {server: %[1]q}
users:
- name: u
  user: {token: t}
contexts:
- name: %[2]s
  context: {cluster: %[2]s, user: u}
`, server, ctxName)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(home, ".kube", "config"), "https://127.0.0.1:1", "home")
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	write(a, "https://127.0.0.2:1", "a")
	write(b, "https://127.0.0.3:1", "b")
	noTailnet := []string{"HEADSCALE_URL=", "TS_API_KEY=", "TS_OAUTH_CLIENT_ID=", "TS_API_KEY_FILE=", "KUBERNETES_SERVICE_HOST=", "HOME=" + home}
	for _, tc := range []struct {
		name   string
		env    []string
		args   []string
		server string
	}{
		{"~/.kube/config", []string{"KUBECONFIG="}, nil, "127.0.0.1:1"},
		{"$KUBECONFIG first file's context", []string{"KUBECONFIG=" + a + ":" + b}, nil, "127.0.0.2:1"},
		{"$KUBECONFIG merged, --context from the second", []string{"KUBECONFIG=" + a + ":" + b}, []string{"--context", "b"}, "127.0.0.3:1"},
		{"--kubeconfig over $KUBECONFIG", []string{"KUBECONFIG=" + a}, []string{"--kubeconfig", b}, "127.0.0.3:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"policy", "diff", examplePolicy, "--timeout", "10s"}, tc.args...)
			code, out, errOut := runMain(t, append(slices.Clone(noTailnet), tc.env...), args...)
			if code != 3 || !strings.Contains(errOut, tc.server) {
				t.Errorf("exit %d, want 3 and an error naming %s\nstdout: %s\nstderr: %s", code, tc.server, out, errOut)
			}
		})
	}
	// Nothing found: no Calico part, and nothing else configured.
	code, _, errOut := runMain(t, append(slices.Clone(noTailnet), "KUBECONFIG="+filepath.Join(home, "none"), "HOME="+t.TempDir()), "policy", "diff", examplePolicy)
	if code != 3 || !strings.Contains(errOut, "nothing to do") {
		t.Errorf("no kubeconfig: exit %d, %s", code, errOut)
	}
}

// deadSocket is a unix socket nobody listens on any more.
func deadSocket(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "netd.sock")
	l, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}
