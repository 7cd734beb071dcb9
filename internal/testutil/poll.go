package testutil

import (
	"fmt"
	"time"
)

// Interval is how often Eventually and Poll check their condition: a
// polling period, not a wait for an outcome.
const Interval = 10 * time.Millisecond

// Eventually calls cond every Interval until it returns true, and fails t
// if d passes first. It returns how long it took. Inside a
// testing/synctest bubble the time is the bubble's.
func Eventually(t TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return Poll(t, d, what, func() (bool, error) { return cond(), nil })
}

// Poll is Eventually for a condition that can fail: an error fails t at
// once, naming what was awaited.
func Poll(t TB, d time.Duration, what string, cond func() (bool, error)) time.Duration {
	t.Helper()
	took, err := Wait(d, what, cond)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return took
}

// Wait is the loop behind Eventually and Poll, for callers that are not
// a test (a testscript command, a helper that returns errors): it returns
// how long cond took to hold, or an error if cond failed or d passed.
func Wait(d time.Duration, what string, cond func() (bool, error)) (time.Duration, error) {
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
		time.Sleep(Interval)
	}
}
