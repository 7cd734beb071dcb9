package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v4"
)

// Pos is a 1-based line and column in a policy file.
type Pos struct{ Line, Col int }

// maxNodes bounds the number of YAML nodes (after alias expansion) that
// Load walks, so that an "alias bomb" fails instead of eating memory.
const maxNodes = 1 << 20

// MaxFileSize caps the size of a policy file. A real policy is a few
// kilobytes; the cap keeps a wrong or hostile file (a log, a disk image)
// from being read whole into the memory of the daemon or the CLI.
const MaxFileSize = 4 << 20

// ReadError is a policy file that could not be read (missing, unreadable):
// nothing is known about its contents. A file that was read but is wrong
// (too large, bad YAML, invalid) is an ErrorList instead.
type ReadError struct {
	Path string
	Err  error
}

func (e *ReadError) Error() string { return fmt.Sprintf("reading policy %s: %v", e.Path, e.Err) }

func (e *ReadError) Unwrap() error { return e.Err }

// LoadFile reads and loads the policy file at path.
func LoadFile(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &ReadError{Path: path, Err: err}
	}
	defer f.Close()
	return LoadReader(path, f)
}

// LoadReader reads a policy from r (a file, standard input) and loads it;
// name is the file name used in error positions. It reads at most
// MaxFileSize bytes: a longer input is refused without reading the rest.
func LoadReader(name string, r io.Reader) (*File, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, &ReadError{Path: name, Err: err}
	}
	if len(data) > MaxFileSize {
		return nil, ErrorList{{File: name, Msg: fmt.Sprintf("the file is larger than %d MiB, the limit for a policy file", MaxFileSize>>20),
			Hint: "is this the policy file? a policy is a few kilobytes of YAML"}}
	}
	return Load(name, data)
}

// Load decodes one policy document strictly: unknown fields, duplicate keys
// and values of the wrong type are errors. name is the file name used in
// error positions. The error, if any, is an ErrorList holding every problem
// found. Load does not validate the contents; Validate and Compile do.
func Load(name string, data []byte) (*File, error) {
	root, errs := parseOne(name, data)
	if errs != nil {
		return nil, errs.Err()
	}
	f := &File{source: name}
	w := &walker{file: name, index: map[string]Pos{}, keys: map[string]Pos{}, active: map[*yaml.Node]bool{}}
	w.walk(root, fileType, "")
	if len(w.errs) > 0 {
		return nil, w.errs.Err()
	}
	f.index, f.keys = w.index, w.keys
	if err := decodeNode(root, f); err != nil {
		// The walk checks every type the decoder checks; this is a backstop.
		return nil, ErrorList{syntaxError(name, data, err)}
	}
	var l ErrorList
	if f.APIVersion != APIVersion {
		l = append(l, f.errorAt("apiVersion", fmt.Sprintf("apiVersion is %q, not %q", f.APIVersion, APIVersion),
			"set apiVersion: "+APIVersion))
	}
	if f.Kind != Kind {
		l = append(l, f.errorAt("kind", fmt.Sprintf("kind is %q, not %q", f.Kind, Kind), "set kind: "+Kind))
	}
	if len(l) > 0 {
		return nil, l.Err()
	}
	return f, nil
}

// Source is the file name the policy was loaded from.
func (f *File) Source() string { return f.source }

// Position returns the position of the value at path (for example
// spec.nodes[2].lanAddress). A path that is not in the file, such as a
// missing field, gets the position of the key of its nearest ancestor that
// is (so a missing spec.bgp.asn points at "bgp:").
func (f *File) Position(path string) Pos {
	if p, ok := f.index[path]; ok {
		return p
	}
	for path != "" {
		path = parentPath(path)
		if p, ok := f.keys[path]; ok {
			return p
		}
		if p, ok := f.index[path]; ok {
			return p
		}
	}
	return Pos{}
}

// errorAt builds an Error for the value at path.
func (f *File) errorAt(path, msg, hint string) Error {
	p := f.Position(path)
	return Error{File: f.source, Line: p.Line, Col: p.Col, Path: path, Msg: msg, Hint: hint}
}

// parentPath strips the last segment: a.b[2] -> a.b, a["k.x"] -> a, a.b -> a.
func parentPath(p string) string {
	switch {
	case strings.HasSuffix(p, `"]`):
		// A quoted key never contains `["` (strconv.Quote escapes the quote).
		if i := strings.LastIndex(p, `["`); i >= 0 {
			return p[:i]
		}
	case strings.HasSuffix(p, "]"):
		if i := strings.LastIndex(p, "["); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndex(p, "."); i >= 0 {
		return p[:i]
	}
	return ""
}

func joinField(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func joinKey(path, key string) string { return path + "[" + strconv.Quote(key) + "]" }

func joinIndex(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// parseOne parses data into a node tree and insists on exactly one document
// whose root is a mapping.
func parseOne(name string, data []byte) (root *yaml.Node, errs ErrorList) {
	defer func() {
		// The YAML parser is third-party code; a panic on hostile input
		// becomes an error rather than a crash of the daemon.
		if r := recover(); r != nil {
			root, errs = nil, ErrorList{{File: name, Line: 1, Col: 1, Msg: fmt.Sprintf("cannot parse YAML: %v", r)}}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, ErrorList{{File: name, Line: 1, Col: 1, Msg: "the policy file is empty",
				Hint: "start with apiVersion: " + APIVersion + " and kind: " + Kind}}
		}
		return nil, ErrorList{syntaxError(name, data, err)}
	}
	for {
		// Empty documents (a trailing "---") are allowed; a second
		// document with content is not.
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, ErrorList{syntaxError(name, data, err)}
		}
		if len(next.Content) == 1 && isNull(next.Content[0]) && next.Content[0].Value == "" {
			continue
		}
		return nil, ErrorList{{File: name, Line: next.Line, Col: next.Column,
			Msg: "the file holds more than one YAML document", Hint: "keep exactly one policy per file; remove the extra '---' section"}}
	}
	if len(doc.Content) != 1 {
		return nil, ErrorList{{File: name, Line: 1, Col: 1, Msg: "the policy file is empty"}}
	}
	root = doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, ErrorList{{File: name, Line: root.Line, Col: root.Column,
			Msg: "the document is not a mapping", Hint: "a policy starts with apiVersion:, kind:, metadata: and spec:"}}
	}
	return root, nil
}

func decodeNode(n *yaml.Node, f *File) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("decoding: %v", r)
		}
	}()
	return n.Decode(f)
}
