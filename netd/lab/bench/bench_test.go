package bench

import (
	"bufio"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/netd/examples"
	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/policy"
	"github.com/ducksnest/netd/policy/desired"
)

func TestParseStatus(t *testing.T) {
	status := "Name:\tnetd\nVmPeak:\t 1000 kB\nVmRSS:\t   48844 kB\nRssAnon:\t   10856 kB\nRssFile:\t   37988 kB\nRssShmem:\t       0 kB\n"
	m, err := parseStatus([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	if m != (Mem{RSS: 48844 << 10, Anon: 10856 << 10, File: 37988 << 10}) {
		t.Errorf("parseStatus = %+v", m)
	}
	if _, err := parseStatus([]byte("VmRSS:\t 1 kB\n")); err == nil {
		t.Error("a status without RssAnon and RssFile parsed")
	}
	if _, err := parseStatus([]byte("VmRSS:\t 1 MB\nRssAnon:\t1 kB\nRssFile:\t1 kB\n")); err == nil {
		t.Error("a value not in kB parsed")
	}
}

func TestParseStatCPU(t *testing.T) {
	// The command name may hold spaces and parentheses; utime and stime
	// are fields 14 and 15.
	stat := "4242 (bird (x) y) S 1 4242 4242 0 -1 4194560 500 0 0 0 17 25 0 0 20 0 1 0 12345 100000 1000 18446744073709551615\n"
	got, err := parseStatCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if got != 42 {
		t.Errorf("parseStatCPU = %d, want 17+25", got)
	}
	if _, err := parseStatCPU([]byte("4242 (x) S 1 2")); err == nil {
		t.Error("a short stat parsed")
	}
	// This process's own stat parses.
	if _, err := readCPU(os.Getpid()); err != nil {
		t.Error(err)
	}
}

func TestMedianAndRatio(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	if got := medianDuration([]time.Duration{3 * time.Second, time.Second, 2 * time.Second}); got != 2*time.Second {
		t.Errorf("medianDuration = %v", got)
	}
	if got := ratio(1, 4); got != "0.25×" {
		t.Errorf("ratio(1, 4) = %q", got)
	}
	if got := ratio(1, 0); got != "—" {
		t.Errorf("ratio(1, 0) = %q", got)
	}
	if got := perPrefix(3000, 1000, 10); got != 200 {
		t.Errorf("perPrefix = %v", got)
	}
}

func TestParsers(t *testing.T) {
	protocols := `BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
p_old      BGP        ---        up     11:33:45.574  Established
p_ultra    BGP        ---        start  11:33:41.191  Connect
`
	if allEstablished(protocols, []string{"p_old", "p_ultra"}) {
		t.Error("a session in Connect counted as Established")
	}
	if !allEstablished(protocols, []string{"p_old"}) {
		t.Error("an Established session not counted")
	}
	n, err := parseDestinations("Table ipv4-unicast\nDestination: 10005, Path: 10005\n")
	if err != nil || n != 10005 {
		t.Errorf("parseDestinations = %d, %v", n, err)
	}
	metrics := "# HELP go_memstats_heap_inuse_bytes x\ngo_memstats_heap_inuse_bytes_total 1\ngo_memstats_heap_inuse_bytes 5.4e+06\n"
	v, err := parseMetric(bufio.NewScanner(strings.NewReader(metrics)), "go_memstats_heap_inuse_bytes")
	if err != nil || v != 5.4e6 {
		t.Errorf("parseMetric = %v, %v", v, err)
	}
}

// labState is the example policy with the edge peer, compiled.
func labState(t *testing.T) *desired.State {
	t.Helper()
	pol, err := withEdge(examples.Ducksnest, 10000)
	if err != nil {
		t.Fatal(err)
	}
	f, err := policy.Load("policy.yaml", pol)
	if err != nil {
		t.Fatal(err)
	}
	st, err := policy.Compile(f)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestReferenceConfigs renders BIRD's and gobgpd's configuration of every
// lab node and has the daemons check them (bird -p, gobgpd --dry-run).
func TestReferenceConfigs(t *testing.T) {
	st := labState(t)
	dir := t.TempDir()
	bfd := BFDTimers{Interval: 100 * time.Millisecond, Multiplier: 5}
	var confs []string
	for i := range st.Nodes {
		n := &st.Nodes[i]
		bird := birdNodeConf(n, st.Overlay, st.Networks.Overlay, st.Routing.Table, bfd, map[netip.Addr]bool{edgeAddr.Addr(): true})
		for _, want := range []string{"hold time 9;", "keepalive time 3;", "connect retry time 2;", "graceful restart time 120;",
			"min tx interval 100 ms;", "multiplier 5;", "kernel table 244;"} {
			if !strings.Contains(bird, want) {
				t.Errorf("BIRD config of %s has no %q:\n%s", n.Name, want, bird)
			}
		}
		for _, p := range n.PodCIDRs {
			if !strings.Contains(bird, "route "+p.String()+" blackhole;") {
				t.Errorf("BIRD config of %s does not announce %s", n.Name, p)
			}
		}
		if n.Name == benchNode && !strings.Contains(bird, "import where net ~ [ 10.128.0.0/10{10,24} ]") {
			t.Errorf("BIRD config of %s does not take the edge peer's range:\n%s", n.Name, bird)
		}
		gobgp := gobgpdNodeConf(n)
		if got := strings.Count(gobgp, "[[neighbors]]"); got != len(n.BGP.Peers) {
			t.Errorf("gobgpd config of %s has %d neighbors, want %d", n.Name, got, len(n.BGP.Peers))
		}
		confs = append(confs, writeFile(t, dir, n.Name+".bird.conf", bird), writeFile(t, dir, n.Name+".gobgpd.toml", gobgp))
	}
	sender := writeFile(t, dir, "sender.conf", senderConf(edgeAddr.Addr(), edgeAS, st.Nodes[1].OverlayAddr, 64512, 300))
	install := writeFile(t, dir, "install.conf", installConf(installGW, 244, 300))

	bird := testutil.NeedBinary(t, "bird", "apt-get install bird2")
	gobgpd := testutil.NeedBinary(t, "gobgpd", "apt-get install gobgpd")
	check := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.CommandContext(t.Context(), name, args...).CombinedOutput(); err != nil {
			t.Errorf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	for _, c := range append(confs, sender, install) {
		if strings.HasSuffix(c, ".toml") {
			check(gobgpd, "--dry-run", "-f", c)
		} else {
			check(bird, "-p", "-c", c)
		}
	}
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
