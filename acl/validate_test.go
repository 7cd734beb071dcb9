package acl

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/policy/acldoc"
)

// TestTailscaleValidateRequest: Validate posts the stamped desired policy
// as HuJSON to /api/v2/tailnet/{tailnet}/acl/validate with the API key,
// and reads each kind of answer Tailscale gives: 200 with an empty body or
// {} (valid), warnings only (valid, warnings kept), a message or failing
// tests in data (rejected, each test named), 400 (a document it cannot
// parse: rejected); any other status means it could not be asked.
func TestTailscaleValidateRequest(t *testing.T) {
	want := compiled(t)
	var mu sync.Mutex
	var status int
	var answer, gotBody, gotPath, gotType, gotAuth, gotMethod string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		gotMethod, gotPath, gotType, gotBody = r.Method, r.URL.Path, r.Header.Get("Content-Type"), string(b)
		user, _, _ := r.BasicAuth()
		gotAuth = user
		w.WriteHeader(status)
		_, _ = io.WriteString(w, answer)
	}))
	defer srv.Close()
	tg := Target{Kind: KindTailscale, BaseURL: srv.URL, Tailnet: "example.com", APIKey: "tskey-api-x", HTTPClient: srv.Client()}
	for _, c := range []struct {
		name         string
		status       int
		answer       string
		valid        bool
		msg, warning string
		err          string
	}{
		{name: "empty", status: 200, answer: "", valid: true},
		{name: "empty object", status: 200, answer: "{}", valid: true},
		{name: "warnings only", status: 200, answer: `{"data":[{"user":"tag:ci","warnings":["autogroup:self is deprecated here"]}]}`,
			valid: true, warning: "test from tag:ci: autogroup:self is deprecated here"},
		{name: "failing test", status: 200,
			answer: `{"message":"test(s) failed","data":[{"user":"tag:ci","errors":["tag:aws:6443 (100.64.0.4:6443): fail: want: Accept, got: Drop"]}]}`,
			msg:    "test(s) failed (test from tag:ci: tag:aws:6443 (100.64.0.4:6443): fail: want: Accept, got: Drop)"},
		{name: "errors in data", status: 200, answer: `{"data":[{"user":"alice@example.com","errors":["x"]}]}`, msg: "(test from alice@example.com: x)"},
		{name: "unparsable", status: 400, answer: `{"message":"line 3, column 5: invalid character"}`, msg: "line 3, column 5: invalid character"},
		{name: "unauthorized", status: 401, answer: `{"message":"API token invalid"}`, err: "401"},
	} {
		t.Run(c.name, func(t *testing.T) {
			mu.Lock()
			status, answer = c.status, c.answer
			mu.Unlock()
			v, err := Validate(context.Background(), tg, want)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !v.Checked || v.Valid != c.valid || v.By != "tailscale /acl/validate" || (c.msg != "" && v.Message != c.msg) {
				t.Errorf("validation %+v, want valid=%v message %q", v, c.valid, c.msg)
			}
			if c.warning != "" && (len(v.Warnings) != 1 || v.Warnings[0] != c.warning) {
				t.Errorf("warnings %q, want %q", v.Warnings, c.warning)
			}
			if err := v.err(); (err != nil) == c.valid || err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("as an apply error: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			body, _ := Unstamp([]byte(gotBody))
			want, _ := Unstamp(want.Tailscale.HuJSON)
			if gotMethod != http.MethodPost || gotPath != "/api/v2/tailnet/example.com/acl/validate" || gotType != "application/hujson" ||
				gotAuth != "tskey-api-x" || string(body) != string(want) || !strings.HasPrefix(gotBody, "// netd-applied sha256:") {
				t.Errorf("request %s %s (%s, key %q), body:\n%.200s", gotMethod, gotPath, gotType, gotAuth, gotBody)
			}
		})
	}
}

// TestHeadscaleValidate runs the real headscale binary (the pinned
// v0.26.1: HEADSCALE, or headscale on PATH): `headscale policy check`
// takes the compiled policy's headscale form and rejects a grant headscale
// 0.26 does not know; without a binary the answer is "not validated".
func TestHeadscaleValidate(t *testing.T) {
	ctx := context.Background()
	bin := os.Getenv("HEADSCALE")
	if bin == "" {
		bin = testutil.NeedBinary(t, "headscale", "set HEADSCALE: eval \"$(bash scripts/tailscale-tools.sh)\"")
	}
	want := compiled(t)
	tg := Target{Kind: KindHeadscale, BaseURL: "http://127.0.0.1:1", APIKey: "unused", HeadscaleCLI: bin}
	v, err := Validate(ctx, tg, want)
	if err != nil || !v.Checked || !v.Valid || !strings.HasPrefix(v.By, "headscale policy check") {
		t.Fatalf("the compiled policy: %+v %v", v, err)
	}
	p, err := acldoc.Parse(want.Tailscale.HuJSON)
	if err != nil {
		t.Fatal(err)
	}
	p.Grants = append(p.Grants, acldoc.Grant{Src: []string{"autogroup:member"}, Dst: []string{"tag:k8s-node"}, IP: []string{"tcp:443"}})
	doc, err := acldoc.Render(p, []string{"a grant headscale 0.26.1 cannot take"})
	if err != nil {
		t.Fatal(err)
	}
	bad := fromDocument(t, doc)
	v, err = Validate(ctx, tg, bad)
	if err != nil || !v.Checked || v.Valid || !strings.Contains(v.Message, "autogroup") {
		t.Fatalf("a policy headscale rejects: %+v %v", v, err)
	}
	tg.HeadscaleCLI = ""
	v, err = Validate(ctx, tg, want)
	if err != nil || v.Checked || !strings.Contains(v.String(), "NOT VALIDATED") || !strings.Contains(v.Message, "HEADSCALE_CLI") {
		t.Fatalf("without a binary: %+v %v", v, err)
	}
	tg.HeadscaleCLI = "/nonexistent/headscale"
	if _, err := Validate(ctx, tg, want); err == nil {
		t.Fatal("a missing binary is an error, not a verdict")
	}
}
