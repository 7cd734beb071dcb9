package e2e

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/netd/netd/lab"
)

var (
	// 20+20 repetitions take about 5 minutes here (one restart takes about
	// 7 s: GoBGP's 5 s idle hold on the peers that dial the restarted node,
	// and its 1-2 s wait before a first dial); CI runs fewer.
	restartReps = flag.Int("restart.reps", 3, "repetitions of each kind of netd restart in TestRestartZeroLoss (20 for the note)")
	bfdRuns     = flag.Int("bfd.runs", 3, "silent failures measured in TestBFDSilentFailure (10 for the note)")
	flapCount   = flag.Int("flap.count", 10, "overlay link flaps in TestFlapOverlay")
)

// upLabWith brings up a lab from the given policy text (see upLab).
func upLabWith(t *testing.T, data []byte, hold ...string) *lab.Lab {
	t.Helper()
	needRoot(t)
	st := policyState(t, "policy.yaml", data)
	name, dir := labName(), t.TempDir()
	log := slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var l *lab.Lab
	t.Cleanup(func() {
		if t.Failed() && l != nil {
			for _, n := range l.Nodes {
				t.Logf("--- netd log of %s:\n%s", n.Name, l.LogTail(n.Name, 40))
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := lab.Down(ctx, name, dir, log); err != nil {
			t.Errorf("lab down: %v", err)
		}
		if left, _ := filepath.Glob("/run/netns/" + name + "-*"); len(left) > 0 {
			t.Errorf("namespaces left after lab down: %v", left)
		}
	})
	var err error
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	l, err = lab.Up(ctx, lab.Config{Name: name, State: st, Policy: data, Netd: netdBin, StateDir: dir,
		Hold: hold, ConvergeTimeout: 90 * time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// examplePolicy returns the example policy with each old→new replacement
// applied (each must match).
func examplePolicy(t *testing.T, repl ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(policyPath)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i+1 < len(repl); i += 2 {
		if !strings.Contains(s, repl[i]) {
			t.Fatalf("example policy has no %q", repl[i])
		}
		s = strings.Replace(s, repl[i], repl[i+1], 1)
	}
	return []byte(s)
}

// blocksGone reports whether none of node's blocks is in any kernel of
// others.
func blocksGone(l *lab.Lab, node string, others []string) (bool, error) {
	n, err := l.Node(node)
	if err != nil {
		return false, err
	}
	for _, o := range others {
		rs, err := l.Routes(o)
		if err != nil {
			return false, err
		}
		for _, r := range rs {
			if p, ok := netip.AddrFromSlice(r.Dst.IP); ok {
				for _, b := range n.PodCIDRs {
					if b.Contains(p.Unmap()) {
						return false, nil
					}
				}
			}
		}
	}
	return true, nil
}

// blocksEverywhere reports whether every node in on has routes to the
// blocks of every node in of.
func blocksEverywhere(l *lab.Lab, on, of []string) (bool, error) {
	for _, o := range on {
		ok, _, err := l.HasRoutes(o, of)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

func names(l *lab.Lab) []string {
	var out []string
	for _, n := range l.Nodes {
		out = append(out, n.Name)
	}
	return out
}

// httpGet fetches path from addr inside a namespace (HTTP/1.0, no client
// state outside the namespace).
func httpGet(ns, addr, path string) (string, error) {
	var c net.Conn
	err := lab.InNS(ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", addr, 2*time.Second)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: netd\r\n\r\n", path); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// metric returns the value of the sample name{labels...} (labels as they
// appear in the exposition, e.g. `peer="old",reason="not_owned"`) from a
// node's netd, 0 if absent.
func metric(t *testing.T, l *lab.Lab, node, name, labels string) float64 {
	t.Helper()
	n, _ := l.Node(node)
	body, err := httpGet(n.NS, lab.DefaultMetricsAddr, "/metrics")
	if err != nil {
		t.Fatalf("metrics of %s: %v", node, err)
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\{` + regexp.QuoteMeta(labels) + `\} (\S+)$`)
	if labels == "" {
		re = regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`)
	}
	m := re.FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// logCount counts lines of a node's netd log containing every one of subs.
func logCount(t *testing.T, l *lab.Lab, node string, subs ...string) int {
	t.Helper()
	n, _ := l.Node(node)
	b, err := os.ReadFile(n.Log)
	if err != nil {
		t.Fatal(err)
	}
	c := 0
	for _, line := range strings.Split(string(b), "\n") {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			c++
		}
	}
	return c
}

// tempFile writes b to a file in the test's temp dir.
func tempFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
