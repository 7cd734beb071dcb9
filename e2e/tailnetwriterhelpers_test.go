package e2e

// The helpers of TestTailnetWriter (tailnetwriter_test.go): compiling a
// policy text, reading a node's status, its logs and its goroutines.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/daemon"
	"github.com/ducksnest/netd/netd/lab"
	"github.com/ducksnest/netd/netd/tailnetsync"
	"github.com/ducksnest/netd/policy"
	"github.com/ducksnest/netd/policy/desired"
)

type compiledPolicy struct {
	st      *desired.State
	tailnet *desired.Tailnet
}

func mustState(t *testing.T, text string) compiledPolicy {
	t.Helper()
	f, err := policy.Load(policyPath, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	st, err := policy.Compile(f)
	if err != nil {
		t.Fatal(err)
	}
	return compiledPolicy{st: st, tailnet: &st.Tailnet}
}

// nodeStatus is the part of a node's netd status these tests read.
type nodeStatus struct {
	Policy        daemon.PolicyStatus `json:"policy"`
	TailnetPolicy *tailnetsync.Status `json:"tailnetPolicy"`
}

func readStatus(ctx context.Context, t *testing.T, l *lab.Lab, node string) nodeStatus {
	t.Helper()
	s, err := l.Status(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	var ns nodeStatus
	if err := json.Unmarshal(s.Raw, &ns); err != nil {
		t.Fatal(err)
	}
	return ns
}

func tailnetStatus(ctx context.Context, t *testing.T, l *lab.Lab, node string) tailnetsync.Status {
	t.Helper()
	ns := readStatus(ctx, t, l, node)
	if ns.TailnetPolicy == nil {
		t.Fatalf("%s: no tailnetPolicy in the status (no tailnet credentials?)", node)
	}
	return *ns.TailnetPolicy
}

func policyStatus(ctx context.Context, t *testing.T, l *lab.Lab, node string) daemon.PolicyStatus {
	t.Helper()
	return readStatus(ctx, t, l, node).Policy
}

// waitChecks waits until the writer on node has re-checked the live policy
// n more times.
func waitChecks(ctx context.Context, t *testing.T, l *lab.Lab, node string, n int) {
	t.Helper()
	last, seen := tailnetStatus(ctx, t, l, node).LastCheck, 0
	statusPoll.Eventually(t, time.Duration(n)*10*time.Second, fmt.Sprintf("%d re-checks on %s", n, node), func() bool {
		if lc := tailnetStatus(ctx, t, l, node).LastCheck; lc.After(last) {
			last, seen = lc, seen+1
		}
		return seen >= n
	})
}

// podTraffic checks TCP between a control-plane pod and a firebat pod
// (over the tailnet).
func podTraffic(ctx context.Context, l *lab.Lab) error {
	cp, _ := l.Node("control-plane")
	fb, _ := l.Node("firebat")
	src, dst := cp.Pods[0], fb.Pods[0]
	echo, err := lab.StartEcho([]lab.Pod{dst})
	if err != nil {
		return err
	}
	defer echo.Close()
	ap, _ := echo.Addr(dst.Addr)
	_, err = lab.TCPEcho(ctx, src, ap, []byte("ping"), 3*time.Second)
	return err
}

// statusPoll checks a condition every 100 ms: a netd status or a
// headscale read is not free on a shared machine.
var statusPoll = testutil.Every(100 * time.Millisecond)

type logEntry struct {
	Time time.Time `json:"time"`
	Msg  string    `json:"msg"`
}

// logEntries reads a node's netd log (JSON lines, as the module runs it).
func logEntries(t *testing.T, l *lab.Lab, node string) []logEntry {
	t.Helper()
	n, _ := l.Node(node)
	b, err := os.ReadFile(n.Log)
	if err != nil {
		t.Fatal(err)
	}
	var out []logEntry
	for _, line := range strings.Split(string(b), "\n") {
		var e logEntry
		if json.Unmarshal([]byte(line), &e) == nil && !e.Time.IsZero() {
			out = append(out, e)
		}
	}
	return out
}

// dumpStatusGoroutines makes every running netd of the lab dump its
// goroutines (SIGQUIT; netd exits) and logs the ones serving a status
// request, with what they wait on: the diagnosis of a status call that
// times out.
func dumpStatusGoroutines(t *testing.T, l *lab.Lab) {
	t.Helper()
	for _, n := range l.Nodes {
		if n.Netd == nil || !l.NetdRunning(n.Name) {
			continue
		}
		if err := syscall.Kill(n.Netd.PID, syscall.SIGQUIT); err != nil {
			continue
		}
		_, _ = testutil.Wait(5*time.Second, "netd to dump", func() (bool, error) { return !l.NetdRunning(n.Name), nil })
		b, err := os.ReadFile(n.Log)
		if err != nil {
			continue
		}
		var keep []string
		for _, g := range strings.Split(string(b), "\n\n") {
			if strings.Contains(g, "(*Daemon).Status") || strings.Contains(g, "sync.(*Mutex).Lock") {
				keep = append(keep, g)
			}
		}
		t.Logf("--- goroutines of netd on %s serving status or waiting on a mutex (%d):\n%s", n.Name, len(keep), strings.Join(keep, "\n\n"))
	}
}
