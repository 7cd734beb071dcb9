package policy

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// invalidCases names every file in testdata/invalid and the rule it breaks.
// Each file marks the line of every expected error with a comment
// "# want COL: SUBSTRING": Load or Validate must report exactly those
// errors, at that line and column, with the substring in "msg (hint)".
var invalidCases = map[string]string{
	// Loading.
	"unknown-field":      "unknown fields are errors, with a suggestion",
	"duplicate-key":      "duplicate keys are errors",
	"wrong-type-int":     "a string where an integer belongs",
	"wrong-type-list":    "a scalar where a list belongs",
	"wrong-type-mapping": "a scalar where a mapping belongs",
	"bad-duration":       "a number where a duration string belongs",
	"bad-duration-unit":  "an unparsable duration",
	"int-overflow":       "an integer too big for its field",
	"two-documents":      "exactly one YAML document",
	"api-version":        "apiVersion checked",
	// The tailnet sync section.
	"tailnet-sync-writer":    "the tailnet writer must be a node of the policy",
	"tailnet-sync-ownership": "tailnet ownership is shared or exclusive",
	"tailnet-sync-interval":  "the tailnet re-check interval is at least 1s",
	"kind":                   "kind checked",
	// YAML syntax: one file per kind of error the parser reports, each at
	// the offending token (not the start of the enclosing block).
	"syntax":                             "an unclosed [ is reported where it opens",
	"syntax-tab-indent":                  "a tab as indentation",
	"syntax-tab-indent-after-spaces":     "a tab after indenting spaces",
	"syntax-tab-list":                    "a tab before a list item",
	"syntax-indent-key":                  "a key indented less than its siblings",
	"syntax-indent-key-deeper":           "a key indented more than its siblings",
	"syntax-indent-list":                 "a list item indented less than its siblings",
	"syntax-seq-after-map":               "a list item among the keys of a mapping",
	"syntax-unclosed-dquote":             "an unclosed double quote",
	"syntax-unclosed-squote":             "an unclosed single quote",
	"syntax-unclosed-flow-map":           "an unclosed {",
	"syntax-flow-extra-close":            "a stray ] after a value",
	"syntax-mapping-values":              "key: value inside a value",
	"syntax-seq-entry":                   "a list item after key: on the same line",
	"syntax-simple-key":                  "a key without ':'",
	"syntax-bad-char":                    "a reserved character starting a value",
	"syntax-escape":                      "an unknown escape in double quotes",
	"syntax-anchor":                      "an anchor without a name",
	"syntax-unknown-alias":               "an alias of an undefined anchor",
	"syntax-tag":                         "an undefined tag handle",
	"syntax-block-scalar":                "text after | on the same line",
	"syntax-control-char":                "a control character",
	"syntax-bad-utf8":                    "a byte that is not UTF-8",
	"syntax-node-content":                "an empty item in a [ ] list",
	"syntax-doc-indicator":               "--- inside an unclosed quote",
	"syntax-directive-version":           "%YAML other than 1.1",
	"syntax-directive-version-duplicate": "a second %YAML line",
	"syntax-directive-tag-duplicate":     "a second %TAG line for one handle",
	"syntax-directive-unknown":           "a directive other than %YAML and %TAG",
	"syntax-directive-version-form":      "%YAML without a minor version",
	"syntax-directive-tag-form":          "%TAG with a handle not ending in '!'",
	"syntax-directive-trailing":          "text after a directive",
	"syntax-directive-no-document-start": "a directive without the '---' after it",
	"syntax-directive-in-document":       "a directive after the document started",
	"syntax-document-start":              "top-level keys indented unlike the first",
	"syntax-document-end":                "text after '...'",
	"syntax-mapping-key":                 "'? ' after a value on the same line",
	"syntax-block-scalar-indent-zero":    "|0",
	"syntax-tag-verbatim":                "!< without >",
	"syntax-tag-verbatim-empty":          "!<>",
	"syntax-tag-char":                    "a character a tag cannot hold",
	"syntax-tag-end":                     "a value right after a tag",
	"syntax-tag-uri-escape":              "'%' in a tag without two hex digits",
	"syntax-tag-utf8-lead":               "a %-escape in a tag that cannot start UTF-8",
	"syntax-tag-utf8-trail":              "a %-escape in a tag that cannot continue UTF-8",
	"syntax-escape-hex":                  `\x without two hex digits`,
	"syntax-escape-unicode-short":        `\U with fewer than eight hex digits`,
	"syntax-escape-surrogate":            `a JSON-style surrogate pair \uD83D\uDE00`,
	"syntax-comment-space":               "'#' right after a value",
	// Networks, overlay, routing.
	"metadata-name":         "metadata.name required",
	"cidr-host-bits":        "non-canonical CIDR, hint shows the canonical form",
	"cidr-unparsable":       "unparsable CIDR",
	"cidr-ipv6":             "IPv6 is not supported yet",
	"overlap-services-pods": "pods/services/overlay/LANs overlap",
	"overlap-lans":          "LANs overlap each other",
	"lan-mtu":               "LAN MTU range",
	"overlay-mtu-low":       "overlay MTU below 1280",
	"overlay-mtu-high":      "overlay MTU above 9000",
	"overlay-interface":     "overlay interface name",
	"routing-rule-priority": "rule priority must precede tailscaled's 5270",
	"routing-table":         "tables 52/253/254/255 are not netd's",
	"routing-protocol":      "reserved route protocols",
	// Nodes.
	"node-name-invalid":          "DNS-1123 label",
	"node-name-duplicate":        "duplicate node name",
	"node-role":                  "role control-plane or worker",
	"overlay-address-unparsable": "unparsable address",
	"overlay-address-outside":    "overlay address outside networks.overlay",
	"overlay-address-duplicate":  "duplicate overlay address",
	"lan-address-outside":        "LAN address outside its site's LAN",
	"lan-address-no-lan":         "LAN address on a site without LAN",
	"lan-address-duplicate":      "duplicate LAN address",
	"lan-address-broadcast":      "LAN address is the broadcast address",
	"node-asn":                   "node ASN override must be private",
	"node-hostname":              "tailscale hostname is a DNS label",
	"node-tag-format":            "tags start with tag:",
	"node-tag-no-owner":          "node tags need a tagOwner",
	"podcidr-outside-pods":       "node podCIDR outside the pod CIDR",
	"podcidr-host-bits":          "node podCIDR not canonical",
	"podcidr-overlap":            "node podCIDRs overlap another node's",
	"podcidr-overlap-own":        "node podCIDRs overlap the node's own",
	"podcidr-smaller-than-block": "node podCIDR smaller than the pool's block",
	"podcidr-pool-selector":      "node podCIDR in a pool whose selector does not match the node",
	"podcidr-no-pool":            "node podCIDR in no pool",
	// Pools.
	"pool-overlap":               "pools overlap",
	"pool-outside-pods":          "pool outside the pod CIDR",
	"pool-blocksize-range":       "blockSize 20..32",
	"pool-blocksize-too-big":     "blockSize bigger than the pool",
	"pool-encapsulation-ipip":    "IPIP rejected",
	"pool-encapsulation-unknown": "unknown encapsulation",
	"pool-name-duplicate":        "duplicate pool name",
	"pool-all-disabled":          "at least one enabled pool",
	"pool-selector-syntax":       "selector syntax error",
	"pool-selector-no-match":     "selector matching no node",
	// BGP.
	"bgp-asn-public":                "ASN outside the private ranges",
	"bgp-asn-missing":               "ASN required",
	"bgp-topology":                  "unknown topology",
	"bgp-rr-missing":                "route-reflector topology without reflectors",
	"bgp-rr-unknown":                "route reflector naming an unknown node",
	"bgp-rr-full-mesh":              "route reflectors with full-mesh",
	"bgp-rr-asn-override":           "route reflection needs one AS",
	"bgp-hold-time":                 "hold time 0 or >= 3s",
	"bgp-keepalive":                 "keepalive < hold",
	"bgp-keepalive-hold-zero":       "no keepalive with hold 0",
	"bgp-timer-fraction":            "timers are whole seconds",
	"bgp-gr-restart":                "graceful restart time <= 4095s",
	"bgp-port":                      "port range",
	"bgp-max-prefixes":              "maxPrefixes positive",
	"bgp-max-prefixes-too-small":    "maxPrefixes below the blocks a reflector sends",
	"ext-address":                   "external peer address parse",
	"ext-address-node":              "external peer address is a node's",
	"ext-asn":                       "external peer reserved ASN",
	"ext-no-nodes":                  "external peer with no node to attach to",
	"ext-node-unknown":              "external peer naming an unknown node",
	"ext-export":                    "export entry neither pods, services nor CIDR",
	"ext-import":                    "import maximum length",
	"ext-import-syntax":             "import syntax",
	"ext-import-reserved":           "import reaching the pod, service or overlay range, a LAN or the default route",
	"ext-import-reserved-exception": "importReserved: exact, strictly inside a reserved range, no node block or address, not the peer's address",
	"ext-name-clash":                "external peer named like a node",
	"ext-password":                  "password file path",
	"tailnet-unknown-group":         "tailnet.Validate issues get positions",
	"generate-node-tag":             "generate.nodeTag format",
	"flows-generation-disabled":     "BFD and VXLAN on but a hand-written policy allows only BGP",
	"flows-deny-test":               "a hand-written test denies a flow BFD needs",
	"multiple-errors":               "all errors are reported at once, sorted",
}

