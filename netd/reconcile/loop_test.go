package reconcile

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

// recorder is a reconcile function that records when it ran and returns
// the next of its scripted results (nil once they run out). With block
// set, each run waits until release is called.
type recorder struct {
	mu      sync.Mutex
	at      []time.Duration // run times since start
	results []error
	start   time.Time
	gate    chan struct{}
}

func newRecorder(results ...error) *recorder {
	return &recorder{results: results, start: time.Now()}
}

func (r *recorder) fn(ctx context.Context) error {
	r.mu.Lock()
	r.at = append(r.at, time.Since(r.start))
	var err error
	if len(r.results) > 0 {
		err, r.results = r.results[0], r.results[1:]
	}
	gate := r.gate
	r.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

func (r *recorder) runs() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.at...)
}

// start runs l in the bubble until the test ends; it returns the loop's
// result channel.
func start(t *testing.T, l *Loop) (stop func() error) {
	t.Helper()
	if l.Log == nil {
		l.Log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(cancel)
	return func() error {
		cancel()
		return <-done
	}
}

// TestTriggerCoalesces: the loop runs at once (a new trigger starts out
// poked), and any number of pokes while a run is going on make exactly
// one more run, not one each.
func TestTriggerCoalesces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		r.gate = make(chan struct{})
		trig := NewTrigger()
		stop := start(t, &Loop{Name: "t", Fn: r.fn, Trigger: trig, Resync: time.Hour})
		synctest.Wait()
		if got := len(r.runs()); got != 1 {
			t.Fatalf("%d runs at start, want 1", got)
		}
		for range 5 {
			trig.Poke()
		}
		r.gate <- struct{}{} // end the first run
		synctest.Wait()
		r.gate <- struct{}{} // end the coalesced run
		synctest.Wait()
		if got := r.runs(); len(got) != 2 || got[1] != 0 {
			t.Fatalf("runs at %v after 5 pokes during the first run, want 2 runs at 0", got)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := len(r.runs()); got != 2 {
			t.Fatalf("%d runs a minute later without a poke, want 2", got)
		}
		close(r.gate)
		trig.Poke()
		synctest.Wait()
		if got := len(r.runs()); got != 3 {
			t.Fatalf("%d runs after one more poke, want 3", got)
		}
		if err := stop(); err != nil {
			t.Fatalf("Run after cancel: %v, want nil", err)
		}
	})
}

// TestResync: without pokes the loop runs every Resync period, and not
// before.
func TestResync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		start(t, &Loop{Name: "t", Fn: r.fn, Trigger: NewTrigger(), Resync: 30 * time.Second})
		time.Sleep(30*time.Second - time.Millisecond)
		synctest.Wait()
		if got := r.runs(); len(got) != 1 {
			t.Fatalf("runs %v just before the first resync, want only the first run", got)
		}
		time.Sleep(90*time.Second + time.Millisecond)
		synctest.Wait()
		want := []time.Duration{0, 30 * time.Second, 60 * time.Second, 90 * time.Second, 120 * time.Second}
		if got := r.runs(); !equal(got, want) {
			t.Fatalf("runs at %v, want %v", got, want)
		}
	})
}

func equal(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestBackoffJitter: after failures in a row the retries wait a random
// time in [b/2, b], b doubling from MinBackoff up to MaxBackoff; the
// waits are not all the same fraction of b (jitter), and a success
// resets b.
func TestBackoffJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const fails = 12
		boom := errors.New("boom")
		results := make([]error, fails)
		for i := range results {
			results[i] = boom
		}
		r := newRecorder(results...)
		trig := NewTrigger()
		l := &Loop{Name: "t", Fn: r.fn, Trigger: trig, Resync: time.Hour,
			MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
		start(t, l)
		time.Sleep(time.Minute)
		synctest.Wait()
		got := r.runs()
		if len(got) != fails+1 {
			t.Fatalf("%d runs, want %d failures and one success: %v", len(got), fails, got)
		}
		b := 100 * time.Millisecond
		fractions := map[time.Duration]bool{}
		for i := 1; i < len(got); i++ {
			wait := got[i] - got[i-1]
			if wait < b/2 || wait > b {
				t.Errorf("retry %d waited %v, want within [%v, %v]", i, wait, b/2, b)
			}
			fractions[wait*1000/b] = true
			b = min(2*b, time.Second)
		}
		if len(fractions) < 2 {
			t.Errorf("retries %v all waited the same fraction of the backoff: no jitter", got)
		}
		if s := l.Status(); s.Runs != fails+1 || s.Failures != fails || s.LastError != "" || !l.Healthy() {
			t.Errorf("status after the recovery: %+v", s)
		}

		// A success reset the backoff: the next failure retries within
		// [MinBackoff/2, MinBackoff].
		r.mu.Lock()
		r.results = []error{boom}
		r.mu.Unlock()
		trig.Poke()
		synctest.Wait()
		failedAt := time.Since(r.start)
		time.Sleep(time.Second)
		synctest.Wait()
		got = r.runs()
		if len(got) != fails+3 {
			t.Fatalf("runs %v after one more failure, want a retry", got[fails:])
		}
		if wait := got[fails+2] - failedAt; wait < 50*time.Millisecond || wait > 100*time.Millisecond {
			t.Errorf("first retry after a success waited %v, want within [50ms, 100ms]", wait)
		}
	})
}

