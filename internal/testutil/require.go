package testutil

import (
	"fmt"
	"os"
	"os/exec"
)

// RequireEnv names the switch: with NETD_TEST_REQUIRE=all (what CI sets)
// every test that would skip for a missing binary, privilege or kernel
// feature fails instead, so that a green run means that everything ran.
// Unset, such tests skip with a message that says what is missing.
const RequireEnv = "NETD_TEST_REQUIRE"

// Skip skips t, saying what is missing, or fails it when NETD_TEST_REQUIRE
// is "all". Any other non-empty value of the switch fails too.
func Skip(t SkipTB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	switch v := os.Getenv(RequireEnv); v {
	case "":
		t.Skipf("%s", msg)
	case "all":
		t.Fatalf("%s (%s=all: a missing prerequisite is a failure)", msg, RequireEnv)
	default:
		t.Fatalf("%s; and %s=%q is neither empty nor \"all\"", msg, RequireEnv, v)
	}
}

// Require calls Skip unless ok.
func Require(t SkipTB, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		Skip(t, format, args...)
	}
}

// NeedRoot skips (or fails, see Skip) unless the test runs as root; why
// says what needs it.
func NeedRoot(t SkipTB, why string) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "needs root: %s", why)
}

// NeedBinary returns the path of the named program, or skips (or fails,
// see Skip) saying how to install it.
func NeedBinary(t SkipTB, name, hint string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Skip(t, "needs %s (%s): %v", name, hint, err)
	}
	return p
}
