package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/netd/netd/lab"
	"github.com/ducksnest/netd/policy"
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
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces and runs netd in them")
	}
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
	needRoot(t)
	data, err := os.ReadFile(policyPath)
	if err != nil {
		t.Fatal(err)
	}
	f, err := policy.Load(policyPath, data)
	if err != nil {
		t.Fatal(err)
	}
	st, err := policy.Compile(f)
	if err != nil {
		t.Fatal(err)
	}
	name, dir := labName(), t.TempDir()
	log := slog.New(slog.NewTextHandler(logWriter{t}, nil))
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
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	l, err = lab.Up(ctx, lab.Config{Name: name, State: st, Policy: data, Netd: netdBin, StateDir: dir,
		Hold: hold, ConvergeTimeout: 90 * time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// poll calls cond every 50ms until it returns true or d passes.
func poll(t *testing.T, d time.Duration, what string, cond func() (bool, error)) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(d)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %v", what, d)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("%s: %v", what, t.Context().Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
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
