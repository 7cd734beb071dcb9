// Package testutil holds what the tests of every package share: one poll
// helper (Eventually, Poll, Wait, and Every for another period), one
// log-tail helper (Tail, TailFile), and the switch that turns a skipped
// test into a failed one in CI (Skip, Require, NeedRoot, NeedBinary, with
// NETD_TEST_REQUIRE=all).
//
// It does not import package testing: its helpers take the small TB
// interfaces below, which *testing.T, *testing.B and testing.TB satisfy,
// and netd/lab (a test harness that ships in the netd binary) uses Tail,
// and its bench Every(...).Wait.
package testutil

// TB is what the poll helpers need of a test.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// SkipTB is what the prerequisite helpers need of a test.
type SkipTB interface {
	TB
	Skipf(format string, args ...any)
}
