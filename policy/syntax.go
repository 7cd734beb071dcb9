package policy

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v4"
)

// syntaxError turns a YAML syntax error into an Error at the token that is
// wrong, with a hint. The parser reports two positions: the problem (where
// it stopped) and a context (the start of the construct it was reading).
// The problem is the offending token, except for a construct that is never
// closed (a quoted string, a [ ] or { } collection, a !< tag): then the
// opener is, and the hint says where the parser gave up. A directive or
// tag the scanner stopped reading at a blank is reported where it starts,
// a bad \x, \u or \U escape at its backslash, and content missing its
// "---" after a directive at the start of its line.
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
	// stop is where the scanner stopped, or the start of the construct
	// (a directive, a tag) when it stopped on a blank or at the line end.
	stop := at
	if c := charAt(data, at); (c == 0 || c == ' ' || c == '\t') && ctx.Line > 0 {
		stop = ctx
	}
	switch {
	case le.Stage == yaml.ReaderStage:
		set(badByte(data), "a policy file is UTF-8 text without control characters")
	case strings.Contains(msg, "tab character") || charAt(data, at) == '\t':
		set(at, "YAML does not allow tabs for indentation: indent with spaces")
	case strings.Contains(msg, "comment without preceding whitespace"):
		set(at, "a comment needs a space before the '#': add one, or quote the whole value if the '#' is part of it")
	case (msg == "did not find expected <document start>" || strings.Contains(msg, "mapping values are not allowed")) &&
		isDirective(data, prevLine(data, at.Line)):
		// After a directive line the scanner allows no simple key, so a
		// missing "---" is reported at the first ':' of the content.
		e.Msg = "did not find expected <document start>"
		set(Pos{at.Line, indent(data, at.Line) + 1}, "the directive on line %d must be followed by a '---' line: "+
			"add '---' above this line, or remove the directive (a policy needs none)", prevLine(data, at.Line))
	case msg == "did not find expected <document start>":
		set(at, "%s", documentStartHint(data, at))
	case strings.Contains(where, "directive") || strings.Contains(msg, "directive") || msg == "found incompatible YAML document":
		set(stop, "%s", directiveHint(msg, where))
	case strings.HasSuffix(where, " a tag"):
		set(stop, "%s", tagHint(msg, ctx, at))
	case (msg == "did not find expected hexadecimal number" || msg == "found invalid Unicode character escape code") &&
		escapeAt(data, at) != "":
		esc := escapeAt(data, at)
		set(Pos{at.Line, at.Col - 2}, "%s", escapeHint(msg, esc))
	case strings.Contains(msg, "content after document-end marker") && ctx.Line > 0:
		set(ctx, "'...' at the start of a line ends the document, and nothing may follow it: remove the line, or quote the text if it is a value")
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
	case strings.Contains(msg, "undefined tag handle"):
		return "'!' starts a YAML tag: quote the value if it is text"
	case strings.Contains(msg, "mapping keys are not allowed"):
		return "'? ' starts an explicit mapping key, which must begin its own line: remove the '?', or quote the whole value if it is text"
	case strings.Contains(msg, "indentation indicator equal to 0"):
		return "a digit after '|' or '>' says how many spaces the text is indented, 1 to 9: remove the 0 and YAML finds the indentation itself"
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
	line := lineText(data, at.Line)
	if i := strings.Index(line, ": "); i < 0 || utf8.RuneCountInString(line[:i])+1 != at.Col {
		return false // not this line's first ':'
	}
	_, value, ok := strings.Cut(lineText(data, prev), ": ")
	return ok && strings.TrimSpace(value) != ""
}

// lineText is line (1-based) without its line break.
func lineText(data []byte, line int) string {
	rest := data[lineStart(data, line):]
	if i := bytes.IndexByte(rest, '\n'); i >= 0 {
		rest = rest[:i]
	}
	return strings.TrimSuffix(string(rest), "\r")
}

// isDirective reports whether line is a YAML directive (%YAML, %TAG).
func isDirective(data []byte, line int) bool {
	return line > 0 && strings.HasPrefix(lineText(data, line), "%")
}

