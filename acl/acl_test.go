package acl

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ducksnest/netd/policy"
	"github.com/ducksnest/netd/policy/acldoc"
	"github.com/ducksnest/netd/policy/desired"
)

// compiled returns the compiled tailnet policy of the ducksnest example.
func compiled(t *testing.T) *desired.Tailnet {
	t.Helper()
	f, err := policy.LoadFile(filepath.Join("..", "examples", "ducksnest", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := policy.Compile(f)
	if err != nil {
		t.Fatal(err)
	}
	return &st.Tailnet
}

// fromDocument is the desired tailnet policy of a hand-made document, as
// the compiler would build it.
func fromDocument(t *testing.T, doc []byte) *desired.Tailnet {
	t.Helper()
	tn, err := acldoc.Desired(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &tn
}

// withoutPodGrant drops the generated pod-traffic grant (and the tests
// that depend on it) from a compiled policy.
func withoutPodGrant(t *testing.T, tn *desired.Tailnet) *desired.Tailnet {
	t.Helper()
	p, err := acldoc.Parse(tn.Tailscale.HuJSON)
	if err != nil {
		t.Fatal(err)
	}
	var gs []acldoc.Grant
	for _, g := range p.Grants {
		if len(g.IP) == 1 && g.IP[0] == "*" && len(g.Dst) == 1 && g.Dst[0] == "pods" {
			continue
		}
		gs = append(gs, g)
	}
	if len(gs) == len(p.Grants) {
		t.Fatal("no pod grant in the compiled policy")
	}
	p.Grants, p.Tests, p.Generated = gs, nil, nil
	out, err := acldoc.Render(p, []string{"test policy without the pod grant"})
	if err != nil {
		t.Fatal(err)
	}
	return fromDocument(t, out)
}

const defaultPolicy = "// Example/default ACLs for unrestricted connections.\n{\n\t\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"]}],\n}\n"

func tsTarget(f *fakeTailscale) Target {
	return Target{Kind: KindTailscale, BaseURL: f.srv.URL, APIKey: f.key, HTTPClient: f.srv.Client()}
}

func TestTailscaleFirstApplyNeedsForce(t *testing.T) {
	ctx := context.Background()
	f := newFakeTailscale(t, defaultPolicy)
	want := compiled(t)
	c, err := Diff(ctx, tsTarget(f), want)
	if err != nil {
		t.Fatal(err)
	}
	if c.Unchanged || !strings.Contains(c.Drift, "no netd-applied stamp") || !strings.Contains(c.Diff, "+\t\"grants\": [") {
		t.Fatalf("diff against the default policy: unchanged=%v drift=%q\n%s", c.Unchanged, c.Drift, c.Diff)
	}
	if _, err := Apply(ctx, tsTarget(f), want, Options{}); !errors.Is(err, ErrDrift) {
		t.Fatalf("apply over an unstamped policy: err %v, want ErrDrift", err)
	}
	if p, n := f.current(); p != defaultPolicy || n != 0 {
		t.Fatalf("refused apply wrote: %d writes", n)
	}
	res, err := Apply(ctx, tsTarget(f), want, Options{Force: true})
	if err != nil || !res.Written {
		t.Fatalf("forced apply: %+v %v", res, err)
	}
	live, _ := f.current()
	body, stamp := Unstamp([]byte(live))
	if string(body) != string(want.Tailscale.HuJSON) || stamp != digest(body) || res.Version != etagOf(live) {
		t.Fatalf("live after apply is not the stamped desired policy:\n%s", live)
	}
}

