package calico

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/kube"
)

// affinityName is Calico's BlockAffinity name: node and cidr.
func affinityName(node, cidr string) string {
	p := netip.MustParsePrefix(cidr)
	return fmt.Sprintf("%s-%s-%d", node, p.Addr().String(), p.Bits())
}

func addAffinity(t testing.TB, c *kube.Client, node, cidr, state string) string {
	t.Helper()
	name := affinityName(node, cidr)
	create(t, c, BlockAffinities, "BlockAffinity", name, nil, map[string]any{"node": node, "cidr": cidr, "state": state})
	return name
}

func startSource(t testing.TB, c *kube.Client, node string) (*AffinitySource, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	src, err := NewAffinitySource(srv.NetdClient(t, node).Dynamic, BlockAffinities, node, testLog(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	if err := src.WaitSynced(t.Context()); err != nil {
		t.Fatal(err)
	}
	return src, reg
}

func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// TestAffinitySource: confirmed affinities of the node show up in Blocks
// (pending ones do not), every node's in Owners, and deletes withdraw
// them; each change pokes Changes, every time (10 creates in a row).
// BenchmarkAffinityLatency measures the delay.
func TestAffinitySource(t *testing.T) {
	s := server(t)
	c := clients(t, s)
	ctx := t.Context()
	addAffinity(t, c, "node-a", "10.244.0.0/26", "confirmed")
	src, _ := startSource(t, c, "node-a")
	if got := src.Blocks("node-a"); !slices.Equal(got, prefixes("10.244.0.0/26")) {
		t.Fatalf("initial blocks %v", got)
	}
	drain(src.Changes())
	addAffinity(t, c, "node-a", "10.244.0.64/26", "pending")
	addAffinity(t, c, "node-b", "10.244.1.0/26", "confirmed")
	testutil.Eventually(t, 10*time.Second, "node-b's block", func() bool { return len(src.Owners()["node-b"]) == 1 })
	select {
	case <-src.Changes():
	default:
		t.Error("no change signalled for node-b's block")
	}
	if got := src.Blocks("node-a"); !slices.Equal(got, prefixes("10.244.0.0/26")) {
		t.Errorf("pending affinity counted: %v", got)
	}
	// pending → confirmed
	name := affinityName("node-a", "10.244.0.64/26")
	u := get(t, c, BlockAffinities, name)
	spec(u)["state"] = "confirmed"
	if _, err := c.Dynamic.Resource(BlockAffinities).Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "confirmed block", func() bool {
		return slices.Equal(src.Blocks("node-a"), prefixes("10.244.0.0/26", "10.244.0.64/26"))
	})
	if err := c.Dynamic.Resource(BlockAffinities).Delete(ctx, affinityName("node-a", "10.244.0.0/26"), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "withdrawn block", func() bool {
		return slices.Equal(src.Blocks("node-a"), prefixes("10.244.0.64/26"))
	})

	for i := range 10 {
		drain(src.Changes())
		cidr := fmt.Sprintf("10.244.%d.0/26", 10+i)
		addAffinity(t, c, "node-a", cidr, "confirmed")
		select {
		case <-src.Changes():
		case <-time.After(10 * time.Second):
			t.Fatalf("no change for %s", cidr)
		}
		if !slices.Contains(src.Blocks("node-a"), netip.MustParsePrefix(cidr)) {
			t.Fatalf("change without %s", cidr)
		}
	}
}

// TestAffinityOutage stops kube-apiserver (etcd stays) for
// NETD_OUTAGE_SECONDS (default 60): the source keeps its blocks without a
// single change, then recovers and sees a block added after the restart.
func TestAffinityOutage(t *testing.T) {
	s := server(t)
	c := clients(t, s)
	outage := 60 * time.Second
	if v, err := strconv.Atoi(os.Getenv("NETD_OUTAGE_SECONDS")); err == nil {
		outage = time.Duration(v) * time.Second
	}
	addAffinity(t, c, "node-a", "10.244.0.0/26", "confirmed")
	addAffinity(t, c, "node-b", "10.244.1.0/26", "confirmed")
	src, reg := startSource(t, c, "node-a")
	want := src.Owners()
	drain(src.Changes())
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			if err := s.StartAPIServer(); err != nil {
				t.Error(err)
			}
		}
	})
	if err := s.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(outage)
	tick := time.NewTicker(100 * time.Millisecond)
	for time.Now().Before(end) {
		select {
		case <-src.Changes():
			t.Fatalf("change signalled during the outage: %v", src.Owners())
		case <-tick.C:
		}
		if got := src.Blocks("node-a"); !slices.Equal(got, want["node-a"]) {
			t.Fatalf("blocks flapped during the outage: %v", got)
		}
	}
	tick.Stop()
	errs := promtest.ToFloat64(src.watchErrors)
	t.Logf("watch errors during a %v outage: %v", outage, errs)
	start := time.Now()
	if err := s.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	restarted = true
	t.Logf("kube-apiserver ready again after %v", time.Since(start))
	addAffinity(t, c, "node-a", "10.244.2.0/26", "confirmed")
	testutil.Eventually(t, 60*time.Second, "the block added after the restart", func() bool {
		return slices.Contains(src.Blocks("node-a"), netip.MustParsePrefix("10.244.2.0/26"))
	})
	t.Logf("recovered %v after the API server returned", time.Since(start))
	if got := src.Blocks("node-a"); !slices.Equal(got, prefixes("10.244.0.0/26", "10.244.2.0/26")) {
		t.Errorf("after recovery: %v", got)
	}
	if n, err := promtest.GatherAndCount(reg, "netd_calico_watch_errors_total"); err != nil || n != 1 || errs < 1 {
		t.Errorf("watch error metric: %d series, %v errors, err %v", n, errs, err)
	}
}
