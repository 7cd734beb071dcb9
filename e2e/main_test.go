package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/lab"
)

// netdBin is the netd binary built by TestMain ("" when not root).
var netdBin string

const policyPath = "../examples/ducksnest/policy.yaml"

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "netd-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		netdBin = filepath.Join(dir, "netd")
		out, err := exec.Command("go", "build", "-o", netdBin, "github.com/ducksnest/netd/netd").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "building netd: %v\n%s", err, out)
			return 1
		}
	}
	return m.Run()
}

func needRoot(t *testing.T) {
	t.Helper()
	testutil.NeedRoot(t, "builds network namespaces and runs netd in them")
}

// labName is unique per test, fixed length so no name prefixes another.
func labName() string { return fmt.Sprintf("e2e%05x", rand.IntN(1<<20)) }

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// upLab brings the example up (netd on every node not in hold) and removes
// it at the end of the test; on failure it logs the netd logs first.
func upLab(t *testing.T, hold ...string) *lab.Lab {
	t.Helper()
	data, err := os.ReadFile(policyPath)
	if err != nil {
		t.Fatal(err)
	}
	return upLabWith(t, data, hold...)
}

func others(l *lab.Lab, name string) []string {
	var out []string
	for _, n := range l.Nodes {
		if n.Name != name {
			out = append(out, n.Name)
		}
	}
	return out
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
