package acl

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/tailscale/hujson"

	"github.com/ducksnest/netd/policy/acldoc"
)

// fakeTailscale implements Tailscale's API v2 policy endpoints as the real
// server behaves for these calls: GET /acl (?details=1 → JSON with the
// HuJSON as bytes, ETag header = quoted sha256 of the text), POST /acl
// (If-Match must equal the current ETag or 412; the HuJSON is stored
// verbatim; invalid or failing tests → 400 with message/data), POST
// /acl/validate (200; problems in message/data), API key as basic auth or
// an OAuth bearer token from POST /oauth/token.
type fakeTailscale struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	policy string
	writes int
	gets   int
	key    string
	tokens int
	// beforeWrite runs (unlocked) when a POST /acl arrives, to simulate an
	// edit racing with our write.
	beforeWrite    func()
	rejectValidate string
}

func newFakeTailscale(t *testing.T, initial string) *fakeTailscale {
	f := &fakeTailscale{t: t, policy: initial, key: "tskey-api-test"}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v2/oauth/token", f.token)
	mux.HandleFunc("GET /api/v2/tailnet/{tailnet}/acl", f.auth(f.get))
	mux.HandleFunc("POST /api/v2/tailnet/{tailnet}/acl", f.auth(f.post))
	mux.HandleFunc("POST /api/v2/tailnet/{tailnet}/acl/validate", f.auth(f.validate))
	mux.HandleFunc("GET /api/v2/tailnet/{tailnet}/devices", f.auth(f.devices))
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func etagOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return `"` + hex.EncodeToString(h[:]) + `"`
}

func (f *fakeTailscale) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("tailnet") != "-" && r.PathValue("tailnet") != "example.com" {
			http.Error(w, `{"message":"tailnet not found"}`, http.StatusNotFound)
			return
		}
		u, _, ok := r.BasicAuth()
		bearer := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !(ok && u == f.key) && bearer != "oauth-access-token" {
			http.Error(w, `{"message":"API token invalid"}`, http.StatusUnauthorized)
			return
		}
		h(w, r)
	}
}

func (f *fakeTailscale) token(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	if r.Form.Get("grant_type") != "client_credentials" || r.Form.Get("client_id") != "cid" || r.Form.Get("client_secret") != "csecret" {
		http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		return
	}
	f.mu.Lock()
	f.tokens++
	f.mu.Unlock()
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "oauth-access-token", "expires_in": 3600, "token_type": "Bearer"})
}

func (f *fakeTailscale) get(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets++
	w.Header().Set("ETag", etagOf(f.policy))
	if r.URL.Query().Get("details") == "1" {
		_ = json.NewEncoder(w).Encode(struct {
			ACL      []byte   `json:"acl"`
			Warnings []string `json:"warnings"`
		}{ACL: []byte(f.policy)})
		return
	}
	_, _ = io.WriteString(w, f.policy)
}

// check returns what the server would reject in doc: a parse error or
// failing tests.
func check(doc []byte) (msg string, data []map[string]any) {
	if _, err := hujson.Parse(doc); err != nil {
		return "parsing policy: " + err.Error(), nil
	}
	p, err := acldoc.Parse(doc)
	if err != nil {
		return err.Error(), nil
	}
	for _, r := range acldoc.RunTests(&p) {
		if !r.OK {
			data = append(data, map[string]any{"user": r.Src, "errors": []string{r.Dst + ": want " + r.Want + ", got " + r.Got}})
		}
	}
	if len(data) > 0 {
		return "test(s) failed", data
	}
	return "", nil
}

func (f *fakeTailscale) post(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	hook := f.beforeWrite
	f.beforeWrite = nil
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	if im := r.Header.Get("If-Match"); im != "" && im != etagOf(f.policy) {
		w.WriteHeader(http.StatusPreconditionFailed)
		_, _ = io.WriteString(w, `{"message":"precondition failed, invalid old hash"}`)
		return
	}
	if msg, data := check(body); msg != "" {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]any{"message": msg, "data": data})
		return
	}
	f.policy = string(body)
	f.writes++
	w.Header().Set("ETag", etagOf(f.policy))
	_, _ = io.WriteString(w, f.policy)
}

