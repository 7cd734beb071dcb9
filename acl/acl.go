// Package acl writes the compiled tailnet policy (desired.Tailnet) to a
// control server: Tailscale (API v2 policy endpoints, through the HuJSON
// calls of tailscale.com/client/tailscale) or headscale (its REST API, in
// database policy mode). It does the I/O only: the documents and the
// offline verdict on them (validation issues, the policy's tests) are part
// of the desired state, computed once by the compiler (policy/acldoc). It
// never writes blindly:
//
//   - it validates first (the offline verdict of the form it writes; then
//     Tailscale's /acl/validate, or for headscale `headscale policy check`
//     when a headscale binary is configured, and headscale's own check on
//     write);
//   - it writes with If-Match (Tailscale's ETag; for headscale, which has no
//     ETag, the updatedAt it read, compared again just before the write);
//   - it detects drift: every policy it writes starts with a stamp line
//     "// netd-applied sha256:<hex>" holding the digest of the rest of the
//     document. The live policy is ours and unedited exactly when its stamp
//     matches its body, so drift is found with no state file, from CI and
//     from the leader alike. A drifted or unstamped live policy is never
//     overwritten unless Options.Force is set;
//   - it never writes when the live body already equals the desired one.
//
// headscale 0.26 ignores "grants" (it only knows legacy "acls"), so it gets
// desired.Tailnet.Headscale, where the grants are rewritten as equivalent
// acls and the policy's tests were evaluated against the rewritten form.
//
// Apply is meant for the one netd that writes the tailnet policy (package
// netd/tailnetsync) and for `netd policy apply` by hand (bootstrap,
// break-glass), never for every node; CI only diffs.
package acl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/ducksnest/netd/policy/desired"
)

// Errors callers may test with errors.Is.
var (
	// ErrDrift: the live policy was edited since netd last applied it (or
	// was never applied by netd); Apply refuses without Force.
	ErrDrift = errors.New("live tailnet policy drifted from the last netd apply")
	// ErrConflict: the live policy changed between read and write (412).
	ErrConflict = errors.New("live tailnet policy changed during apply")
	// ErrInvalid: the control server or the offline checks rejected the
	// policy.
	ErrInvalid = errors.New("tailnet policy rejected")
)

// Change is what Apply would do.
type Change struct {
	// Target names the control server.
	Target string `json:"target"`
	// Live is the live policy as read; LiveVersion its ETag (Tailscale) or
	// updatedAt (headscale); empty if the server has none.
	Live        []byte `json:"-"`
	LiveVersion string `json:"liveVersion,omitempty"`
	// Desired is exactly what Apply writes: stamp line plus body.
	Desired []byte `json:"-"`
	// Unchanged: the live body equals the desired body; nothing to write.
	Unchanged bool `json:"unchanged"`
	// Drift is set when the live policy is not what netd last wrote.
	Drift string `json:"drift,omitempty"`
	// Diff is a unified diff from the live to the desired policy.
	Diff string `json:"diff,omitempty"`
}

// Options tune Apply.
type Options struct {
	// Force overwrites a drifted or unstamped live policy.
	Force bool
	// DryRun validates and diffs but never writes.
	DryRun bool
	// Log receives progress; nil discards.
	Log *slog.Logger
}

// Result is what Apply did.
type Result struct {
	Change  Change `json:"change"`
	Written bool   `json:"written"`
	// Version is the ETag / updatedAt after the write (or the live one).
	Version string `json:"version,omitempty"`
}

// backend is one kind of control server.
type backend interface {
	name() string
	// get returns the live policy ("" if none) and its version.
	get(ctx context.Context) (doc []byte, version string, err error)
	// document picks the form of the policy this server takes.
	document(t *desired.Tailnet) *desired.TailnetDocument
	// validate asks the server (or its tool) to check doc; an error means
	// it could not be asked.
	validate(ctx context.Context, doc []byte) (Validation, error)
	// put writes doc if the live version is still ifMatch.
	put(ctx context.Context, doc []byte, ifMatch string) (version string, err error)
	// routes lists every node's advertised and approved subnet routes.
	routes(ctx context.Context) ([]NodeRoutes, error)
}

// Diff reads the live policy of target and compares it with the desired
// tailnet policy. It writes nothing.
func Diff(ctx context.Context, target Target, t *desired.Tailnet) (Change, error) {
	b, err := target.backend()
	if err != nil {
		return Change{}, err
	}
	return diff(ctx, b, t)
}

