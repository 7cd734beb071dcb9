package daemon

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestBuildInfoMetric: the daemon exports netd_build_info on its registry.
func TestBuildInfoMetric(t *testing.T) {
	d, _ := newTestDaemon(t)
	n, err := testutil.GatherAndCount(d.reg, "netd_build_info")
	if err != nil || n != 1 {
		t.Fatalf("netd_build_info: %d series, err %v; want 1", n, err)
	}
}
