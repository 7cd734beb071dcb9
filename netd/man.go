//go:build !mangen

package main

import "github.com/spf13/cobra"

// The man pages in docs/man are generated from the command tree by a
// build of netd with the mangen tag (man_gen.go), which alone links
// cobra's doc generator; CI checks that they are current.
//go:generate go run -tags mangen . gen-man ../docs/man

// addManCommand adds nothing: only a mangen build has `netd gen-man`.
func addManCommand(*cobra.Command) {}
