package policy

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v4"
)

var (
	fileType     = reflect.TypeFor[File]()
	durationType = reflect.TypeFor[Duration]()
)

// walker checks a YAML node tree against a Go type before it is decoded:
// unknown fields, duplicate keys and wrong types are reported with their
// positions, all at once. It also records the position of every value.
type walker struct {
	file   string
	index  map[string]Pos
	keys   map[string]Pos
	errs   ErrorList
	nodes  int
	active map[*yaml.Node]bool // aliases being expanded, to catch cycles
}

func (w *walker) errorf(n *yaml.Node, path, hint, format string, args ...any) {
	w.errs = append(w.errs, Error{File: w.file, Line: n.Line, Col: n.Column, Path: path,
		Msg: fmt.Sprintf(format, args...), Hint: hint})
}

// maxErrors bounds the errors one walk reports.
const maxErrors = 100

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	if len(w.errs) >= maxErrors {
		return
	}
	w.nodes++
	if w.nodes == maxNodes {
		w.errorf(n, path, "remove anchors/aliases that expand recursively", "the document expands to more than %d values", maxNodes)
	}
	if w.nodes >= maxNodes {
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil || w.active[n.Alias] {
			w.errorf(n, path, "an anchor cannot contain an alias of itself", "alias *%s refers to itself", n.Value)
			return
		}
		w.active[n.Alias] = true
		w.walk(n.Alias, t, path)
		delete(w.active, n.Alias)
		return
	}
	if _, ok := w.index[path]; !ok {
		w.index[path] = Pos{n.Line, n.Column}
	}
	if isNull(n) && t.Kind() != reflect.Interface {
		return // null leaves the zero value, as the decoder does
	}
	if t == durationType {
		w.duration(n, path)
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		w.walk(n, t.Elem(), path)
	case reflect.Struct:
		w.structure(n, t, path)
	case reflect.Map:
		w.mapping(n, t, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.errorf(n, path, "write a list, one '- item' per line or [a, b]", "%s must be a list, not %s", lastSegment(path), describe(n))
			return
		}
		for i, c := range n.Content {
			w.walk(c, t.Elem(), joinIndex(path, i))
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			w.errorf(n, path, "write a single value", "%s must be a string, not %s", lastSegment(path), describe(n))
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			w.errorf(n, path, "write true or false", "%s must be true or false, not %s", lastSegment(path), describe(n))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			w.errorf(n, path, "write a whole number without quotes", "%s must be an integer, not %s", lastSegment(path), describe(n))
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			w.errorf(n, path, fmt.Sprintf("the value must fit in a %s", t.Kind()), "%s: %s is out of range", lastSegment(path), n.Value)
		}
	case reflect.Interface:
		// Free-form (grant app capabilities): anything goes.
	default:
		w.errorf(n, path, "", "internal error: cannot check %s values", t)
	}
}

func (w *walker) duration(n *yaml.Node, path string) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		w.errorf(n, path, `write a duration with a unit, such as "9s" or "2m"`, "%s must be a duration string, not %s", lastSegment(path), describe(n))
		return
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		w.errorf(n, path, `write a duration with a unit, such as "9s" or "2m"`, "%s: %q is not a duration", lastSegment(path), n.Value)
		return
	}
	if d < 0 {
		w.errorf(n, path, "use a positive duration", "%s: %q is negative", lastSegment(path), n.Value)
	}
}

// pairs calls fn for every key/value of a mapping, following merge keys
// ("<<: *base") and reporting duplicate keys.
func (w *walker) pairs(n *yaml.Node, path string, fn func(k, v *yaml.Node)) {
	type seenKey struct{ line, depth int }
	seen := map[string]seenKey{}
	var visit func(m *yaml.Node, depth int)
	visit = func(m *yaml.Node, depth int) {
		for m.Kind == yaml.AliasNode && m.Alias != nil && depth < 32 {
			m, depth = m.Alias, depth+1
		}
		if m.Kind != yaml.MappingNode || depth >= 32 {
			w.errorf(m, path, "merge ('<<') only mappings", "cannot merge %s into a mapping", describe(m))
			return
		}
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				w.errorf(k, path, "keys must be plain strings", "mapping key must be a string, not %s", describe(k))
				continue
			}
			if k.Value == "<<" && k.ShortTag() == "!!merge" {
				if v.Kind == yaml.SequenceNode {
					for _, c := range v.Content {
						visit(c, depth+1)
					}
				} else {
					visit(v, depth+1)
				}
				continue
			}
			if first, dup := seen[k.Value]; dup {
				switch {
				case depth == 0 && first.depth == 0:
					w.errorf(k, path, "remove one of the two entries", "key %q is defined twice (first at line %d)", k.Value, first.line)
					continue
				case depth > 0:
					continue // an explicit key overrides a merged one
				}
			}
			seen[k.Value] = seenKey{k.Line, depth}
			fn(k, v)
		}
	}
	visit(n, 0)
}

func (w *walker) structure(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode && n.Kind != yaml.AliasNode {
		w.errorf(n, path, "write 'key: value' pairs", "%s must be a mapping, not %s", orRoot(lastSegment(path)), describe(n))
		return
	}
	fields := yamlFields(t)
	w.pairs(n, path, func(k, v *yaml.Node) {
		ft, ok := fields[k.Value]
		if !ok {
			hint := "remove it"
			if s := suggest(k.Value, fields); s != "" {
				hint = fmt.Sprintf("did you mean %q?", s)
			}
			where := "here"
			if path != "" {
				where = "in " + path
			}
			w.errorf(k, joinField(path, k.Value), hint, "unknown field %q %s", k.Value, where)
			return
		}
		w.keys[joinField(path, k.Value)] = Pos{k.Line, k.Column}
		w.walk(v, ft, joinField(path, k.Value))
	})
}

func (w *walker) mapping(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode {
		w.errorf(n, path, "write 'key: value' pairs", "%s must be a mapping, not %s", lastSegment(path), describe(n))
		return
	}
	w.pairs(n, path, func(k, v *yaml.Node) {
		w.keys[joinKey(path, k.Value)] = Pos{k.Line, k.Column}
		w.walk(v, t.Elem(), joinKey(path, k.Value))
	})
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		kind := map[string]string{"!!str": "string", "!!int": "integer", "!!float": "number", "!!bool": "boolean", "!!null": "null"}[n.ShortTag()]
		if kind == "" {
			kind = n.ShortTag()
		}
		return fmt.Sprintf("the %s %q", kind, n.Value)
	}
	return "an empty node"
}

func lastSegment(path string) string {
	if path == "" {
		return ""
	}
	return path[len(parentPath(path)):]
}

func orRoot(s string) string {
	if s == "" {
		return "the document"
	}
	return strings.TrimPrefix(s, ".")
}

var fieldCache sync.Map // reflect.Type -> map[string]reflect.Type

// yamlFields maps the YAML keys of a struct to their types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := map[string]reflect.Type{}
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = f.Type
	}
	fieldCache.Store(t, m)
	return m
}

// suggest returns the known field closest to a misspelt one.
func suggest(got string, fields map[string]reflect.Type) string {
	best, bestD := "", 3
	for name := range fields {
		if strings.EqualFold(name, got) {
			return name
		}
		if d := editDistance(strings.ToLower(got), strings.ToLower(name)); d < bestD || d == bestD && name < best {
			best, bestD = name, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
