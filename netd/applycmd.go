package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ducksnest/netd/acl"
	"github.com/ducksnest/netd/netd/calico"
	"github.com/ducksnest/netd/netd/kube"
	"github.com/ducksnest/netd/policy/desired"
)

// `netd policy diff` and `netd policy apply`: what the policy file would
// change in the cluster (Calico objects) and on the tailnet (the policy on
// Tailscale or headscale), and applying both. Each part runs when it is
// configured (a kubeconfig; tailnet credentials in the environment), or
// when --only names it.

const tailnetCredentials = `Tailnet credentials (environment; each secret also as X_FILE):
  HEADSCALE_URL + HEADSCALE_API_KEY            headscale (HEADSCALE_CLI: the
                                               headscale binary for its check;
                                               default: headscale on PATH)
  TS_API_KEY                                   Tailscale, API key
  TS_OAUTH_CLIENT_ID + TS_OAUTH_CLIENT_SECRET  Tailscale, OAuth client
  TS_TAILNET (default "-")

The kubeconfig is found as kubectl finds it: --kubeconfig alone if given,
else the files of $KUBECONFIG merged, else ~/.kube/config, else the pod's
service account; --context selects a context. None found: no Calico part.`

func newPolicyDiffCmd() *cobra.Command {
	var f applyFlags
	cmd := &cobra.Command{
		Use:   "diff FILE",
		Short: "show what applying the policy would change in the cluster (Calico) and on the tailnet",
		Long: `Shows what would change: the Calico objects (create, update, disable,
delete-when-drained, unowned) and the tailnet policy (a unified diff, and
drift: a live policy edited since netd's last apply), and the control
server's verdict on the tailnet policy (Tailscale's /acl/validate; for
headscale, which has no validate endpoint, headscale policy check; without
credentials it says it did not validate). Each part runs when it is
configured (a kubeconfig; tailnet credentials in the environment), or when
--only names it.

Exit status: 0 no changes, 1 changes or drift, 2 usage, 3 any error
(an unreadable or invalid FILE, an unreachable API) or the control server
rejects the policy.

` + tailnetCredentials,
	}
	fileArg(cmd)
	addApplyFlags(cmd, &f, "diff")
	cmd.RunE = func(cmd *cobra.Command, pos []string) error {
		return policyDiff(cmd.Context(), pos[0], f, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
	}
	return cmd
}

func newPolicyApplyCmd() *cobra.Command {
	var f applyFlags
	cmd := &cobra.Command{
		Use:   "apply FILE",
		Short: "apply the policy to the cluster (Calico) and the tailnet",
		Long: `Applies both parts; each is reported on its own. Calico writes only
objects labelled netd.ducksnest.dev/managed-by=netd, each conditional on
the resourceVersion read. The tailnet policy is validated first, written
with If-Match, never when unchanged, and not over a live policy edited
since netd's last apply unless --force.

Exit status: 0 applied, 1 a part failed or the policy is invalid, 2 usage,
3 FILE could not be read.

` + tailnetCredentials,
	}
	fileArg(cmd)
	addApplyFlags(cmd, &f, "apply")
	cmd.RunE = func(cmd *cobra.Command, pos []string) error {
		return policyApply(cmd.Context(), pos[0], f, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
	}
	return cmd
}

type applyFlags struct {
	cmd        string // "diff" or "apply"
	kubeconfig string
	context    string
	format     string
	only       string
	force      bool
	timeout    time.Duration
}

// addApplyFlags adds the flags of `netd policy diff` and `apply` (name).
func addApplyFlags(cmd *cobra.Command, f *applyFlags, name string) {
	f.cmd = name
	fs := cmd.Flags()
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig `file` (default: as kubectl: $KUBECONFIG, ~/.kube/config)")
	fs.StringVar(&f.context, "context", "", "the kubeconfig context to use (default: its current context)")
	addEnumFlag(cmd, &f.only, "only", "", "", "run only this part: calico or tailnet", "calico", "tailnet")
	fs.DurationVar(&f.timeout, "timeout", 60*time.Second, "give up after `duration`")
	if name == "diff" {
		addOutputFlag(cmd, &f.format, "text", "text", "json", "yaml")
		addFormatAlias(cmd, &f.format, "text", "json")
	}
	if name == "apply" {
		fs.BoolVar(&f.force, "force", false, "overwrite a live tailnet policy edited outside netd")
	}
}

// applyParts is what one diff/apply run works on.
type applyParts struct {
	st     *desired.State
	calico *calico.Reconciler // nil: not configured
	target *acl.Target        // nil: not configured
	// noTarget says why target is nil (no credentials), unless --only
	// calico left the tailnet out.
	noTarget string
}

// setupParts compiles FILE and connects to what is configured. A part named
// by --only must be configured.
func setupParts(path string, f applyFlags, stdin io.Reader, stderr io.Writer) (*applyParts, error) {
	_, st, err := compileFile(path, stdin)
	if err != nil {
		printProblems(stderr, problems(path, err))
		return nil, policyExit(err)
	}
	p := &applyParts{st: st}
	cfg, err := kube.Kubeconfig{Path: f.kubeconfig, Context: f.context}.Load()
	switch {
	case f.only == "tailnet" || errors.Is(err, kube.ErrNoKubeconfig):
	case err != nil:
		return nil, err
	default:
		c, err := kube.NewClient(cfg)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		api, err := calico.Discover(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("calico part: %w", err)
		}
		host, _ := os.Hostname()
		log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		p.calico = calico.NewReconciler(c, api, log, "netd-cli@"+host)
	}
	if f.only != "calico" {
		t, err := acl.TargetFromEnv()
		switch {
		case err == nil:
			p.target = &t
		case f.only == "tailnet" && f.cmd == "diff":
			return nil, fmt.Errorf("tailnet part: not diffed, and NOT VALIDATED by the control server: %w", err)
		case f.only == "tailnet":
			return nil, fmt.Errorf("tailnet part: %w", err)
		default:
			p.noTarget = err.Error()
		}
	}
	switch {
	case f.only == "calico" && p.calico == nil:
		return nil, fmt.Errorf("calico part: %w", kube.ErrNoKubeconfig)
	case p.calico == nil && p.target == nil:
		return nil, errors.New("nothing to do: give a kubeconfig (Calico) and/or tailnet credentials (see --help)")
	}
	return p, nil
}

// diffReport is the JSON form of `netd policy diff`.
type diffReport struct {
	Calico  *calico.Plan `json:"calico,omitempty"`
	Tailnet *acl.Change  `json:"tailnet,omitempty"`
	// TailnetValidation is the control server's answer on the desired
	// tailnet policy; without credentials it says it was not validated.
	TailnetValidation *acl.Validation `json:"tailnetValidation,omitempty"`
	Changes           bool            `json:"changes"`
}

func policyDiff(ctx context.Context, path string, f applyFlags, stdin io.Reader, stdout, stderr io.Writer) error {
	p, err := setupParts(path, f, stdin, stderr)
	if err != nil {
		return asDiffError(stderr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	var rep diffReport
	var errs []error
	if p.calico != nil {
		plan, err := p.calico.Plan(ctx, p.st)
		if err != nil {
			errs = append(errs, fmt.Errorf("calico: planning: %w", err))
		} else {
			rep.Calico = &plan
			rep.Changes = rep.Changes || plan.Writes() > 0
		}
	}
	if p.target != nil {
		ch, err := acl.Diff(ctx, *p.target, &p.st.Tailnet)
		if err != nil {
			errs = append(errs, fmt.Errorf("tailnet (%s): %w", p.target, err))
		} else {
			rep.Tailnet = &ch
			rep.Changes = rep.Changes || !ch.Unchanged || ch.Drift != ""
		}
		v, err := acl.Validate(ctx, *p.target, &p.st.Tailnet)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("tailnet (%s): validating: %w", p.target, err))
		case v.Checked && !v.Valid:
			rep.TailnetValidation = &v
			errs = append(errs, fmt.Errorf("tailnet (%s): the control server rejects the policy: %s", p.target, v.Message))
		default:
			rep.TailnetValidation = &v
		}
	} else if p.noTarget != "" {
		rep.TailnetValidation = &acl.Validation{Message: p.noTarget}
	}
	if f.format != "text" {
		if err := writeStructured(stdout, f.format, rep); err != nil {
			return err
		}
	} else {
		printDiff(stdout, rep)
	}
	if err := errors.Join(errs...); err != nil {
		return asDiffError(stderr, err)
	}
	if rep.Changes {
		return exitError{1}
	}
	return nil
}

// asDiffError prints err and maps it to exit 3, so that 1 keeps meaning
// "there are changes" for CI.
func asDiffError(stderr io.Writer, err error) error {
	var ee exitError
	if errors.As(err, &ee) {
		if ee.code == 1 { // an invalid policy: an error, not a change
			return exitError{3}
		}
		return err
	}
	fmt.Fprintf(stderr, "netd policy diff: %v\n", err)
	return exitError{3}
}

func printDiff(w io.Writer, rep diffReport) {
	if rep.Calico != nil {
		fmt.Fprintln(w, "== calico")
		fmt.Fprint(w, rep.Calico.String())
	}
	if rep.Tailnet == nil && rep.TailnetValidation != nil {
		fmt.Fprintf(w, "== tailnet: not diffed; %s\n", rep.TailnetValidation)
	}
	if ch := rep.Tailnet; ch != nil {
		fmt.Fprintf(w, "== tailnet (%s)\n", ch.Target)
		if v := rep.TailnetValidation; v != nil {
			fmt.Fprintf(w, "validation: %s\n", v)
		}
		if ch.Drift != "" {
			fmt.Fprintf(w, "DRIFT: %s\n  apply will refuse without --force; reconcile the live edit into the policy file first\n", ch.Drift)
		}
		if ch.Unchanged {
			fmt.Fprintln(w, "tailnet: no changes")
		} else {
			fmt.Fprint(w, ch.Diff)
		}
	}
}

func policyApply(ctx context.Context, path string, f applyFlags, stdin io.Reader, stdout, stderr io.Writer) error {
	p, err := setupParts(path, f, stdin, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	var failed []string
	if p.calico != nil {
		if err := applyCalico(ctx, p, stdout); err != nil {
			fmt.Fprintf(stderr, "calico part FAILED: %v\n", err)
			failed = append(failed, "calico")
		}
	}
	if p.target != nil {
		if err := applyTailnet(ctx, p, f.force, stdout, stderr); err != nil {
			fmt.Fprintf(stderr, "tailnet part FAILED: %v\n", err)
			failed = append(failed, "tailnet")
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(stderr, "netd policy apply: failed parts: %v (the other parts were applied)\n", failed)
		return exitError{1}
	}
	return nil
}

func applyCalico(ctx context.Context, p *applyParts, stdout io.Writer) error {
	plan, err := p.calico.Plan(ctx, p.st)
	if err != nil {
		return fmt.Errorf("planning: %w", err)
	}
	res, err := p.calico.Apply(ctx, plan)
	for _, a := range res.Applied {
		fmt.Fprintf(stdout, "calico: applied  %s\n", a)
	}
	for _, a := range plan.Actions {
		if !a.Writes() {
			fmt.Fprintf(stdout, "calico: skipped  %s\n", a)
		}
	}
	for _, a := range res.Conflicts {
		fmt.Fprintf(stdout, "calico: CONFLICT %s %s %s changed since it was read (resourceVersion %s): not overwritten; run diff again\n",
			a.Op, a.Kind, a.Name, a.ResourceVersion)
	}
	if len(res.Applied) == 0 && len(plan.Actions) == 0 {
		fmt.Fprintln(stdout, "calico: no changes")
	}
	return err
}

func applyTailnet(ctx context.Context, p *applyParts, force bool, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	res, err := acl.Apply(ctx, *p.target, &p.st.Tailnet, acl.Options{Force: force, Log: log})
	switch {
	case errors.Is(err, acl.ErrDrift):
		return fmt.Errorf("%w: %s; reconcile the live edit into the policy file, or rerun with --force to overwrite it", err, res.Change.Drift)
	case err != nil:
		return err
	case res.Written:
		fmt.Fprintf(stdout, "tailnet: applied to %s (version %s)\n", res.Change.Target, res.Version)
	default:
		fmt.Fprintf(stdout, "tailnet: no changes on %s\n", res.Change.Target)
	}
	return nil
}