var wantRE = regexp.MustCompile(`# want (\d+): (.*)$`)

type want struct {
	line, col int
	sub       string
}

func wants(t *testing.T, data []byte) []want {
	t.Helper()
	var ws []want
	for i, l := range strings.Split(string(data), "\n") {
		if m := wantRE.FindStringSubmatch(l); m != nil {
			col, _ := strconv.Atoi(m[1])
			ws = append(ws, want{i + 1, col, m[2]})
		}
	}
	if len(ws) == 0 {
		t.Fatal("no '# want COL: substring' marker in the file")
	}
	return ws
}

// loadAndValidate returns the problems of a file, from Load or Validate.
func loadAndValidate(name string, data []byte) ErrorList {
	f, err := Load(name, data)
	if err == nil {
		err = Validate(f)
	}
	var l ErrorList
	if err != nil && !errors.As(err, &l) {
		return ErrorList{{Msg: "not an ErrorList: " + err.Error()}}
	}
	return l
}

func TestInvalid(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if _, ok := invalidCases[strings.TrimSuffix(filepath.Base(f), ".yaml")]; !ok {
			t.Errorf("%s is not listed in invalidCases", f)
		}
	}
	for name := range invalidCases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata/invalid", name+".yaml")
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			ws := wants(t, data)
			got := loadAndValidate(path, data)
			if !slices.IsSortedFunc(got, func(a, b Error) int { return a.Line*1000 + a.Col - b.Line*1000 - b.Col }) {
				t.Errorf("errors not sorted by position:\n%v", got)
			}
			for _, w := range ws {
				found := false
				for _, e := range got {
					if e.Line == w.line && e.Col == w.col && strings.Contains(e.Error(), w.sub) {
						found = true
					}
				}
				if !found {
					t.Errorf("want an error at %d:%d containing %q; got:\n%v", w.line, w.col, w.sub, got)
				}
			}
			if len(got) != len(ws) {
				t.Errorf("got %d errors, want %d:\n%v", len(got), len(ws), got)
			}
			for _, e := range got {
				if e.Hint == "" {
					t.Errorf("error without a hint on how to fix it: %v", e)
				}
				if e.File != path {
					t.Errorf("error names file %q, want %q", e.File, path)
				}
			}
		})
	}
}

