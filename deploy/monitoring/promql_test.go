package monitoring_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// promqlKeywords are the PromQL words that are not metric names where
// they stand: binary and set operators, modifiers, aggregation operators
// (which may be followed by `by (...)` instead of their parenthesis) and
// the numbers spelled as words.
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
	"inf": true, "nan": true,
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true,
}

// promqlLabelLists are the modifiers followed by a parenthesized list of
// label names (not expressions).
var promqlLabelLists = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// metricNames returns the metric names an expression selects, in order of
// appearance and without repeats: every identifier that is not a keyword,
// a function or aggregation (an identifier followed by "("), a label name
// (inside {...} or the list after by/without/on/ignoring/group_left/
// group_right) or part of a duration or number. Strings, [...] ranges and
// Grafana variables ($name, ${name}, $__rate_interval) are skipped. It is a
// scanner, not a parser: promtool checks the syntax.
func metricNames(expr string) ([]string, error) {
	var out []string
	i, n := 0, len(expr)
	for i < n {
		c := expr[i]
		switch {
		case c == '#':
			for i < n && expr[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j, err := skipString(expr, i)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '{' || c == '[':
			j, err := skipGroup(expr, i)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '$':
			i++
			if i < n && expr[i] == '{' {
				j, err := skipGroup(expr, i)
				if err != nil {
					return nil, err
				}
				i = j
				continue
			}
			for i < n && isIdent(expr[i], true) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.' && i+1 < n && expr[i+1] >= '0' && expr[i+1] <= '9':
			// A number or a duration (5m, 1e9, 0x1f, 1h30m).
			for i < n && (isIdent(expr[i], true) || expr[i] == '.') {
				i++
			}
		case isIdent(c, false):
			j := i
			for j < n && isIdent(expr[j], true) {
				j++
			}
			word := expr[i:j]
			k := j
			for k < n && (expr[k] == ' ' || expr[k] == '\t' || expr[k] == '\n' || expr[k] == '\r') {
				k++
			}
			paren := k < n && expr[k] == '('
			switch {
			case promqlLabelLists[strings.ToLower(word)]:
				if paren {
					g, err := skipGroup(expr, k)
					if err != nil {
						return nil, err
					}
					j = g
				}
			case promqlKeywords[strings.ToLower(word)] || paren:
			default:
				if !slices.Contains(out, word) {
					out = append(out, word)
				}
			}
			i = j
		default:
			i++
		}
	}
	return out, nil
}

func isIdent(c byte, rest bool) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || rest && c >= '0' && c <= '9'
}

// skipString returns the index after the string literal that starts at i.
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string at offset %d of %q", i, s)
}

// skipGroup returns the index after the bracket that closes the one at i
// ({, [ or (), skipping strings and nested groups.
func skipGroup(s string, i int) (int, error) {
	closer := map[byte]byte{'{': '}', '[': ']', '(': ')'}
	stack := []byte{closer[s[i]]}
	for j := i + 1; j < len(s); j++ {
		switch c := s[j]; {
		case c == '"' || c == '\'' || c == '`':
			k, err := skipString(s, j)
			if err != nil {
				return 0, err
			}
			j = k - 1
		case closer[c] != 0:
			stack = append(stack, closer[c])
		case c == stack[len(stack)-1]:
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return j + 1, nil
			}
		case c == '}' || c == ']' || c == ')':
			return 0, fmt.Errorf("unbalanced %q at offset %d of %q", c, j, s)
		}
	}
	return 0, fmt.Errorf("unclosed %q at offset %d of %q", s[i], i, s)
}

// TestMetricNames: the scanner finds every selected metric and nothing
// else, in the shapes the rules and the dashboard use.
func TestMetricNames(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`up{job="netd"} == 0`, []string{"up"}},
		{`netd_bgp_peer_up`, []string{"netd_bgp_peer_up"}},
		{`sum by (instance, peer) (rate(netd_bgp_prefixes_rejected_total{peer=~"a|b", reason!="x"}[$__rate_interval]))`,
			[]string{"netd_bgp_prefixes_rejected_total"}},
		{`sum without (result) (increase(netd_reconcile_runs_total{result="error"}[10m])) > 0
		  unless
		  sum without(result) (increase(netd_reconcile_runs_total{result="ok"}[10m])) > 0`,
			[]string{"netd_reconcile_runs_total"}},
		{`histogram_quantile(0.99, sum by (le) (rate(a_bucket[5m]))) / on(instance) group_left(node) b_info`,
			[]string{"a_bucket", "b_info"}},
		{`process_resident_memory_bytes{job="netd"} > 64 * 1024 * 1024 and 1e9 > 0x10`, []string{"process_resident_memory_bytes"}},
		{`count(x == 0) or vector(0)`, []string{"x"}},
		{`time() - process_start_time_seconds{job="netd",instance=~"$instance"}`, []string{"process_start_time_seconds"}},
		{`rate(y[5m] offset 1h30m) and ignoring (a, b) z @ start()`, []string{"y", "z"}},
		{`label_replace(m, "dst", "$1", "src", "(.*)") # a comment naming not_a_metric`, []string{"m"}},
		{`ALERTS{alertname=~"Netd.*",alertstate="firing"}`, []string{"ALERTS"}},
		{`${datasource_var} + sum(q) by (p)`, []string{"q"}},
		{`max_over_time(r[1h:5m])`, []string{"r"}},
		{`topk(3, s) > bool 2`, []string{"s"}},
	} {
		got, err := metricNames(c.expr)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: got %q, want %q", c.expr, got, c.want)
		}
	}
	for _, bad := range []string{`a{b="c"`, `rate(x[5m)`, `a{b="c}`} {
		if got, err := metricNames(bad); err == nil {
			t.Errorf("%s: no error (got %q)", bad, got)
		}
	}
}
