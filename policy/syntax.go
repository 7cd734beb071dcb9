package policy

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v4"
)

// syntaxError turns a YAML syntax error into an Error at the token that is
// wrong, with a hint. The parser reports two positions: the problem (where
// it stopped) and a context (the start of the construct it was reading).
// The problem is the offending token, except for a construct that is never
// closed (a quoted string or a [ ] or { } collection): then the opener is,
// and the hint says where the parser gave up.
func syntaxError(name string, data []byte, err error) Error {
	var le *yaml.LoadError
	if !errors.As(err, &le) {
		return Error{File: name, Line: 1, Col: 1, Msg: strings.TrimPrefix(err.Error(), "yaml: "), Hint: "fix the YAML syntax"}
	}
	at, ctx := Pos{le.Mark.Line, le.Mark.Column}, Pos{le.ContextMark.Line, le.ContextMark.Column}
	e := Error{File: name, Line: at.Line, Col: at.Col, Msg: le.Message}
	set := func(p Pos, hint string, args ...any) {
		if p.Line > 0 {
			e.Line, e.Col = p.Line, max(p.Col, 1)
		}
		if e.Line == 0 {
			e.Line, e.Col = 1, 1
		}
		e.Hint = fmt.Sprintf(hint, args...)
	}
	msg, where := le.Message, le.ContextMsg
	switch {
	case le.Stage == yaml.ReaderStage:
		set(badByte(data), "a policy file is UTF-8 text without control characters")
	case strings.Contains(msg, "tab character") || charAt(data, at) == '\t':
		set(at, "YAML does not allow tabs for indentation: indent with spaces")
	case strings.HasPrefix(where, "while scanning a quoted scalar") && ctx.Line > 0 && strings.Contains(msg, "end of stream"):
		set(ctx, "the quoted string that starts here is never closed: add the closing %c", charAt(data, ctx))
	case strings.HasPrefix(where, "while scanning a quoted scalar") && ctx.Line > 0 && ctx.Line < at.Line:
		set(ctx, "the quoted string that starts here is not closed before %s: add the closing %c", at, charAt(data, ctx))
	case strings.HasPrefix(where, "while parsing a flow ") && ctx.Line > 0 && ctx.Line < at.Line:
		set(ctx, "the %c here is not closed before %s: close it with %c", charAt(data, ctx), at, closer(charAt(data, ctx)))
	case (where == "while scanning an anchor" || where == "while scanning an alias") && ctx.Line > 0:
		set(ctx, "'&' starts an anchor and '*' an alias, and both need a name: quote the value if it is text")
	case strings.Contains(msg, "did not find expected key") && charAt(data, at) == '-':
		set(at, "a '- ' list item cannot stand among the keys of a mapping: indent it under the key it belongs to")
	case strings.Contains(msg, "did not find expected key") && at.Col > indent(data, at.Line)+1:
		set(at, "%q cannot follow the value before it: remove it, or quote the whole value", string(charAt(data, at)))
	case strings.Contains(msg, "mapping values are not allowed") && overIndented(data, at):
		set(Pos{at.Line, indent(data, at.Line) + 1}, "this line is indented more than the line above, so YAML reads it as part of that line's value: align it with its sibling keys")
	case where == "while scanning a simple key" && ctx.Line > 0:
		set(ctx, "a key needs a ':' after it (key: value), or this line belongs to the value above and needs more indentation")
	default:
		if open, ok := openFlow(data, at); ok {
			set(open, "the %c here is not closed before %s: close it with %c", charAt(data, open), at, closer(charAt(data, open)))
			break
		}
		set(at, "%s", syntaxHint(msg, ctx))
	}
	return e
}

// syntaxHint says how to fix the error the parser reports as msg; ctx is
// the start of the construct it was reading.
func syntaxHint(msg string, ctx Pos) string {
	switch {
	case strings.Contains(msg, "did not find expected key"):
		return fmt.Sprintf("this line is not indented like the other keys of the mapping that starts at %s: align it with them", ctx)
	case strings.Contains(msg, "did not find expected '-' indicator"):
		return fmt.Sprintf("this line is not indented like the other items of the list that starts at %s: align it, or start it with '- '", ctx)
	case strings.Contains(msg, "mapping values are not allowed"):
		return "a value cannot hold another 'key: value' on the same line: quote the value, or move the nested mapping to its own indented lines"
	case strings.Contains(msg, "block sequence entries are not allowed"):
		return "a '- ' list item cannot follow 'key: value' at this indentation: put the list under a key of its own"
	case strings.Contains(msg, "did not find expected ',' or"):
		return "separate the items of a [ ] list or { } mapping with ','"
	case strings.Contains(msg, "unknown escape character"), strings.Contains(msg, "hexadecimal number"),
		strings.Contains(msg, "Unicode character escape"):
		return `in double quotes a backslash starts an escape such as \n or \\: double the backslash, or use single quotes`
	case strings.Contains(msg, "alphabetic or numeric character"):
		return "'&' starts an anchor and '*' an alias, and both need a name: quote the value if it is text"
	case strings.Contains(msg, "undefined tag handle"), strings.Contains(msg, "while scanning a tag"):
		return "'!' starts a YAML tag: quote the value if it is text"
	case strings.Contains(msg, "unknown anchor"):
		return "define the anchor (&name) before its alias (*name), or quote the value if it is text"
	case strings.Contains(msg, "cannot start any token"):
		return "'@' and '`' are reserved in YAML: quote the value"
	case strings.Contains(msg, "comment or line break"):
		return "after '|' or '>' only an indentation number or '+'/'-' may follow on the same line; the text goes on the next lines"
	case strings.Contains(msg, "did not find expected node content"):
		return "a value is missing here"
	}
	return "fix the YAML syntax"
}

