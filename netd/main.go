// Command netd is the ducksnest network daemon and its command line: it runs
// the per-node daemon (netd run), checks, renders and applies the policy file
// (netd policy ...), diagnoses a node (netd doctor), and builds a local
// multi-node lab (netd lab ...).
//
// main only wires: root.go builds the command tree by hand from the
// new*Cmd functions, one small file per command; exit.go maps errors to
// the exit statuses every command shares.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], streams{in: os.Stdin, out: os.Stdout, err: os.Stderr})
	stop()
	os.Exit(code)
}

// streams are a command line's standard input, output and error.
type streams struct {
	in       io.Reader
	out, err io.Writer
}

// run runs the command line args with standard input from os.Stdin and
// returns its exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return execute(ctx, args, streams{in: os.Stdin, out: stdout, err: stderr})
}

// execute runs the command line args and returns its exit status.
func execute(ctx context.Context, args []string, s streams) int {
	root := newRootCmd(s)
	root.SetArgs(goFlagStyle(root, args))
	cmd, err := root.ExecuteContextC(ctx)
	return exitCode(cmd, err, s.err)
}
