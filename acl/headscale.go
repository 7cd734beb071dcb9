package acl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ducksnest/netd/policy/desired"
)

// hsBackend talks to headscale's REST API (/api/v1/policy) in database
// policy mode. headscale has no ETag: the updatedAt of GET is the version,
// and put re-reads it just before writing (a compare-and-swap with a small
// race window, documented).
type hsBackend struct {
	base, key string
	cli       string // headscale binary for `policy check` ("" = none)
	hc        *http.Client
}

func newHeadscale(t Target) (*hsBackend, error) {
	if t.BaseURL == "" {
		return nil, errors.New("headscale target has no URL")
	}
	if t.APIKey == "" {
		return nil, errors.New("headscale target has no API key")
	}
	hc := t.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &hsBackend{base: strings.TrimRight(t.BaseURL, "/"), key: t.APIKey, cli: t.HeadscaleCLI, hc: hc}, nil
}

func (b *hsBackend) name() string { return "headscale at " + b.base }

func (b *hsBackend) document(t *desired.Tailnet) *desired.TailnetDocument { return &t.Headscale }

type hsPolicy struct {
	Policy    string `json:"policy"`
	UpdatedAt string `json:"updatedAt,omitempty"`
}

func (b *hsBackend) do(ctx context.Context, method string, in any) (hsPolicy, error) {
	var body io.Reader
	if in != nil {
		j, err := json.Marshal(in)
		if err != nil {
			return hsPolicy{}, err
		}
		body = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.base+"/api/v1/policy", body)
	if err != nil {
		return hsPolicy{}, err
	}
	req.Header.Set("Authorization", "Bearer "+b.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.hc.Do(req)
	if err != nil {
		return hsPolicy{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 10<<20))
	if err != nil {
		return hsPolicy{}, fmt.Errorf("reading headscale response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(raw, &e)
		if e.Message == "" {
			e.Message = string(bytes.TrimSpace(raw))
		}
		return hsPolicy{}, &hsError{status: resp.StatusCode, msg: e.Message}
	}
	var out hsPolicy
	if err := json.Unmarshal(raw, &out); err != nil {
		return hsPolicy{}, fmt.Errorf("decoding headscale response: %w", err)
	}
	return out, nil
}

type hsError struct {
	status int
	msg    string
}

func (e *hsError) Error() string { return fmt.Sprintf("headscale: HTTP %d: %s", e.status, e.msg) }

func (b *hsBackend) get(ctx context.Context) ([]byte, string, error) {
	p, err := b.do(ctx, http.MethodGet, nil)
	var he *hsError
	if errors.As(err, &he) && (strings.Contains(he.msg, "acl policy not found") || strings.Contains(he.msg, "record not found")) {
		return nil, "", nil // no policy stored yet (types.ErrPolicyNotFound)
	}
	if err != nil {
		return nil, "", err
	}
	return []byte(p.Policy), p.UpdatedAt, nil
}

// validate runs `headscale policy check` when a headscale binary is
// configured: headscale has no validate endpoint, so this is its own
// parser and policy checks, run here. headscale also checks the policy
// itself on write (and rejects it before storing it). Without a binary
// the policy is not validated, and the Validation says so.
func (b *hsBackend) validate(ctx context.Context, doc []byte) (Validation, error) {
	if b.cli == "" {
		return Validation{Message: "headscale has no validate endpoint and no headscale binary is configured for `headscale policy check` (set HEADSCALE_CLI, or put headscale on PATH)"}, nil
	}
	v := Validation{By: "headscale policy check (" + b.cli + ")"}
	dir, err := os.MkdirTemp("", "netd-acl-")
	if err != nil {
		return v, err
	}
	defer os.RemoveAll(dir)
	f := filepath.Join(dir, "policy.hujson")
	if err := os.WriteFile(f, doc, 0o600); err != nil {
		return v, err
	}
	cmd := exec.CommandContext(ctx, b.cli, "policy", "check", "--file", f)
	cmd.Env = append(os.Environ(), "HEADSCALE_DISABLE_CHECK_UPDATES=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		v.Checked, v.Message = true, fmt.Sprintf("headscale policy check: %v: %s", err, bytes.TrimSpace(out))
	case err != nil:
		return v, fmt.Errorf("running headscale policy check: %w", err)
	default:
		v.Checked, v.Valid = true, true
	}
	return v, nil
}

func (b *hsBackend) put(ctx context.Context, doc []byte, ifMatch string) (string, error) {
	_, cur, err := b.get(ctx)
	if err != nil {
		return "", fmt.Errorf("re-reading before write: %w", err)
	}
	if cur != ifMatch {
		return "", fmt.Errorf("%w: updatedAt %q, read %q", ErrConflict, cur, ifMatch)
	}
	p, err := b.do(ctx, http.MethodPut, hsPolicy{Policy: string(doc)})
	var he *hsError
	if errors.As(err, &he) && he.status < 500 || err != nil && strings.Contains(err.Error(), "setting policy") {
		return "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err != nil {
		return "", err
	}
	return p.UpdatedAt, nil
}

// routes lists the nodes (GET /api/v1/node). headscale 0.26 reports a
// node's announced routes as availableRoutes, the approved ones as
// approvedRoutes, and those both announced and approved (served) as
// subnetRoutes.
func (b *hsBackend) routes(ctx context.Context) ([]NodeRoutes, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.base+"/api/v1/node", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+b.key)
	resp, err := b.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("listing headscale nodes: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("reading headscale nodes: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("listing headscale nodes: %w", &hsError{status: resp.StatusCode, msg: string(bytes.TrimSpace(raw))})
	}
	var out struct {
		Nodes []struct {
			Name            string   `json:"name"`
			GivenName       string   `json:"givenName"`
			IPAddresses     []string `json:"ipAddresses"`
			ApprovedRoutes  []string `json:"approvedRoutes"`
			AvailableRoutes []string `json:"availableRoutes"`
			SubnetRoutes    []string `json:"subnetRoutes"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("decoding headscale nodes: %w", err)
	}
	nodes := make([]NodeRoutes, 0, len(out.Nodes))
	for _, n := range out.Nodes {
		name := n.GivenName
		if name == "" {
			name = n.Name
		}
		nodes = append(nodes, NodeRoutes{Name: name, Addrs: parseAddrs(n.IPAddresses),
			Advertised: parsePrefixes(n.AvailableRoutes), Approved: parsePrefixes(n.ApprovedRoutes, n.SubnetRoutes)})
	}
	return nodes, nil
}
