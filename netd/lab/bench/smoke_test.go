package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/netd/examples"
	"github.com/ducksnest/netd/internal/testutil"
)

// TestBenchSmoke runs the whole bench once with small figures (200
// prefixes, one restart of each kind, 1,000 routes): a measurement run,
// so only with NETD_MEASURE=1 (and root, bird, gobgpd).
func TestBenchSmoke(t *testing.T) {
	if os.Getenv("NETD_MEASURE") != "1" {
		t.Skip("a measurement: set NETD_MEASURE=1")
	}
	testutil.NeedRoot(t, "builds a lab in network namespaces")
	for _, b := range []string{"bird", "birdc", "gobgpd", "gobgp"} {
		testutil.NeedBinary(t, b, "apt-get install bird2 gobgpd")
	}
	dir := t.TempDir()
	netd := filepath.Join(dir, "netd")
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-o", netd, "github.com/ducksnest/netd/netd").CombinedOutput(); err != nil {
		t.Fatalf("building netd: %v\n%s", err, out)
	}
	name := fmt.Sprintf("bs%d", os.Getpid()%100000)
	var out bytes.Buffer
	err := Run(t.Context(), Config{
		Name: name, StateDir: filepath.Join(dir, "lab"), Policy: examples.Ducksnest, Netd: netd,
		Idle: 2 * time.Second, Settle: time.Second, Runs: 1, Prefixes: 200,
		Install: []int{1000}, InstallRounds: 1,
		BFD: BFDTimers{Interval: 100 * time.Millisecond, Multiplier: 5},
	}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"idle VmRSS per node", "idle CPU of the 4 nodes", "VmRSS growth per prefix, 200 learned: steady",
		"restart (kill -9)", "restart (SIGTERM)", "1000 routes"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the table has no %q", want)
		}
	}
	if strings.Contains(out.String(), "FAILED") {
		t.Error("a figure failed")
	}
	if left, _ := filepath.Glob("/run/netns/" + name + "-*"); len(left) > 0 {
		t.Errorf("namespaces left: %v", left)
	}
}
