// Package acltest is a fake headscale policy and node API for tests of the
// tailnet policy writers (package acl's callers): it behaves as headscale
// 0.26 does for the calls they make.
package acltest

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

// Headscale serves headscale 0.26's /api/v1/policy (database mode: GET
// fails with "acl policy not found" until a policy is set; PUT parses and
// stores the policy verbatim with a new updatedAt) and /api/v1/node (the
// nodes' addresses and routes), with a bearer API key, and counts the
// requests.
type Headscale struct {
	// URL is the server's base URL; the API key is APIKey.
	URL     string
	srv     *httptest.Server
	mu      sync.Mutex
	policy  *string
	version int
	writes  int
	calls   int
	nodes   []Node
}

// Node is a tailnet node as headscale lists it.
type Node struct {
	GivenName       string   `json:"givenName"`
	IPAddresses     []string `json:"ipAddresses"`
	ApprovedRoutes  []string `json:"approvedRoutes"`
	AvailableRoutes []string `json:"availableRoutes"`
	SubnetRoutes    []string `json:"subnetRoutes"`
}

// APIKey is the key the fake accepts.
const APIKey = "hskey"

// NewHeadscale starts a fake headscale, closed when t ends.
func NewHeadscale(t testing.TB) *Headscale {
	f := &Headscale{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+APIKey {
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
	f.URL = f.srv.URL
	t.Cleanup(f.srv.Close)
	return f
}

// State returns the stored policy, the number of writes and of requests.
func (f *Headscale) State() (policy string, writes, calls int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.policy != nil {
		policy = *f.policy
	}
	return policy, f.writes, f.calls
}

// Edit replaces the stored policy as `headscale policy set` would.
func (f *Headscale) Edit(fn func(string) string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := fn(*f.policy)
	f.policy = &p
	f.version++
}

// SetNodes replaces the node list.
func (f *Headscale) SetNodes(ns []Node) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes = ns
}
