package calico

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetrics: the drift gauges exist at 0 from the start, follow the last
// Reconcile's outcome, and go back to 0 when the instance stops
// reconciling.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	want := func(unapplied, unowned, pending int) string {
		return fmt.Sprintf(`
# HELP netd_calico_drift_objects Calico objects that differ from the policy after the last reconciliation, by state (unapplied, unowned, pending).
# TYPE netd_calico_drift_objects gauge
netd_calico_drift_objects{state="pending"} %d
netd_calico_drift_objects{state="unapplied"} %d
netd_calico_drift_objects{state="unowned"} %d
`, pending, unapplied, unowned)
	}
	check := func(what string, unapplied, unowned, pending int) {
		t.Helper()
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want(unapplied, unowned, pending)), "netd_calico_drift_objects"); err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	check("at start", 0, 0, 0)
	m.Observe(Status{
		Unapplied: 2,
		Unowned:   []Pending{{"IPPool", "manual", "not labelled"}},
		Pending:   []Pending{{"IPPool", "old", "2 blocks"}, {"FelixConfiguration", "default", "mark mask"}, {"IPPool", "older", "1 block"}},
	})
	check("after a reconcile", 2, 1, 3)
	m.Clear()
	check("after losing the Lease", 0, 0, 0)
	if _, err := NewMetrics(reg); err == nil {
		t.Error("registering twice succeeded")
	}
}
