package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/netd/internal/kubetest"
	"github.com/ducksnest/netd/netd/kube"
	"github.com/ducksnest/netd/netd/lab"
)

// memSample is one netd's memory: /proc/PID/status and the Go heap from
// its /metrics.
type memSample struct {
	rss, anon, file, heap float64 // MiB
}

func (m memSample) String() string {
	return fmt.Sprintf("VmRSS %.1f MiB (RssAnon %.1f, RssFile %.1f), Go heap in use %.1f MiB", m.rss, m.anon, m.file, m.heap)
}

func readMem(l *lab.Lab, node string) (memSample, error) {
	n, err := l.Node(node)
	if err != nil {
		return memSample{}, err
	}
	if n.Netd == nil {
		return memSample{}, fmt.Errorf("netd of %s is not running", node)
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", n.Netd.PID))
	if err != nil {
		return memSample{}, err
	}
	defer f.Close()
	var m memSample
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		switch k {
		case "VmRSS":
			m.rss = kb / 1024
		case "RssAnon":
			m.anon = kb / 1024
		case "RssFile":
			m.file = kb / 1024
		}
	}
	// The socket is made in the node's namespace; net/http would dial from
	// another thread.
	var conn net.Conn
	if err := lab.InNS(n.NS, func() error {
		var err error
		conn, err = net.Dial("tcp", lab.DefaultMetricsAddr)
		return err
	}); err != nil {
		return m, err
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }}}
	err = func() error {
		resp, err := hc.Get("http://" + lab.DefaultMetricsAddr + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "go_memstats_heap_inuse_bytes "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				m.heap = f / (1 << 20)
			}
		}
		return nil
	}()
	return m, err
}

// idleMem waits past netd's start-up trim (30 s after readiness; the lab
// has just converged), then until every node's VmRSS has not changed by
// more than 64 KiB over 5 samples a second apart (or 60 s have passed)
// and logs each node's memory.
func idleMem(t *testing.T, l *lab.Lab, what string) {
	t.Helper()
	select {
	case <-t.Context().Done():
		return
	case <-time.After(32 * time.Second):
	}
	for _, n := range l.Nodes {
		m := stableMem(t, l, n.Name, 60*time.Second)
		t.Logf("MEASURE idle netd on %s %s: %s", n.Name, what, m)
	}
}

// spread is the largest minus the smallest of v.
func spread(v []float64) float64 {
	lo, hi := v[0], v[0]
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	return hi - lo
}

// TestIdleMemory measures each netd of the 4-node lab at idle, without and
// then with --kubeconfig (watches on a real API server, as its node's
// identity; the BlockAffinities of the policy's blocks). It is a
// measurement, not a check: it runs only with NETD_MEASURE=1, and
// NETD_MEASURE_BIN names another netd binary to measure (a build of an
// earlier commit, for a before/after in one run each).
func TestIdleMemory(t *testing.T) {
	// Not parallel: NETD_MEASURE_BIN swaps the binary every test starts.
	if os.Getenv("NETD_MEASURE") != "1" {
		t.Skip("a measurement: set NETD_MEASURE=1 (and NETD_MEASURE_BIN for another binary)")
	}
	needRoot(t)
	if b := os.Getenv("NETD_MEASURE_BIN"); b != "" {
		saved := netdBin
		netdBin = b
		t.Cleanup(func() { netdBin = saved })
	}
	l := upLab(t)
	idleMem(t, l, "without --kubeconfig")
	ctx := t.Context()
	for _, n := range l.Nodes {
		if err := l.StopNetd(ctx, n.Name, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	s := kubetest.Start(t)
	c, err := kube.NewClient(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	kc := apiThroughLab(t, l, s)
	for _, n := range l.Nodes {
		for _, b := range n.PodCIDRs {
			addAffinity(ctx, t, c, n.Name, b)
		}
	}
	l.NetdArgs = map[string][]string{}
	for _, n := range l.Nodes {
		l.NetdArgs[n.Name] = []string{"--kubeconfig", kc(n.Name)}
		if err := l.StartNetd(ctx, n.Name); err != nil {
			t.Fatal(err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := l.WaitConverged(cctx, names(l)); err != nil {
		t.Fatal(err)
	}
	idleMem(t, l, "with --kubeconfig")
}