func TestTailscaleNoWriteWhenUnchanged(t *testing.T) {
	ctx := context.Background()
	want := compiled(t)
	f := newFakeTailscale(t, string(Stamp(want.Tailscale.HuJSON)))
	res, err := Apply(ctx, tsTarget(f), want, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Written || !res.Change.Unchanged || res.Change.Diff != "" {
		t.Fatalf("unchanged apply: %+v", res)
	}
	if _, n := f.current(); n != 0 {
		t.Fatalf("%d writes for an unchanged policy", n)
	}
}

func TestTailscaleChangeAndRestore(t *testing.T) {
	ctx := context.Background()
	want := compiled(t)
	f := newFakeTailscale(t, string(Stamp(want.Tailscale.HuJSON)))
	cut := withoutPodGrant(t, want)
	res, err := Apply(ctx, tsTarget(f), cut, Options{})
	if err != nil || !res.Written {
		t.Fatalf("apply without pod grant: %+v %v", res, err)
	}
	if !strings.Contains(res.Change.Diff, `-		{"src": ["pods", "tag:k8s-node"], "dst": ["pods"], "ip": ["*"]},`) {
		t.Fatalf("diff does not show the removed grant:\n%s", res.Change.Diff)
	}
	if res, err = Apply(ctx, tsTarget(f), want, Options{}); err != nil || !res.Written {
		t.Fatalf("restore: %+v %v", res, err)
	}
	if _, n := f.current(); n != 2 {
		t.Fatalf("writes = %d, want 2", n)
	}
}

func TestTailscaleDriftRefused(t *testing.T) {
	ctx := context.Background()
	want := compiled(t)
	f := newFakeTailscale(t, string(Stamp(want.Tailscale.HuJSON)))
	f.edit(func(s string) string { return strings.Replace(s, `"tcp:22"`, `"tcp:22", "tcp:2222"`, 1) })
	edited, _ := f.current()
	c, err := Diff(ctx, tsTarget(f), want)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(c.Drift, "edited after netd applied it") || !strings.Contains(c.Diff, `-		{"src": ["group:admins"], "dst": ["tag:k8s-node"], "ip": ["tcp:22", "tcp:2222"]},`) {
		t.Fatalf("drift not reported: %q\n%s", c.Drift, c.Diff)
	}
	_, err = Apply(ctx, tsTarget(f), want, Options{})
	if !errors.Is(err, ErrDrift) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("apply over drift: %v", err)
	}
	if live, n := f.current(); live != edited || n != 0 {
		t.Fatal("drifted policy was overwritten")
	}
	if res, err := Apply(ctx, tsTarget(f), want, Options{Force: true}); err != nil || !res.Written {
		t.Fatalf("forced: %+v %v", res, err)
	}
}

func TestTailscaleConcurrentEditIs412(t *testing.T) {
	ctx := context.Background()
	want := compiled(t)
	f := newFakeTailscale(t, string(Stamp(withoutPodGrant(t, want).Tailscale.HuJSON)))
	f.set(func() {
		f.beforeWrite = func() { f.edit(func(s string) string { return s + "// edited in the admin console\n" }) }
	})
	_, err := Apply(ctx, tsTarget(f), want, Options{})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("apply racing an edit: %v, want ErrConflict", err)
	}
	if live, _ := f.current(); !strings.HasSuffix(live, "// edited in the admin console\n") {
		t.Fatal("the concurrent edit was overwritten")
	}
}

func TestTailscaleValidateRejects(t *testing.T) {
	ctx := context.Background()
	want := compiled(t)
	f := newFakeTailscale(t, string(Stamp(withoutPodGrant(t, want).Tailscale.HuJSON)))
	f.set(func() { f.rejectValidate = "tag:aws" })
	_, err := Apply(ctx, tsTarget(f), want, Options{})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "policy rejected: tag:aws") {
		t.Fatalf("server-side validation: %v", err)
	}
	if _, n := f.current(); n != 0 {
		t.Fatal("wrote a policy the server rejected on validate")
	}
	// A policy whose own tests fail is stopped offline.
	p, _ := acldoc.Parse(want.Tailscale.HuJSON)
	p.Grants = p.Grants[:len(p.Grants)-1] // drop the pod grant, keep its tests
	doc, _ := acldoc.Render(p, nil)
	broken := fromDocument(t, doc)
	f.set(func() { f.rejectValidate = "" })
	if _, err := Apply(ctx, tsTarget(f), broken, Options{}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "want accept, got deny") {
		t.Fatalf("failing tests: %v", err)
	}
}

