package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/lab"
)

const scalePeer = `      - name: edge
        address: 100.64.0.50
        asn: 64515
        nodes: [firebat]
        export: [pods]
        import: ["10.128.0.0/10 le 24"]
        maxPrefixes: 20000
`

// scaleBIRD announces n /24s from 10.128.0.0/10 to firebat.
func scaleBIRD(n int) string {
	var b strings.Builder
	b.WriteString("router id 100.64.0.50;\nprotocol device {}\nprotocol static many {\n  ipv4;\n")
	for i := range n {
		fmt.Fprintf(&b, "  route 10.%d.%d.0/24 blackhole;\n", 128+i/256, i%256)
	}
	b.WriteString(`}
protocol bgp firebat {
  local 100.64.0.50 as 64515;
  neighbor 100.64.0.1 as 64512;
  # No graceful restart: a stop withdraws everything, a start re-learns.
  graceful restart off;
  ipv4 { import none; export where proto = "many"; };
}
`)
	return b.String()
}

// countIn counts a node's netd routes inside 10.128.0.0/10.
func countIn(l *lab.Lab, node string) (int, error) {
	rs, err := l.Routes(node)
	if err != nil {
		return 0, err
	}
	in := netip.MustParsePrefix("10.128.0.0/10")
	n := 0
	for _, r := range rs {
		if a, ok := netip.AddrFromSlice(r.Dst.IP); ok && in.Contains(a.Unmap()) {
			n++
		}
	}
	return n, nil
}

// TestInteropScale10k: a BIRD peer on the overlay announces 10,000
// prefixes to firebat. Measures the time until all are in firebat's
// kernel, the time to withdraw them when BIRD stops (Cease), the time to
// re-install them when it comes back (a 10k-prefix peer restart), and
// netd's RSS with 10k learned routes against its idle RSS.
func TestInteropScale10k(t *testing.T) {
	t.Parallel() // see doc.go
	needBin(t, "bird")
	const n = 10000
	l := upLabWith(t, examplePolicy(t, "maxPrefixes: 1000 ", "maxPrefixes: 20000 ", examplePeer, examplePeer+scalePeer))
	ctx := t.Context()
	r, err := l.AddRouter(ctx, "edge", lab.OnWAN, netip.MustParsePrefix("100.64.0.50/10"))
	if err != nil {
		t.Fatal(err)
	}
	idle, err := l.RSS("firebat")
	if err != nil {
		t.Fatal(err)
	}
	idleHeap := metric(t, l, "firebat", "go_memstats_heap_inuse_bytes", "")
	conf := scaleBIRD(n)
	start := time.Now()
	birdc := startBIRD(t, l, r, conf)
	count := func(want int) func() (bool, error) {
		return func() (bool, error) {
			c, err := countIn(l, "firebat")
			return c == want, err
		}
	}
	testutil.Poll(t, 180*time.Second, "10k routes in firebat's kernel", count(n))
	first := time.Since(start)
	// Let the Go heap settle before reading RSS.
	var full int64
	testutil.Poll(t, 10*time.Second, "rss", func() (bool, error) {
		full, err = l.RSS("firebat")
		return err == nil, err
	})
	t.Logf("BIRD start -> %d routes in firebat's kernel: %v", n, first)
	fullHeap := metric(t, l, "firebat", "go_memstats_heap_inuse_bytes", "")
	t.Logf("netd RSS on firebat: idle %.1f MiB, with %d learned routes %.1f MiB: %.2f KB per prefix above idle (Go heap in use %.1f -> %.1f MiB: %.2f KB per prefix)",
		float64(idle)/(1<<20), n, float64(full)/(1<<20), float64(full-idle)/1024/n,
		idleHeap/(1<<20), fullHeap/(1<<20), (fullHeap-idleHeap)/1024/n)

	// A peer restart: BIRD stops (Cease: its routes are withdrawn) and
	// starts again.
	birdc("down")
	start = time.Now()
	testutil.Poll(t, 120*time.Second, "10k routes withdrawn", count(0))
	t.Logf("BIRD down -> %d routes withdrawn from firebat's kernel: %v", n, time.Since(start))
	_ = l.StopProc(ctx, "bird-edge", 5*time.Second)
	start = time.Now()
	// The restarted BIRD also runs BFD with netd (BIRD's BFD interop).
	bfdConf := strings.Replace(conf, "protocol device {}\n", "protocol device {}\nprotocol bfd { interface \"*\" { min rx interval 100 ms; min tx interval 100 ms; multiplier 5; }; }\n", 1)
	bfdConf = strings.Replace(bfdConf, "  graceful restart off;\n", "  graceful restart off;\n  bfd on;\n", 1)
	birdc = startBIRDKey(t, l, r, bfdConf, "bird-edge-2")
	testutil.Poll(t, 180*time.Second, "10k routes back", count(n))
	t.Logf("BIRD restart -> %d routes back in firebat's kernel: %v (includes GoBGP's ~5 s idle hold after a drop)", n, time.Since(start))
	testutil.Poll(t, 30*time.Second, "BFD up between BIRD and netd", func() (bool, error) {
		return metric(t, l, "firebat", "netd_bfd_session_up", `peer="100.64.0.50"`) == 1 &&
			strings.Contains(birdc("show", "bfd", "sessions"), "Up"), nil
	})
	t.Logf("BIRD bfd sessions:\n%s", birdc("show", "bfd", "sessions"))
	if err := l.SetRouterLink(r, false); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	testutil.Poll(t, 60*time.Second, "10k routes withdrawn after a silent cut", count(0))
	t.Logf("BIRD link cut (BFD) -> %d routes gone from firebat's kernel: %v", n, time.Since(start))
	if rss, err := l.RSS("firebat"); err == nil {
		t.Logf("netd RSS on firebat after the peer restart: %.1f MiB", float64(rss)/(1<<20))
	}
}
