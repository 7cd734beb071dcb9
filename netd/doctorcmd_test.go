package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestDoctorUsage: help on stdout with exit 0, usage errors exit 2 and
// change nothing.
func TestDoctorUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(t.Context(), []string{"doctor", "-h"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "Exit status: 0 when nothing failed") || errb.Len() != 0 {
		t.Errorf("-h: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
	for _, args := range [][]string{
		{"doctor", "--bogus"},
		{"doctor", "-o", "xml", "--policy", "../examples/ducksnest/policy.yaml", "--node", "firebat"},
		{"doctor", "--policy", "../examples/ducksnest/policy.yaml", "--node", "nosuch"},
		{"doctor", "--policy", "../examples/ducksnest/policy.yaml", "--node", "firebat", "--only", "sysctl,nosuch"},
	} {
		out.Reset()
		errb.Reset()
		if code := run(t.Context(), args, &out, &errb); code != 2 || out.Len() != 0 || errb.Len() == 0 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2 and a message", args, code, out.String(), errb.String())
		}
	}
	// A policy that cannot be read is exit 3, as for every command.
	out.Reset()
	errb.Reset()
	if code := run(t.Context(), []string{"doctor", "--policy", "/nonexistent/policy.yaml", "--node", "firebat"}, &out, &errb); code != 3 || out.Len() != 0 || !strings.Contains(errb.String(), "no such file") {
		t.Errorf("unreadable policy: exit %d, stdout %q, stderr %q; want 3 and a message", code, out.String(), errb.String())
	}
}
