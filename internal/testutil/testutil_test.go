package testutil

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// fakeT records what a helper did to the test.
type fakeT struct {
	fatal, skip string
}

func (f *fakeT) Helper()                        {}
func (f *fakeT) Fatalf(format string, a ...any) { f.fatal = fmt.Sprintf(format, a...) }
func (f *fakeT) Skipf(format string, a ...any)  { f.skip = fmt.Sprintf(format, a...) }
func (f *fakeT) String() string                 { return "fatal=" + f.fatal + " skip=" + f.skip }
func (f *fakeT) clean() bool                    { return f.fatal == "" && f.skip == "" }
func (f *fakeT) failedWith(s string) bool       { return strings.Contains(f.fatal, s) && f.skip == "" }
func (f *fakeT) skippedWith(s string) bool      { return strings.Contains(f.skip, s) && f.fatal == "" }

func TestEventually(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var ft fakeT
		took := Eventually(&ft, time.Second, "the clock", func() bool { return time.Since(start) >= 300*time.Millisecond })
		if !ft.clean() || took < 300*time.Millisecond || took > 300*time.Millisecond+Interval {
			t.Errorf("condition true after 300ms: took %v, %v", took, ft.String())
		}
		ft = fakeT{}
		took = Eventually(&ft, time.Second, "never", func() bool { return false })
		if !ft.failedWith("timed out after 1s waiting for never") || took < time.Second {
			t.Errorf("condition never true: took %v, %v", took, ft.String())
		}
	})
}

func TestPollError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ft fakeT
		n := 0
		Poll(&ft, time.Minute, "the thing", func() (bool, error) {
			n++
			if n == 3 {
				return false, errors.New("boom")
			}
			return false, nil
		})
		if !ft.failedWith("waiting for the thing: boom") || n != 3 {
			t.Errorf("error on the third call: %d calls, %v", n, ft.String())
		}
	})
}

// TestEvery: the condition is checked at once, then every period, until
// it holds; Wait gives up when its context is done.
func TestEvery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var ft fakeT
		n := 0
		took := Every(100*time.Millisecond).Eventually(&ft, time.Second, "the clock", func() bool {
			n++
			return time.Since(start) >= 350*time.Millisecond
		})
		if !ft.clean() || took != 400*time.Millisecond || n != 5 {
			t.Errorf("condition true after 350ms, checked every 100ms: took %v, %d checks, %v", took, n, ft.String())
		}
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(250*time.Millisecond, cancel)
		took, err := Every(100*time.Millisecond).Wait(ctx, time.Minute, "never", func() (bool, error) { return false, nil })
		if !errors.Is(err, context.Canceled) || took != 250*time.Millisecond {
			t.Errorf("cancelled after 250ms: took %v, %v", took, err)
		}
	})
}

func TestTail(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb\nc", 5, "a\nb\nc"},
		{"", 3, ""},
		{"a\n\n", 1, "a"},
	} {
		if got := Tail(c.in, c.n); got != c.want {
			t.Errorf("Tail(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
	p := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(p, []byte("1\n2\n3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := TailFile(p, 1); got != "3" {
		t.Errorf("TailFile = %q", got)
	}
	if got := TailFile(p+".missing", 1); !strings.Contains(got, "no such file") {
		t.Errorf("TailFile of a missing file = %q, want the error", got)
	}
}

func TestSkip(t *testing.T) {
	for _, c := range []struct {
		env   string
		check func(*fakeT) bool
	}{
		{"", func(f *fakeT) bool { return f.skippedWith("needs x") }},
		{"all", func(f *fakeT) bool { return f.failedWith("needs x (NETD_TEST_REQUIRE=all") }},
		{"some", func(f *fakeT) bool { return f.failedWith(`NETD_TEST_REQUIRE="some" is neither`) }},
	} {
		t.Setenv(RequireEnv, c.env)
		var ft fakeT
		Skip(&ft, "needs %s", "x")
		if !c.check(&ft) {
			t.Errorf("%s=%q: %v", RequireEnv, c.env, ft.String())
		}
		ft = fakeT{}
		Require(&ft, true, "needs y")
		if !ft.clean() {
			t.Errorf("%s=%q: Require(true) did something: %v", RequireEnv, c.env, ft.String())
		}
		ft = fakeT{}
		NeedBinary(&ft, "netd-no-such-binary", "it does not exist")
		if ft.clean() {
			t.Errorf("%s=%q: a missing binary neither skipped nor failed", RequireEnv, c.env)
		}
	}
}