// TestTriggerDuringBackoff: a poke during the retry wait runs at once.
func TestTriggerDuringBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder(errors.New("boom"))
		trig := NewTrigger()
		start(t, &Loop{Name: "t", Fn: r.fn, Trigger: trig, Resync: time.Hour,
			MinBackoff: time.Minute, MaxBackoff: time.Hour})
		time.Sleep(time.Second)
		trig.Poke()
		synctest.Wait()
		if got := r.runs(); !equal(got, []time.Duration{0, time.Second}) {
			t.Fatalf("runs at %v, want the failure at 0 and the poked run at 1s", got)
		}
	})
}

// TestMetricsStatusAndLog: every run is counted by result and timed; the
// status says the last error; a failure is logged once while it repeats,
// and the recovery once.
func TestMetricsStatusAndLog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		m, err := NewMetrics(reg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := NewMetrics(reg); err == nil {
			t.Error("registering the metrics twice on one registry succeeded")
		}
		var logs bytes.Buffer
		var logMu sync.Mutex
		log := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
		boom := errors.New("boom")
		r := newRecorder(boom, boom, boom, nil)
		trig := NewTrigger()
		l := &Loop{Name: "routes", Fn: r.fn, Trigger: trig, Resync: time.Hour,
			MinBackoff: time.Second, MaxBackoff: time.Second, Log: log, Metrics: m}
		start(t, l)
		synctest.Wait()
		if s := l.Status(); s.Name != "routes" || s.Runs != 1 || s.Failures != 1 || s.LastError != "boom" || !s.LastOK.IsZero() || l.Healthy() {
			t.Errorf("status after a failure: %+v healthy=%v", s, l.Healthy())
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := promtest.ToFloat64(m.runs.WithLabelValues("routes", "error")); got != 3 {
			t.Errorf("error runs = %v, want 3", got)
		}
		if got := promtest.ToFloat64(m.runs.WithLabelValues("routes", "ok")); got != 1 {
			t.Errorf("ok runs = %v, want 1", got)
		}
		if n, err := promtest.GatherAndCount(reg, "netd_reconcile_duration_seconds"); err != nil || n != 1 {
			t.Errorf("duration histogram: %d series, %v", n, err)
		}
		if s := l.Status(); s.Runs != 4 || s.Failures != 3 || s.LastError != "" || s.LastOK.IsZero() || !l.Healthy() {
			t.Errorf("status after the recovery: %+v", s)
		}
		logMu.Lock()
		out := logs.String()
		logMu.Unlock()
		if n := strings.Count(out, "reconcile failed"); n != 1 {
			t.Errorf("the same error logged %d times, want once:\n%s", n, out)
		}
		if n := strings.Count(out, "reconcile recovered"); n != 1 || !strings.Contains(out, "reconciler=routes") {
			t.Errorf("recovery logged %d times, want once with the reconciler's name:\n%s", n, out)
		}
	})
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// TestCancelIsNotAnError: a run cut short by the cancellation, and the
// cancellation itself, end Run with nil.
func TestCancelIsNotAnError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		r.gate = make(chan struct{}) // the run blocks until ctx ends
		stop := start(t, &Loop{Name: "t", Fn: r.fn, Trigger: NewTrigger(), Resync: time.Hour})
		synctest.Wait()
		if err := stop(); err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
		if got := len(r.runs()); got != 1 {
			t.Fatalf("%d runs, want 1", got)
		}
	})
}