// openFlow reports the opener of a [ ] or { } collection that is still
// open where the parser stopped: the input before at's line, parsed alone,
// ends inside a collection that started on an earlier line.
func openFlow(data []byte, at Pos) (Pos, bool) {
	if at.Line < 2 {
		return Pos{}, false
	}
	var le *yaml.LoadError
	var n yaml.Node
	if err := safeDecode(data[:lineStart(data, at.Line)], &n); !errors.As(err, &le) ||
		!strings.HasPrefix(le.ContextMsg, "while parsing a flow ") || le.ContextMark.Line == 0 || le.ContextMark.Line >= at.Line {
		return Pos{}, false
	}
	return Pos{le.ContextMark.Line, le.ContextMark.Column}, true
}

func safeDecode(data []byte, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cannot parse YAML: %v", r)
		}
	}()
	return yaml.NewDecoder(bytes.NewReader(data)).Decode(n)
}

// lineStart is the offset of the first byte of line (1-based).
func lineStart(data []byte, line int) int {
	off := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(data[off:], '\n')
		if i < 0 {
			return len(data)
		}
		off += i + 1
	}
	return off
}

// overIndented reports whether the ':' at at is the first of a "key: value"
// line indented deeper than the "key: value" line above it: YAML then reads
// the line as more of the value above, and stops at its ':'.
func overIndented(data []byte, at Pos) bool {
	prev := prevLine(data, at.Line)
	if prev == 0 || indent(data, at.Line) <= indent(data, prev) || charAt(data, at) != ':' {
		return false
	}
	text := func(l int) string {
		rest := data[lineStart(data, l):]
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			rest = rest[:i]
		}
		return string(rest)
	}
	line := text(at.Line)
	if i := strings.Index(line, ": "); i < 0 || utf8.RuneCountInString(line[:i])+1 != at.Col {
		return false // not this line's first ':'
	}
	_, value, ok := strings.Cut(text(prev), ": ")
	return ok && strings.TrimSpace(value) != ""
}

// indent is the number of leading spaces of line (1-based).
func indent(data []byte, line int) int {
	n := 0
	for _, c := range data[lineStart(data, line):] {
		if c != ' ' {
			break
		}
		n++
	}
	return n
}

// prevLine is the nearest line before line that holds more than blanks or
// a comment (0 if none).
func prevLine(data []byte, line int) int {
	for l := line - 1; l > 0; l-- {
		rest := data[lineStart(data, l):]
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			rest = rest[:i]
		}
		if t := bytes.TrimSpace(rest); len(t) > 0 && t[0] != '#' {
			return l
		}
	}
	return 0
}

// charAt is the character at p (columns count characters), or 0.
func charAt(data []byte, p Pos) rune {
	if p.Line < 1 || p.Col < 1 {
		return 0
	}
	line := data[lineStart(data, p.Line):]
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	for col := 1; len(line) > 0; col++ {
		r, size := utf8.DecodeRune(line)
		if col == p.Col {
			return r
		}
		line = line[size:]
	}
	return 0
}

func closer(open rune) rune {
	if open == '{' {
		return '}'
	}
	return ']'
}

// badByte is the position of the first byte that is not UTF-8 or is a
// control character YAML refuses (it allows tab, line feed and carriage
// return).
func badByte(data []byte) Pos {
	p := Pos{1, 1}
	for len(data) > 0 {
		r, size := utf8.DecodeRune(data)
		switch {
		case r == utf8.RuneError && size <= 1, r < 0x20 && r != '\t' && r != '\n' && r != '\r',
			r >= 0x7f && r <= 0x9f && r != 0x85, r == 0xfffe, r == 0xffff:
			return p
		case r == '\n':
			p.Line, p.Col = p.Line+1, 1
		default:
			p.Col++
		}
		data = data[size:]
	}
	return Pos{}
}

func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Line, p.Col) }
