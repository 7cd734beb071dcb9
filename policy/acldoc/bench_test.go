package acldoc

import (
	"fmt"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// benchPolicy has 500 grants over 50 users in 10 groups, 100 tags and 20
// host aliases, plus 200 tests with two accept and two deny entries each.
func benchPolicy() Policy {
	p := Policy{
		Groups: map[string][]string{}, TagOwners: map[string][]string{}, Hosts: map[string]string{},
		AutoApprovers: &AutoApprovers{Routes: map[string][]string{"10.244.0.0/16": {"tag:t0"}}},
	}
	for u := range 50 {
		g := fmt.Sprintf("group:g%d", u%10)
		p.Groups[g] = append(p.Groups[g], fmt.Sprintf("u%d@example.com", u))
	}
	for t := range 100 {
		p.TagOwners[fmt.Sprintf("tag:t%d", t)] = []string{"autogroup:admin"}
	}
	for h := range 20 {
		p.Hosts[fmt.Sprintf("h%d", h)] = fmt.Sprintf("10.%d.0.0/16", h)
	}
	srcs := func(i int) []string {
		return []string{fmt.Sprintf("group:g%d", i%10), fmt.Sprintf("tag:t%d", i%100), fmt.Sprintf("h%d", i%20)}
	}
	for i := range 500 {
		p.Grants = append(p.Grants, Grant{
			Src: srcs(i),
			Dst: []string{fmt.Sprintf("tag:t%d", (i*7)%100), fmt.Sprintf("10.%d.%d.0/24", i%20, i%250)},
			IP:  []string{"tcp:" + strconv.Itoa(1000+i), "udp:2000-2100"},
		})
	}
	for i := range 200 {
		p.Tests = append(p.Tests, Test{
			Src:    srcs(i)[i%3],
			Accept: []string{fmt.Sprintf("tag:t%d:%d", (i*7)%100, 1000+i), fmt.Sprintf("10.%d.%d.9:%d", i%20, i%250, 1000+i)},
			Deny:   []string{fmt.Sprintf("tag:t%d:22", i%100), fmt.Sprintf("h%d:443", i%20)},
		})
	}
	return p
}

func BenchmarkRunTests(b *testing.B) {
	p := benchPolicy()
	if n := len(Validate(&p)); n != 0 {
		b.Fatalf("bench policy has %d issues", n)
	}
	b.ReportAllocs()
	for b.Loop() {
		if res := RunTests(&p); len(res) != 800 {
			b.Fatalf("%d results", len(res))
		}
	}
}

func TestBenchPolicyResults(t *testing.T) {
	p := benchPolicy()
	for _, r := range RunTests(&p) {
		if !r.OK {
			t.Errorf("%s %s -> %s: want %s got %s: %s", r.Path, r.Src, r.Dst, r.Want, r.Got, r.Reason)
		}
	}
}

// TestImports keeps the package free of anything but the standard library,
// hujson and policy/desired (go-cmp in tests).
func TestImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, im := range af.Imports {
			path, _ := strconv.Unquote(im.Path.Value)
			switch {
			case !strings.Contains(strings.Split(path, "/")[0], "."):
			case path == "github.com/tailscale/hujson", path == "github.com/ducksnest/netd/policy/desired":
			case strings.HasSuffix(f, "_test.go") && strings.HasPrefix(path, "github.com/google/go-cmp/"):
			default:
				t.Errorf("%s imports %s", f, path)
			}
		}
	}
}
