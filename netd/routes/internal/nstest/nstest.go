// Package nstest creates throw-away network namespaces for the privileged
// tests of netd/routes: each test gets a fresh, named namespace that is
// deleted in t.Cleanup, even on failure.
package nstest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/ducksnest/netd/internal/testutil"
)

var counter atomic.Int64

// NS is a named network namespace.
type NS struct {
	Name   string
	Handle netns.NsHandle
}

// New skips the test unless it runs as root (fails it with
// NETD_TEST_REQUIRE=all), then creates a namespace
// named after the test process and brings lo up in it.
func New(tb testing.TB) *NS {
	tb.Helper()
	testutil.NeedRoot(tb, "creates network namespaces")
	name := fmt.Sprintf("netdrt-%d-%d", os.Getpid(), counter.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		tb.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	tb.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			tb.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	h, err := netns.GetFromName(name)
	if err != nil {
		tb.Fatalf("opening netns %s: %v", name, err)
	}
	tb.Cleanup(func() { h.Close() })
	ns := &NS{Name: name, Handle: h}
	ns.IP(tb, "link", "set", "lo", "up")
	return ns
}

// IP runs `ip -n NS args...` and returns its output; it fails the test on
// error.
func (ns *NS) IP(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns.Name}, args...)...).CombinedOutput()
	if err != nil {
		tb.Fatalf("ip -n %s %s: %v: %s", ns.Name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Script runs each non-empty line of script as `ip -n NS <line>`.
func (ns *NS) Script(tb testing.TB, script string) {
	tb.Helper()
	for l := range strings.Lines(script) {
		if f := strings.Fields(l); len(f) > 0 {
			ns.IP(tb, f...)
		}
	}
}