func TestTailscaleOAuth(t *testing.T) {
	ctx := context.Background()
	want := compiled(t)
	f := newFakeTailscale(t, string(Stamp(withoutPodGrant(t, want).Tailscale.HuJSON)))
	tg := Target{Kind: KindTailscale, BaseURL: f.srv.URL, Tailnet: "example.com", OAuthClientID: "cid", OAuthClientSecret: "csecret", HTTPClient: f.srv.Client()}
	if res, err := Apply(ctx, tg, want, Options{}); err != nil || !res.Written {
		t.Fatalf("oauth apply: %+v %v", res, err)
	}
	if tokens, gets := f.counts(); tokens != 1 || gets != 1 {
		t.Fatalf("oauth tokens fetched: %d (want 1, cached over get, validate and write), gets %d", tokens, gets)
	}
	tg.OAuthClientSecret = "wrong"
	if _, err := Diff(ctx, tg, want); err == nil || !strings.Contains(err.Error(), "oauth token") {
		t.Fatalf("bad oauth secret: %v", err)
	}
	tg.OAuthClientSecret, tg.OAuthClientID, tg.APIKey = "", "", "wrong"
	if _, err := Diff(ctx, tg, want); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("bad api key: %v", err)
	}
}

func TestHeadscaleApply(t *testing.T) {
	ctx := context.Background()
	want := compiled(t)
	f := newFakeHeadscale(t)
	tg := Target{Kind: KindHeadscale, BaseURL: f.srv.URL, APIKey: "hskey"}
	c, err := Diff(ctx, tg, want)
	if err != nil || c.Drift != "" || c.Unchanged || c.Live != nil {
		t.Fatalf("diff against an empty headscale: %+v %v", c, err)
	}
	res, err := Apply(ctx, tg, want, Options{})
	if err != nil || !res.Written || res.Version == "" {
		t.Fatalf("first apply: %+v %v", res, err)
	}
	live, _ := f.state()
	if strings.Contains(live, `"grants"`) || !strings.Contains(live, `"tag:k8s-node:179"`) {
		t.Fatalf("headscale got grants, or no acls:\n%s", live)
	}
	if res, err = Apply(ctx, tg, want, Options{}); err != nil || res.Written {
		t.Fatalf("second apply: %+v %v", res, err)
	}
	// A manual edit (headscale policy set) is drift.
	edited := strings.Replace(live, `"tag:k8s-node:179"`, `"tag:k8s-node:1179"`, 1)
	f.edit(edited)
	if _, err = Apply(ctx, tg, want, Options{}); !errors.Is(err, ErrDrift) {
		t.Fatalf("drift: %v", err)
	}
	if p, writes := f.state(); p != edited || writes != 1 {
		t.Fatalf("drifted policy overwritten or extra writes (%d)", writes)
	}
	tg.APIKey = "nope"
	if _, err := Diff(ctx, tg, want); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("bad key: %v", err)
	}
}

