package acl

import (
	"context"
	"fmt"

	"github.com/ducksnest/netd/policy/desired"
)

// Validation is the control server's answer on the desired policy: from
// Tailscale's /acl/validate (which also runs the policy's tests) or, for
// headscale, which has no validate endpoint, `headscale policy check`.
type Validation struct {
	// By names what was asked: "tailscale /acl/validate" or "headscale
	// policy check (BINARY)"; empty if nothing was.
	By string `json:"by,omitempty"`
	// Checked says whether an answer came; Valid is that answer.
	Checked bool `json:"checked"`
	Valid   bool `json:"valid"`
	// Message is why the policy was rejected, or why it was not validated.
	Message string `json:"message,omitempty"`
	// Warnings are what the server flagged without rejecting the policy.
	Warnings []string `json:"warnings,omitempty"`
}

// String is the answer in one line.
func (v Validation) String() string {
	switch {
	case !v.Checked:
		return "NOT VALIDATED by the control server: " + v.Message
	case !v.Valid:
		return fmt.Sprintf("REJECTED by %s: %s", v.By, v.Message)
	case len(v.Warnings) > 0:
		return fmt.Sprintf("valid (%s), with warnings: %v", v.By, v.Warnings)
	}
	return fmt.Sprintf("valid (%s)", v.By)
}

// err is the Validation as Apply's error: nil unless it was rejected.
func (v Validation) err() error {
	if v.Checked && !v.Valid {
		return fmt.Errorf("%w: %s", ErrInvalid, v.Message)
	}
	return nil
}

// Validate asks target's control server whether it takes the desired
// policy, without writing anything. An error means it could not be asked
// (credentials, network); a rejection is a Validation with Valid false.
func Validate(ctx context.Context, target Target, t *desired.Tailnet) (Validation, error) {
	b, err := target.backend()
	if err != nil {
		return Validation{}, err
	}
	body, err := desiredBody(b, t)
	if err != nil {
		return Validation{}, err
	}
	return b.validate(ctx, Stamp(body))
}
