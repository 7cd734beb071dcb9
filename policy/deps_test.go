package policy

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestDeps keeps the policy packages free of Kubernetes, netlink and GoBGP,
// like tailscale's cmd/tailscaled/deps_test.go: the compiler stays pure and
// cheap to import.
func TestDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", "github.com/ducksnest/netd/policy/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list returned too little: %q", deps)
	}
	for _, d := range deps {
		for _, banned := range []string{"k8s.io/", "sigs.k8s.io/", "github.com/vishvananda/", "github.com/osrg/gobgp", "google.golang.org/grpc"} {
			if strings.HasPrefix(d, banned) {
				t.Errorf("policy depends on %s (banned prefix %s)", d, banned)
			}
		}
	}
}

// TestOneContract keeps policy/desired the only input of the reconcilers:
// the compiler is imported only by the CLI (package main) and the daemon's
// loader, and neither the Calico reconciler nor the ACL writer depends on
// the compiler or on the tailnet policy document, even indirectly.
func TestOneContract(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	const (
		compiler = "github.com/ducksnest/netd/policy"
		acldoc   = "github.com/ducksnest/netd/policy/acldoc"
	)
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", "github.com/ducksnest/netd/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	mayImport := map[string]bool{"github.com/ducksnest/netd/netd": true, "github.com/ducksnest/netd/netd/daemon": true}
	importers := 0
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], compiler+"/") || f[0] == compiler {
			continue
		}
		if slices.Contains(f[1:], compiler) {
			importers++
			if !mayImport[f[0]] {
				t.Errorf("%s imports the compiler %s: read policy/desired instead", f[0], compiler)
			}
		}
	}
	if importers == 0 {
		t.Fatalf("nobody imports the compiler: go list output is not what this test expects:\n%s", out)
	}
	for _, pkg := range []string{"github.com/ducksnest/netd/acl", "github.com/ducksnest/netd/netd/calico"} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		deps := strings.Fields(string(out))
		if !slices.Contains(deps, "github.com/ducksnest/netd/policy/desired") {
			t.Errorf("%s does not depend on policy/desired: go list output is not what this test expects", pkg)
		}
		for _, banned := range []string{compiler, acldoc} {
			if slices.Contains(deps, banned) {
				t.Errorf("%s depends on %s: reconcilers read policy/desired", pkg, banned)
			}
		}
	}
}