// desiredBody returns the body (without a stamp) of the form of the policy
// b takes.
func desiredBody(b backend, t *desired.Tailnet) ([]byte, error) {
	doc := b.document(t)
	switch {
	case doc.Err != "":
		return nil, fmt.Errorf("rendering policy for %s: %s", b.name(), doc.Err)
	case len(doc.HuJSON) == 0:
		return nil, fmt.Errorf("%w: the desired state holds no tailnet policy document for %s", ErrInvalid, b.name())
	}
	body, _ := Unstamp(doc.HuJSON)
	return body, nil
}

func diff(ctx context.Context, b backend, t *desired.Tailnet) (Change, error) {
	body, err := desiredBody(b, t)
	if err != nil {
		return Change{}, err
	}
	live, ver, err := b.get(ctx)
	if err != nil {
		return Change{}, fmt.Errorf("reading live policy from %s: %w", b.name(), err)
	}
	c := Change{Target: b.name(), Live: live, LiveVersion: ver, Desired: Stamp(body)}
	liveBody, stamp := Unstamp(live)
	c.Unchanged = string(liveBody) == string(body)
	c.Drift = driftOf(live, liveBody, stamp)
	if !c.Unchanged {
		if c.Diff, err = UnifiedDiff("live "+b.name(), "desired", string(live), string(c.Desired)); err != nil {
			return Change{}, err
		}
	}
	return c, nil
}

// Apply validates the desired tailnet policy, compares it with the live
// policy and writes it with If-Match unless nothing changed, refusing a
// drifted live policy unless opts.Force.
func Apply(ctx context.Context, target Target, t *desired.Tailnet, opts Options) (Result, error) {
	b, err := target.backend()
	if err != nil {
		return Result{}, err
	}
	return apply(ctx, b, t, opts)
}

func apply(ctx context.Context, b backend, t *desired.Tailnet, opts Options) (Result, error) {
	c, err := diff(ctx, b, t)
	if err != nil {
		return Result{}, err
	}
	return applyChange(ctx, b, t, c, opts)
}

// applyChange is apply with the live policy already read and compared (c,
// from diff): the write is still conditional on c.LiveVersion.
func applyChange(ctx context.Context, b backend, t *desired.Tailnet, c Change, opts Options) (Result, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	res := Result{Change: c, Version: c.LiveVersion}
	if c.Unchanged {
		log.Info("tailnet policy unchanged; not writing", "target", c.Target, "version", c.LiveVersion)
		return res, nil
	}
	if err := checkOffline(b.document(t)); err != nil {
		return res, err
	}
	v, err := b.validate(ctx, c.Desired)
	if err == nil {
		err = v.err()
	}
	if err != nil {
		return res, fmt.Errorf("validating on %s: %w", c.Target, err)
	}
	if c.Drift != "" {
		if !opts.Force {
			return res, fmt.Errorf("%w on %s: %s; review the diff and apply with --force to overwrite", ErrDrift, c.Target, c.Drift)
		}
		log.Warn("overwriting drifted tailnet policy (forced)", "target", c.Target, "drift", c.Drift)
	}
	if opts.DryRun {
		return res, nil
	}
	ver, err := b.put(ctx, c.Desired, c.LiveVersion)
	if err != nil {
		return res, fmt.Errorf("writing policy to %s: %w", c.Target, err)
	}
	res.Written, res.Version = true, ver
	log.Info("tailnet policy applied", "target", c.Target, "from", c.LiveVersion, "to", ver)
	return res, nil
}

// driftOf says why live is not what netd last wrote, or "" if it is (or if
// there is no live policy at all).
func driftOf(live, body []byte, stamp string) string {
	switch {
	case len(live) == 0:
		return ""
	case stamp == "":
		return "the live policy carries no netd-applied stamp (never applied by netd, or the stamp was removed)"
	case stamp != digest(body):
		return fmt.Sprintf("the live policy was edited after netd applied it (stamp %.19s…, body sha256:%.12s…)", stamp, digest(body)[len("sha256:"):])
	}
	return ""
}

// checkOffline refuses a document the offline validator rejects or whose
// own tests fail: such a policy is never sent.
func checkOffline(doc *desired.TailnetDocument) error {
	if len(doc.Issues) > 0 {
		errs := make([]error, 0, len(doc.Issues))
		for _, is := range doc.Issues {
			errs = append(errs, errors.New(is))
		}
		return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	var errs []error
	for _, r := range doc.Failed() {
		errs = append(errs, fmt.Errorf("%s: %s -> %s (%s): want %s, got %s: %s", r.Path, r.Src, r.Dst, r.Proto, r.Want, r.Got, r.Reason))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: policy tests fail: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}
