package testutil

import (
	"context"
	"fmt"
	"time"
)

// Interval is how often Eventually and Poll check their condition: a
// polling period, not a wait for an outcome.
const Interval = 10 * time.Millisecond

// Every is another polling period than Interval: Every(d).Eventually is
// Eventually with cond called every d. For a condition that is not free
// to check (a daemon's status, a control server's API, a CLI), or one
// that must be seen at a finer step (a state machine in virtual time).
type Every time.Duration

// Eventually calls cond every Interval until it returns true, and fails t
// if d passes first. It returns how long it took. Inside a
// testing/synctest bubble the time is the bubble's.
func Eventually(t TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return Every(Interval).Eventually(t, d, what, cond)
}

// Poll is Eventually for a condition that can fail: an error fails t at
// once, naming what was awaited.
func Poll(t TB, d time.Duration, what string, cond func() (bool, error)) time.Duration {
	t.Helper()
	return Every(Interval).Poll(t, d, what, cond)
}

// Wait is the loop behind Eventually and Poll, for callers that are not
// a test (a testscript command, a helper that returns errors): it returns
// how long cond took to hold, or an error if cond failed or d passed.
func Wait(d time.Duration, what string, cond func() (bool, error)) (time.Duration, error) {
	return Every(Interval).Wait(context.Background(), d, what, cond)
}

// Eventually is the package's Eventually with cond called every e.
func (e Every) Eventually(t TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return e.Poll(t, d, what, func() (bool, error) { return cond(), nil })
}

// Poll is the package's Poll with cond called every e.
func (e Every) Poll(t TB, d time.Duration, what string, cond func() (bool, error)) time.Duration {
	t.Helper()
	took, err := e.Wait(context.Background(), d, what, cond)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return took
}

// Wait is the package's Wait with cond called every e; it also gives up
// when ctx is done.
func (e Every) Wait(ctx context.Context, d time.Duration, what string, cond func() (bool, error)) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(d)
	for {
		ok, err := cond()
		if err != nil {
			return time.Since(start), fmt.Errorf("waiting for %s: %w (after %v)", what, err, time.Since(start).Round(time.Millisecond))
		}
		if ok {
			return time.Since(start), nil
		}
		if !time.Now().Before(deadline) {
			return time.Since(start), fmt.Errorf("timed out after %v waiting for %s", d, what)
		}
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("waiting for %s: %w (after %v)", what, ctx.Err(), time.Since(start).Round(time.Millisecond))
		case <-time.After(time.Duration(e)):
		}
	}
}
