package tailnetsync

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/tailscale/hujson"
)

// fakeHeadscale serves headscale 0.26's /api/v1/policy (database mode: GET
// fails with "acl policy not found" until a policy is set; PUT parses and
// stores the policy verbatim with a new updatedAt) and /api/v1/node (the
// nodes' addresses and routes), with a bearer API key, and counts the
// requests.
type fakeHeadscale struct {
	srv     *httptest.Server
	mu      sync.Mutex
	policy  *string
	version int
	writes  int
	calls   int
	nodes   []fakeNode
}

type fakeNode struct {
	GivenName       string   `json:"givenName"`
	IPAddresses     []string `json:"ipAddresses"`
	ApprovedRoutes  []string `json:"approvedRoutes"`
	AvailableRoutes []string `json:"availableRoutes"`
	SubnetRoutes    []string `json:"subnetRoutes"`
}

func newFakeHeadscale(t *testing.T) *fakeHeadscale {
	f := &fakeHeadscale{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer hskey" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"code":16,"message":"Unauthorized"}`)
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls++
		switch {
		case r.URL.Path == "/api/v1/node" && r.Method == http.MethodGet:
			_ = json.NewEncoder(w).Encode(map[string]any{"nodes": f.nodes})
			return
		case r.URL.Path != "/api/v1/policy":
			http.NotFound(w, r)
			return
		case r.Method == http.MethodGet:
			if f.policy == nil {
				w.WriteHeader(http.StatusInternalServerError)
				_, _ = io.WriteString(w, `{"code":2,"message":"loading ACL from database: acl policy not found","details":[]}`)
				return
			}
		case r.Method == http.MethodPut:
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
		_ = json.NewEncoder(w).Encode(map[string]any{"policy": *f.policy, "updatedAt": fmt.Sprintf("2026-12-05T07:00:%02dZ", f.version)})
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// state returns the stored policy, the number of writes and of requests.
func (f *fakeHeadscale) state() (policy string, writes, calls int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.policy != nil {
		policy = *f.policy
	}
	return policy, f.writes, f.calls
}

// edit replaces the stored policy as `headscale policy set` would.
func (f *fakeHeadscale) edit(fn func(string) string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := fn(*f.policy)
	f.policy = &p
	f.version++
}

func (f *fakeHeadscale) setNodes(ns []fakeNode) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes = ns
}