func (f *fakeTailscale) validate(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.Header.Get("Content-Type") != "application/hujson" {
		http.Error(w, `{"message":"want application/hujson"}`, http.StatusUnsupportedMediaType)
		return
	}
	msg, data := check(body)
	f.mu.Lock()
	reject := f.rejectValidate
	f.mu.Unlock()
	if msg == "" && reject != "" && strings.Contains(string(body), reject) {
		msg = "policy rejected: " + reject
	}
	if msg == "" {
		return // 200, empty body
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"message": msg, "data": data})
}

func (f *fakeTailscale) current() (string, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.policy, f.writes
}

// counts returns how many tokens and GETs the server handed out.
func (f *fakeTailscale) counts() (tokens, gets int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tokens, f.gets
}

// set changes a field under the lock.
func (f *fakeTailscale) set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

// edit changes the live policy as an admin-console edit would.
func (f *fakeTailscale) edit(fn func(string) string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.policy = fn(f.policy)
}

// devices lists two devices as Tailscale's API does with ?fields=all
// (advertisedRoutes and enabledRoutes only then).
func (f *fakeTailscale) devices(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("fields") != "all" {
		_, _ = io.WriteString(w, `{"devices":[{"hostname":"firebat","addresses":["100.64.0.1"]},{"hostname":"ultra","addresses":["100.64.0.2"]}]}`)
		return
	}
	_, _ = io.WriteString(w, `{"devices":[
		{"hostname":"firebat","addresses":["100.64.0.1","fd7a:115c:a1e0::1"],"advertisedRoutes":["10.244.1.0/24","192.168.77.0/24"],"enabledRoutes":["10.244.1.0/24"]},
		{"hostname":"ultra","addresses":["100.64.0.2"],"advertisedRoutes":["10.244.2.0/24"],"enabledRoutes":[]}]}`)
}

// fakeHeadscale implements headscale 0.26's /api/v1/policy (database
// mode): GET fails with "acl policy not found" until a policy is set, PUT
// parses the policy (rejecting bad HuJSON with HTTP 500 "setting policy")
// and stores it verbatim with a new updatedAt; bearer API key.
type fakeHeadscale struct {
	srv     *httptest.Server
	mu      sync.Mutex
	policy  *string
	version int
	writes  int
}

func newFakeHeadscale(t *testing.T) *fakeHeadscale {
	f := &fakeHeadscale{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer hskey" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"code":16,"message":"Unauthorized"}`)
			return
		}
		if r.URL.Path != "/api/v1/policy" {
			http.NotFound(w, r)
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		switch r.Method {
		case http.MethodGet:
			if f.policy == nil {
				w.WriteHeader(http.StatusInternalServerError)
				_, _ = io.WriteString(w, `{"code":2,"message":"loading ACL from database: acl policy not found","details":[]}`)
				return
			}
		case http.MethodPut:
			var in struct{ Policy string }
			_ = json.NewDecoder(r.Body).Decode(&in)
			if _, err := hujson.Parse([]byte(in.Policy)); err != nil {
				w.WriteHeader(http.StatusInternalServerError)
				_ = json.NewEncoder(w).Encode(map[string]any{"code": 2, "message": "setting policy: " + err.Error()})
				return
			}
			f.policy = &in.Policy
			f.version++
			f.writes++
		default:
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"policy": *f.policy, "updatedAt": "2026-11-26T13:00:0" + string(rune('0'+f.version)) + "Z"})
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// state returns the stored policy, version and write count.
func (f *fakeHeadscale) state() (policy string, writes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.policy != nil {
		policy = *f.policy
	}
	return policy, f.writes
}

// edit replaces the stored policy as `headscale policy set` would.
func (f *fakeHeadscale) edit(p string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.policy = &p
	f.version++
}
