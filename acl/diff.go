package acl

import (
	"fmt"

	"github.com/aymanbagabas/go-udiff"
)

// UnifiedDiff returns a unified diff (3 lines of context) from a to b, or ""
// if they are equal. A missing newline at the end of either is shown, as
// diff(1) does.
func UnifiedDiff(nameA, nameB, a, b string) (string, error) {
	d, err := udiff.ToUnified(nameA, nameB, a, udiff.Lines(a, b), udiff.DefaultContextLines)
	if err != nil {
		return "", fmt.Errorf("diffing %s and %s: %w", nameA, nameB, err)
	}
	return d, nil
}
