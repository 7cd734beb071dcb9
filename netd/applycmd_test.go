package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ducksnest/netd/internal/kubetest"
)

// TestPolicyDiffApply runs `netd policy diff|apply` against a real API
// server: diff lists the creates, apply makes them, and diff is then empty.
func TestPolicyDiffApply(t *testing.T) {
	for _, v := range []string{"HEADSCALE_URL", "TS_API_KEY", "TS_OAUTH_ID", "TS_OAUTH_CLIENT_ID", "TS_API_KEY_FILE"} {
		t.Setenv(v, "") // the tailnet part is not configured here
	}
	// Nor is a kubeconfig found by kubectl's rules: only --kubeconfig.
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "none"))
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	s := kubetest.Start(t)
	// The CLI runs as a node's netd identity (mkpki.sh), under netd's RBAC.
	kc, err := s.NetdKubeconfig("firebat")
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "policy", "diff", examplePolicy, "--kubeconfig", kc)
	if code != 1 || !strings.Contains(out, "create               IPPool ") || !strings.Contains(out, "create               IPAMConfig default") {
		t.Fatalf("diff: code %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "== tailnet: not diffed; NOT VALIDATED by the control server: no tailnet credentials") {
		t.Errorf("diff without tailnet credentials does not say the policy was not validated:\n%s", out)
	}
	t.Logf("netd policy diff:\n%s", out)
	code, out, errOut = runCLI(t, "policy", "apply", examplePolicy, "--kubeconfig", kc)
	if code != 0 || !strings.Contains(out, "calico: applied  create               FelixConfiguration default") {
		t.Fatalf("apply: code %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "policy", "diff", examplePolicy, "--kubeconfig", kc, "--format", "json")
	if code != 0 || !strings.Contains(out, `"actions": null`) || !strings.Contains(out, `"changes": false`) ||
		!strings.Contains(out, `"tailnetValidation": {`) || !strings.Contains(out, `"checked": false`) {
		t.Fatalf("diff after apply: code %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = runCLI(t, "policy", "apply", "--kubeconfig", kc)
	if code != 2 || !strings.Contains(errOut, "usage:") {
		t.Errorf("apply without FILE: code %d\n%s", code, errOut)
	}
	code, _, errOut = runCLI(t, "policy", "diff", examplePolicy, "--only", "tailnet")
	if code != 3 || !strings.Contains(errOut, "NOT VALIDATED by the control server: no tailnet credentials") {
		t.Errorf("diff --only tailnet without credentials: code %d\n%s", code, errOut)
	}
	code, _, errOut = runCLI(t, "policy", "diff", examplePolicy, "--kubeconfig", "")
	if code != 3 || !strings.Contains(errOut, "nothing to do") {
		t.Errorf("diff with nothing configured: code %d\n%s", code, errOut)
	}
}
