package main

import (
	"cmp"

	"github.com/spf13/cobra"

	"github.com/ducksnest/netd/netd/calico"
	"github.com/ducksnest/netd/policy/desired"
)

func newPolicyRenderCmd() *cobra.Command {
	var output, calAPI string
	cmd := &cobra.Command{
		Use:   "render FILE (--calico | --tailnet | --node NAME | --state)",
		Short: "print what the policy compiles to: Calico manifests, the tailnet policy, a node, the whole state",
		Long: `Prints one part of what the policy compiles to:
  --calico     the Calico manifests (YAML; --calico-api v1 for a cluster
               without projectcalico.org/v3)
  --tailnet    the tailnet policy as HuJSON, as netd policy apply writes it
  --node NAME  the desired state of one node (-o yaml, the default, or json)
  --state      the whole desired state (-o json, the default, or yaml)

Exit status: 0 printed, 1 an invalid policy or an unknown node, 2 usage,
3 FILE could not be read.`,
		Example: `  netd policy render policy.yaml --calico | kubectl apply -f -
  netd policy render policy.yaml --node firebat -o json`,
	}
	fileArg(cmd)
	fs := cmd.Flags()
	cal := fs.Bool("calico", false, "Calico manifests (IPPools, IPAMConfiguration, FelixConfiguration, BGPConfiguration)")
	addEnumFlag(cmd, &calAPI, "calico-api", "", "v3", "with --calico: v3 (projectcalico.org/v3, for calicoctl or kubectl) or v1 (crd.projectcalico.org/v1, a cluster without v3)", "v3", "v1")
	tn := fs.Bool("tailnet", false, "the tailnet policy as HuJSON")
	node := fs.String("node", "", "the desired state of one node")
	state := fs.Bool("state", false, "the whole desired state")
	addOutputFlag(cmd, &output, "", "yaml", "json")
	addFormatAlias(cmd, &output, "yaml", "json")
	cmd.RunE = func(cmd *cobra.Command, pos []string) error {
		stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
		n := 0
		for _, b := range []bool{*cal, *tn, *node != "", *state} {
			if b {
				n++
			}
		}
		switch {
		case n != 1:
			return usageErrorf(cmd, "choose exactly one of --calico, --tailnet, --node NAME, --state")
		case output != "" && (*cal || *tn):
			return usageErrorf(cmd, "-o applies to --node and --state; --calico prints YAML manifests, --tailnet HuJSON")
		}
		_, s, err := compileFile(pos[0], cmd.InOrStdin())
		if err != nil {
			printProblems(stderr, problems(pos[0], err))
			return policyExit(err)
		}
		var out []byte
		switch {
		case *cal:
			gv := calico.V3
			if calAPI == "v1" {
				gv = calico.V1
			}
			if out, err = calico.Render(s, gv); err != nil {
				return err
			}
		case *tn:
			out = s.Tailnet.Tailscale.HuJSON
		case *state:
			return writeStructured(stdout, cmp.Or(output, "json"), s)
		default:
			var nd *desired.Node
			if nd, err = s.Node(*node); err != nil {
				return err
			}
			return writeStructured(stdout, cmp.Or(output, "yaml"), nd)
		}
		_, err = stdout.Write(out)
		return err
	}
	return cmd
}
