package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ducksnest/netd/policy"
)

// Exit statuses shared by every command (netd --help lists them).
const (
	exitFailure    = 1 // invalid input, a failed check; policy diff: changes found
	exitUsage      = 2 // bad flags or arguments
	exitCannotRead = 3 // an input could not be read (missing, unreadable); policy diff: any error
)

// exitError carries an exit status; what it means was already printed.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// usageError is a bad command line: exit 2, the message and a one-line
// hint naming the command's --help.
type usageError struct {
	cmd *cobra.Command
	err error
}

func (e *usageError) Error() string { return e.err.Error() }

func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(cmd *cobra.Command, format string, a ...any) error {
	return &usageError{cmd: cmd, err: fmt.Errorf(format, a...)}
}

// flagError turns pflag's parse errors (unknown flag, bad value) into
// usage errors.
func flagError(cmd *cobra.Command, err error) error { return &usageError{cmd: cmd, err: err} }

// exactArgs wants n positional arguments, described by what (e.g. "FILE").
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < n:
			return usageErrorf(cmd, "missing %s", what)
		case len(args) > n:
			return usageErrorf(cmd, "unexpected arguments %q (want %s)", args[n:], what)
		}
		return nil
	}
}

// noArgs wants no positional arguments.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf(cmd, "unexpected arguments %q", args)
	}
	return nil
}

// groupRun is the RunE of a command that only holds subcommands (netd,
// netd policy, netd lab): without one, or with an unknown one, it is a
// usage error.
func groupRun(cmd *cobra.Command, args []string) error {
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	if len(args) == 0 {
		return usageErrorf(cmd, "missing command (%s)", strings.Join(names, ", "))
	}
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		return usageErrorf(cmd, "unknown command %q; did you mean %q?", args[0], s[0])
	}
	return usageErrorf(cmd, "unknown command %q (%s)", args[0], strings.Join(names, ", "))
}

// exitCode prints err (unless already printed) and returns the exit status.
func exitCode(cmd *cobra.Command, err error, stderr io.Writer) int {
	var ee exitError
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue):
		path := ue.cmd.CommandPath()
		use := ue.cmd.UseLine()
		if ue.cmd.HasAvailableSubCommands() {
			use = path + " <command> [flags]"
		}
		fmt.Fprintf(stderr, "%s: %v\nusage: %s (more: %s --help)\n", path, ue.err, use, path)
		return exitUsage
	}
	name := "netd"
	if cmd != nil {
		name = cmd.CommandPath()
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	if cannotRead(err) {
		return exitCannotRead
	}
	return exitFailure
}

// unreadable marks an input that could not be read (exit 3): a daemon that
// does not answer, for example.
type unreadable struct{ err error }

func (e unreadable) Error() string { return e.err.Error() }

func (e unreadable) Unwrap() error { return e.err }

// cannotRead says err is an input that could not be read, as opposed to
// one that was read and found wrong.
func cannotRead(err error) bool {
	var re *policy.ReadError
	var u unreadable
	return errors.As(err, &re) || errors.As(err, &u) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission)
}

// policyExit is the exit status for an error loading or compiling a
// policy: 3 when it could not be read, 1 when it is invalid.
func policyExit(err error) exitError {
	var re *policy.ReadError
	if errors.As(err, &re) {
		return exitError{exitCannotRead}
	}
	return exitError{exitFailure}
}

// goFlagStyle rewrites -name and -name=value, the standard flag package's
// spelling of a long flag (netd's before cobra), to --name for the long
// flags of the command args runs: unit files and scripts written for the
// old parser keep working. One-letter flags (-o, -v, -h) are left alone.
func goFlagStyle(root *cobra.Command, args []string) []string {
	cmd, _, err := root.Find(args)
	if err != nil {
		return args
	}
	out := slices.Clone(args)
	for i, a := range args {
		if a == "--" {
			break
		}
		if len(a) < 3 || a[0] != '-' || a[1] == '-' {
			continue
		}
		if name, _, _ := strings.Cut(a[1:], "="); cmd.Flags().Lookup(name) != nil {
			out[i] = "-" + a
		}
	}
	return out
}