// documentStartHint explains content after what YAML took as the whole
// document: most often the first lines are indented more than the rest.
func documentStartHint(data []byte, at Pos) string {
	first := 0
	for l := 1; l < at.Line; l++ {
		if t := strings.TrimSpace(lineText(data, l)); t != "" && t[0] != '#' && t[0] != '%' && t != "---" {
			first = l
			break
		}
	}
	if first > 0 && indent(data, first) > indent(data, at.Line) {
		return fmt.Sprintf("line %d, the document's first, is indented more than this one, so YAML read the lines before this one as the whole document: "+
			"start every top-level key (apiVersion:, kind:, metadata:, spec:) at column 1", first)
	}
	return "the lines above already form a whole YAML document, so this line cannot continue it: check the indentation and brackets above; " +
		"a policy is one mapping of apiVersion:, kind:, metadata: and spec:"
}

// directiveHint says how to fix a %YAML or %TAG directive line, or a
// line at column 1 that starts with '%' and so reads as one; where is the
// context the scanner reports.
func directiveHint(msg, where string) string {
	const none = "a policy needs no directive: remove the line"
	switch {
	case msg == "found incompatible YAML document":
		return "the parser accepts only '%YAML 1.1'; " + none
	case strings.Contains(msg, "duplicate %YAML"):
		return "a document has at most one %YAML line: remove this one"
	case strings.Contains(msg, "duplicate %TAG"):
		return "a %TAG line above already defines this tag handle: remove one of them"
	case strings.Contains(msg, "before directive"):
		return "a line starting with '%' is a YAML directive, which can only come before the document: remove it, or quote the text if it is part of a value"
	case strings.Contains(msg, "unknown directive"):
		return "a line starting with '%' is a YAML directive, and only %YAML and %TAG exist; " + none
	case strings.Contains(where, "%YAML"):
		return "a %YAML line is written '%YAML 1.1'; " + none
	case strings.Contains(where, "%TAG"):
		return "a %TAG line is written '%TAG !name! prefix', its handle between two '!'; " + none
	}
	return "a line starting with '%' is a YAML directive, written '%YAML 1.1' or '%TAG !name! prefix'; " + none
}

// tagHint says how to fix a tag: a value starting with '!'.
func tagHint(msg string, ctx, at Pos) string {
	switch {
	case strings.Contains(msg, "expected '>'"):
		return fmt.Sprintf("the '!<' here starts a verbatim tag that is not closed with '>' before %s: quote the value if it is text", at)
	case strings.Contains(msg, "URI escaped octet"), strings.Contains(msg, "UTF-8 octet"):
		return "'!' starts a YAML tag, where '%' escapes one byte of UTF-8 as two hexadecimal digits (as in %C3%A9): quote the value if it is text"
	case strings.Contains(msg, "whitespace or line break"):
		return fmt.Sprintf("the tag that starts at %s must be followed by a space before the value: quote the whole value if it is text", ctx)
	}
	return "'!' starts a YAML tag, and a policy uses none: quote the value if it is text"
}

// escapeAt is the \x, \u or \U escape whose digits the scanner reads at
// at (it stops after the letter), up to the digits it takes, or "".
func escapeAt(data []byte, at Pos) string {
	if at.Col < 3 || charAt(data, Pos{at.Line, at.Col - 2}) != '\\' {
		return ""
	}
	n := map[rune]int{'x': 2, 'u': 4, 'U': 8}[charAt(data, Pos{at.Line, at.Col - 1})]
	if n == 0 {
		return ""
	}
	esc := []rune(lineText(data, at.Line))[at.Col-3:]
	return string(esc[:min(len(esc), 2+n)])
}

// escapeHint says how to fix esc, a \x, \u or \U escape in double quotes.
func escapeHint(msg, esc string) string {
	if strings.Contains(msg, "Unicode") {
		if v, err := strconv.ParseUint(esc[2:], 16, 32); err == nil && v >= 0xd800 && v <= 0xdfff {
			return esc + ` is half of a UTF-16 surrogate pair, which YAML does not take: write the code point in one escape, as \U0001F600`
		}
		return esc + ` is beyond 10FFFF, the last Unicode code point: fix the escape`
	}
	form := map[byte]string{'x': `\x takes exactly 2 hexadecimal digits, as in \x41`,
		'u': `\u takes exactly 4 hexadecimal digits, as in \u00e9`, 'U': `\U takes exactly 8 hexadecimal digits, as in \U0001F600`}[esc[1]]
	return form + `: fix the escape, or for a backslash write \\ or use single quotes`
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
