package policy

import (
	"fmt"
	"strings"
)

// Selector is a parsed Calico node selector. The subset understood is
// all(), has(k), k == 'v', k != 'v', k in {'a', 'b'}, k not in {...}, !,
// &&, || and parentheses; strings take single or double quotes.
type Selector struct {
	src  string
	root selExpr
}

// selExpr is a node of a parsed selector.
type selExpr interface {
	match(labels map[string]string) bool
}

type (
	selAll struct{}
	selHas struct{ key string }
	selEq  struct {
		key, val string
		neg      bool
	}
	selIn struct {
		key  string
		vals []string
		neg  bool
	}
	selNot struct{ x selExpr }
	selAnd struct{ x, y selExpr }
	selOr  struct{ x, y selExpr }
)

func (selAll) match(map[string]string) bool { return true }
func (s selHas) match(l map[string]string) bool {
	_, ok := l[s.key]
	return ok
}

func (s selEq) match(l map[string]string) bool {
	v, ok := l[s.key]
	if s.neg {
		return !ok || v != s.val // Calico: k != 'v' matches nodes without k
	}
	return ok && v == s.val
}

func (s selIn) match(l map[string]string) bool {
	v, ok := l[s.key]
	in := false
	for _, x := range s.vals {
		if ok && v == x {
			in = true
		}
	}
	return in != s.neg
}
func (s selNot) match(l map[string]string) bool { return !s.x.match(l) }
func (s selAnd) match(l map[string]string) bool { return s.x.match(l) && s.y.match(l) }
func (s selOr) match(l map[string]string) bool  { return s.x.match(l) || s.y.match(l) }

// ParseSelector parses a Calico selector; the empty string means all().
func ParseSelector(s string) (Selector, error) {
	if strings.TrimSpace(s) == "" {
		return Selector{src: "all()", root: selAll{}}, nil
	}
	p := &selParser{s: s}
	x, err := p.or(0)
	if err == nil {
		p.space()
		if p.i < len(p.s) {
			err = p.fail("unexpected %q", p.s[p.i:])
		}
	}
	if err != nil {
		return Selector{}, err
	}
	return Selector{src: s, root: x}, nil
}

// Matches reports whether the labels satisfy the selector.
func (s Selector) Matches(labels map[string]string) bool {
	if s.root == nil {
		return true
	}
	return s.root.match(labels)
}

// String returns the selector as written.
func (s Selector) String() string { return s.src }

type selParser struct {
	s string
	i int
}

func (p *selParser) fail(format string, args ...any) error {
	return fmt.Errorf("selector column %d: %s", p.i+1, fmt.Sprintf(format, args...))
}

func (p *selParser) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// eat consumes tok (after spaces) if it is next.
func (p *selParser) eat(tok string) bool {
	p.space()
	if strings.HasPrefix(p.s[p.i:], tok) {
		p.i += len(tok)
		return true
	}
	return false
}

const maxSelectorDepth = 64

func (p *selParser) or(depth int) (selExpr, error) {
	x, err := p.and(depth)
	for err == nil && p.eat("||") {
		var y selExpr
		if y, err = p.and(depth); err == nil {
			x = selOr{x, y}
		}
	}
	return x, err
}

func (p *selParser) and(depth int) (selExpr, error) {
	x, err := p.unary(depth)
	for err == nil && p.eat("&&") {
		var y selExpr
		if y, err = p.unary(depth); err == nil {
			x = selAnd{x, y}
		}
	}
	return x, err
}

func (p *selParser) unary(depth int) (selExpr, error) {
	if depth > maxSelectorDepth {
		return nil, p.fail("nested too deeply")
	}
	if p.eat("!") {
		x, err := p.unary(depth + 1)
		return selNot{x}, err
	}
	if p.eat("(") {
		x, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if !p.eat(")") {
			return nil, p.fail("missing ')'")
		}
		return x, nil
	}
	if p.eat("all()") {
		return selAll{}, nil
	}
	if p.eat("has(") {
		k, err := p.label()
		if err != nil {
			return nil, err
		}
		if !p.eat(")") {
			return nil, p.fail("missing ')' after has(%s", k)
		}
		return selHas{k}, nil
	}
	k, err := p.label()
	if err != nil {
		return nil, err
	}
	switch {
	case p.eat("=="):
		v, err := p.str()
		return selEq{key: k, val: v}, err
	case p.eat("!="):
		v, err := p.str()
		return selEq{key: k, val: v, neg: true}, err
	case p.eat("not in"):
		vs, err := p.set()
		return selIn{key: k, vals: vs, neg: true}, err
	case p.eat("in"):
		vs, err := p.set()
		return selIn{key: k, vals: vs}, err
	}
	return nil, p.fail("expected ==, !=, in or not in after label %q", k)
}

func isLabelByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_./-", c) >= 0
}

func (p *selParser) label() (string, error) {
	p.space()
	start := p.i
	for p.i < len(p.s) && isLabelByte(p.s[p.i]) {
		p.i++
	}
	if p.i == start {
		if p.i == len(p.s) {
			return "", p.fail("unexpected end, expected a label, all() or has(label)")
		}
		return "", p.fail("unexpected %q, expected a label, all() or has(label)", p.s[p.i:p.i+1])
	}
	return p.s[start:p.i], nil
}

func (p *selParser) str() (string, error) {
	p.space()
	if p.i >= len(p.s) || (p.s[p.i] != '\'' && p.s[p.i] != '"') {
		return "", p.fail("expected a quoted string such as 'value'")
	}
	q := p.s[p.i]
	end := strings.IndexByte(p.s[p.i+1:], q)
	if end < 0 {
		return "", p.fail("unterminated string")
	}
	v := p.s[p.i+1 : p.i+1+end]
	p.i += end + 2
	return v, nil
}

func (p *selParser) set() ([]string, error) {
	if !p.eat("{") {
		return nil, p.fail("expected '{' to start a set of strings")
	}
	var vs []string
	if p.eat("}") {
		return vs, nil
	}
	for {
		v, err := p.str()
		if err != nil {
			return nil, err
		}
		vs = append(vs, v)
		if p.eat("}") {
			return vs, nil
		}
		if !p.eat(",") {
			return nil, p.fail("expected ',' or '}' in set")
		}
	}
}
