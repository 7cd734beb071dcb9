package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem found in a policy file, with the position of the
// offending value and a hint saying how to fix it.
type Error struct {
	File string `json:"file"`
	Line int    `json:"line"`
	Col  int    `json:"column"`
	// Path is the absolute path of the value, such as
	// spec.nodes[2].lanAddress or spec.tailnet.groups["group:admins"].
	Path string `json:"path"`
	Msg  string `json:"message"`
	Hint string `json:"hint,omitempty"`
}

// Error formats the problem as "file:line:col: msg (hint)".
func (e Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Col)
	}
	if e.Line == 0 && e.Path != "" {
		// No position (a File built in Go): name the value instead.
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(e.Path)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		fmt.Fprintf(&b, " (%s)", e.Hint)
	}
	return b.String()
}

// String is the same as Error.
func (e Error) String() string { return e.Error() }

// ErrorList is every problem found in a file, sorted by position.
type ErrorList []Error

// Error joins the problems, one per line.
func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Sort orders the list by file, line, column, path and message.
func (l ErrorList) Sort() {
	slices.SortStableFunc(l, func(a, b Error) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Col, b.Col), cmp.Compare(a.Path, b.Path), cmp.Compare(a.Msg, b.Msg))
	})
}

// Err returns nil for an empty list and the sorted, de-duplicated list otherwise.
func (l ErrorList) Err() error {
	if len(l) == 0 {
		return nil
	}
	l.Sort()
	return slices.Compact(l)
}