func TestTargetFromEnv(t *testing.T) {
	for _, k := range []string{"HEADSCALE_URL", "HEADSCALE_API_KEY", "HEADSCALE_API_KEY_FILE", "TS_API_KEY", "TS_API_KEY_FILE", "TS_OAUTH_ID", "TS_OAUTH_SECRET", "TS_OAUTH_ID_FILE", "TS_OAUTH_SECRET_FILE", "TS_TAILNET", "TS_API_URL", "HEADSCALE_CLI"} {
		t.Setenv(k, "")
	}
	if _, err := TargetFromEnv(); err == nil || !strings.Contains(err.Error(), "no tailnet credentials") {
		t.Fatalf("empty env: %v", err)
	}
	sec := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(sec, []byte("tskey-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TS_API_KEY_FILE", sec)
	t.Setenv("TS_TAILNET", "example.com")
	tg, err := TargetFromEnv()
	if err != nil || tg.Kind != KindTailscale || tg.APIKey != "tskey-from-file" || tg.Tailnet != "example.com" {
		t.Fatalf("api key file: %+v %v", tg, err)
	}
	if s := tg.String(); strings.Contains(s, "tskey") {
		t.Fatalf("String leaks the key: %s", s)
	}
	t.Setenv("HEADSCALE_URL", "http://127.0.0.1:8080")
	if _, err := TargetFromEnv(); err == nil {
		t.Fatal("headscale without key accepted")
	}
	t.Setenv("HEADSCALE_API_KEY", "hskey")
	if tg, err = TargetFromEnv(); err != nil || tg.Kind != KindHeadscale || tg.APIKey != "hskey" {
		t.Fatalf("headscale: %+v %v", tg, err)
	}
	t.Setenv("HEADSCALE_URL", "")
	t.Setenv("TS_API_KEY_FILE", filepath.Join(t.TempDir(), "missing"))
	if _, err := TargetFromEnv(); err == nil || !strings.Contains(err.Error(), "TS_API_KEY_FILE") {
		t.Fatalf("missing key file: %v", err)
	}
}

func TestUnifiedDiff(t *testing.T) {
	a := "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n"
	b := "1\n2\n3\n4\nfive\n6\n7\n8\n9\n10\n11\n12\n13\n"
	for _, c := range []struct{ a, b, want string }{
		{a, b, "--- a\n+++ b\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n@@ -10,3 +10,4 @@\n 10\n 11\n 12\n+13\n"},
		{a, a, ""},
		{"", "x\ny\n", "--- a\n+++ b\n@@ -0,0 +1,2 @@\n+x\n+y\n"},
		{"x\ny\n", "", "--- a\n+++ b\n@@ -1,2 +0,0 @@\n-x\n-y\n"},
		{"x\n", "x", "--- a\n+++ b\n@@ -1 +1 @@\n-x\n+x\n\\ No newline at end of file\n"},
	} {
		got, err := UnifiedDiff("a", "b", c.a, c.b)
		if err != nil || got != c.want {
			t.Errorf("UnifiedDiff(%q, %q) = %q, %v; want %q", c.a, c.b, got, err, c.want)
		}
	}
}

// TestEachTargetItsForm: each kind of server gets its own form of the
// policy, and the offline verdict on that form decides.
func TestEachTargetItsForm(t *testing.T) {
	ctx := context.Background()
	want := compiled(t)
	hs := newFakeHeadscale(t)
	htg := Target{Kind: KindHeadscale, BaseURL: hs.srv.URL, APIKey: "hskey"}
	ts := newFakeTailscale(t, defaultPolicy)

	// A failing assertion of the headscale form stops the headscale write
	// only.
	bad := *want
	bad.Headscale.Tests = slices.Clone(want.Headscale.Tests)
	bad.Headscale.Tests[0].OK, bad.Headscale.Tests[0].Got = false, "deny"
	if _, err := Apply(ctx, htg, &bad, Options{}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), bad.Headscale.Tests[0].Path) {
		t.Fatalf("headscale apply with a failing test: %v", err)
	}
	if _, n := hs.state(); n != 0 {
		t.Fatal("wrote a policy whose tests fail")
	}
	if res, err := Apply(ctx, tsTarget(ts), &bad, Options{Force: true}); err != nil || !res.Written {
		t.Fatalf("tailscale apply (its own form passes): %+v %v", res, err)
	}

	// A policy headscale cannot express is refused for headscale, before
	// anything is read.
	via := fromDocument(t, []byte(`{"grants": [{"src": ["*"], "dst": ["*"], "via": ["tag:exit"]}]}`))
	if _, err := Diff(ctx, htg, via); err == nil || !strings.Contains(err.Error(), "cannot express") {
		t.Fatalf("diff of a via grant on headscale: %v", err)
	}

	// An empty desired state is not a policy to write.
	if _, err := Apply(ctx, htg, &desired.Tailnet{}, Options{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("apply of an empty state: %v", err)
	}
	if _, n := hs.state(); n != 0 {
		t.Fatal("wrote an empty policy")
	}
}
