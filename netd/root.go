package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/ducksnest/netd/netd/buildinfo"
)

const rootLong = `netd is the ducksnest network daemon and its command line. On every node,
netd run advertises the node's pod blocks over BGP and installs the routes
the peers advertise; the other commands check, render and apply the policy
file, diagnose a node and build a local lab.

Conventions shared by every command:
  -o text|json|yaml   the output format of commands that print a report
  -                   standard input, wherever a policy file is read
  --kubeconfig, --context
                      (policy diff|apply, doctor) found as kubectl does:
                      --kubeconfig alone if given, else the files of
                      $KUBECONFIG merged, else ~/.kube/config, else the
                      pod's service account
  policy files are capped at 4 MiB

Exit status:
  0  success
  1  invalid input or a failed check (policy diff: there are changes)
  2  usage error: bad flags or arguments
  3  an input could not be read: a missing or unreadable file
     (policy diff: any error, so that 1 keeps meaning "changes")`

// newRootCmd builds the command tree, by hand: every command of netd is
// listed here.
func newRootCmd(s streams) *cobra.Command {
	root := &cobra.Command{
		Use:     "netd",
		Short:   "the ducksnest network daemon and its command line",
		Long:    rootLong,
		Version: buildinfo.Get().Version,
		Args:    cobra.ArbitraryArgs,
		RunE:    groupRun,
		// Inherited by every command (none sets its own).
		PersistentPreRun: warnDeprecated,
		SilenceErrors:    true,
		SilenceUsage:     true,
	}
	root.SetIn(s.in)
	root.SetOut(s.out)
	root.SetErr(s.err)
	root.SetFlagErrorFunc(flagError)
	// A command that holds subcommands runs only to report a missing or
	// unknown one: its usage is "netd policy [command]", not "[flags]".
	root.SetUsageTemplate(strings.Replace(root.UsageTemplate(), "{{if .Runnable}}", "{{if and .Runnable (not .HasAvailableSubCommands)}}", 1))
	root.SetVersionTemplate(`{{printf "netd %s\n" .Version}}`)
	root.AddCommand(
		newRunCmd(),
		newStatusCmd(),
		newPolicyCmd(),
		newDoctorCmd(),
		newLabCmd(),
		newVersionCmd(),
	)
	// cobra's `completion bash|zsh|fish|powershell`, made here rather than
	// at Execute so that it is in the tree for the man pages, and made a
	// group like the others (an unknown shell is a usage error).
	root.InitDefaultCompletionCmd()
	if c, _, err := root.Find([]string{"completion"}); err == nil && c != root {
		c.Short = "print the shell completion script for bash, zsh, fish or powershell"
		c.Args, c.RunE = cobra.ArbitraryArgs, groupRun
	}
	root.SetHelpCommand(newHelpCmd(root))
	addManCommand(root)
	return root
}

// newHelpCmd is `netd help [command]`: cobra's, except that an unknown
// command is a usage error rather than a message and exit 0.
func newHelpCmd(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "help about any command",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, rest, err := root.Find(args)
			if err != nil || len(rest) > 0 {
				return usageErrorf(cmd, "no help topic %q", strings.Join(args, " "))
			}
			return c.Help()
		},
		ValidArgsFunction: func(_ *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			c, _, err := root.Find(args)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var names []string
			for _, s := range c.Commands() {
				if s.IsAvailableCommand() && strings.HasPrefix(s.Name(), toComplete) {
					names = append(names, s.Name())
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
	}
}