func TestValidFiles(t *testing.T) {
	for _, path := range []string{"testdata/valid/minimal.yaml", "../examples/ducksnest/policy.yaml"} {
		f, err := LoadFile(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if err := Validate(f); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	e := Error{File: "p.yaml", Line: 3, Col: 7, Path: "spec.x", Msg: "x is wrong", Hint: "fix it"}
	if got, want := e.Error(), "p.yaml:3:7: x is wrong (fix it)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	l := ErrorList{e, {File: "p.yaml", Line: 1, Col: 1, Msg: "first"}}
	if err := l.Err(); err.Error() != "p.yaml:1:1: first\np.yaml:3:7: x is wrong (fix it)" {
		t.Errorf("ErrorList = %q", err)
	}
	if (ErrorList{}).Err() != nil {
		t.Error("empty ErrorList.Err() is not nil")
	}
}

func TestErrorWithoutPosition(t *testing.T) {
	f := loadMinimal(t)
	g := &File{APIVersion: f.APIVersion, Kind: f.Kind, Metadata: f.Metadata, Spec: f.Spec} // no positions
	g.Spec.BGP.ASN = 1
	err := Validate(g)
	if err == nil || err.Error() != "spec.bgp.asn: bgp.asn 1 is not a private ASN (use a private ASN: 64512-65534 or 4200000000-4294967294)" {
		t.Errorf("Validate = %v", err)
	}
}
