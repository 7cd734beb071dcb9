package kube_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/ducksnest/netd/internal/testutil"
)

// TestLean: the netd binary links no typed clientset, no client-go leader
// election or Event broadcaster and no built-in API scheme registration:
// their package init alone cost megabytes resident in every netd process.
func TestLean(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		testutil.Skip(t, "go not in PATH")
	}
	out, err := exec.Command("go", "list", "-deps", "github.com/ducksnest/netd/netd").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		for _, banned := range []string{
			"k8s.io/client-go/kubernetes", "k8s.io/client-go/tools/leaderelection",
			"k8s.io/client-go/tools/record", "k8s.io/client-go/informers", "k8s.io/client-go/discovery",
		} {
			if p == banned || strings.HasPrefix(p, banned+"/") {
				t.Errorf("netd links %s", p)
			}
		}
	}
}
