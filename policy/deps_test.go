package policy

import (
	"os/exec"
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
