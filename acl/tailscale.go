package acl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	// The v1 client is deprecated, but it is the one with the HuJSON policy
	// calls (ACLHuJSON/SetACLHuJSON with ETag); its struct form, like v2's,
	// drops grants and autoApprovers.
	"tailscale.com/client/tailscale" //nolint:staticcheck // SA1019: see above

	"github.com/ducksnest/netd/policy/desired"
)

func init() {
	// The v1 client is "unstable" but is the one pinned with the binaries
	// (v1.82.5); its HuJSON calls keep grants and autoApprovers intact.
	tailscale.I_Acknowledge_This_API_Is_Unstable = true
}

// tsBackend talks to Tailscale's API v2 policy endpoints.
type tsBackend struct {
	c *tailscale.Client //nolint:staticcheck // SA1019: the HuJSON policy calls
}

func newTailscale(t Target) (*tsBackend, error) {
	hc := t.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	var auth tailscale.AuthMethod
	switch {
	case t.APIKey != "":
		auth = tailscale.APIKey(t.APIKey)
	case t.OAuthClientID != "" && t.OAuthClientSecret != "":
		base := hc.Transport
		if base == nil {
			base = http.DefaultTransport
		}
		hc = &http.Client{Timeout: hc.Timeout, Transport: &oauthTransport{
			base: base, tokenURL: strings.TrimRight(baseOr(t.BaseURL), "/") + "/api/v2/oauth/token",
			id: t.OAuthClientID, secret: t.OAuthClientSecret,
		}}
	default:
		return nil, errors.New("tailscale target has no API key and no OAuth client credentials")
	}
	tailnetName := t.Tailnet
	if tailnetName == "" {
		tailnetName = "-"
	}
	c := tailscale.NewClient(tailnetName, auth) //nolint:staticcheck // SA1019: the HuJSON policy calls
	c.BaseURL = t.BaseURL
	c.HTTPClient = hc
	c.UserAgent = "netd-acl"
	return &tsBackend{c: c}, nil
}

func baseOr(u string) string {
	if u == "" {
		return "https://api.tailscale.com"
	}
	return u
}

func (b *tsBackend) name() string {
	return "tailscale tailnet " + b.c.Tailnet() + " at " + baseOr(b.c.BaseURL)
}

func (b *tsBackend) document(t *desired.Tailnet) *desired.TailnetDocument { return &t.Tailscale }

func (b *tsBackend) get(ctx context.Context) ([]byte, string, error) {
	a, err := b.c.ACLHuJSON(ctx)
	if err != nil {
		return nil, "", err
	}
	return []byte(a.ACL), a.ETag, nil
}

// validate posts the whole policy to /acl/validate, as gitops-pusher does:
// 200 with an empty body (or no message and no errors in data) means
// valid, tests included; a message, or errors in data, is a rejection,
// and so is a 400 (a document it cannot parse). Warnings in data do not
// reject.
func (b *tsBackend) validate(ctx context.Context, doc []byte) (Validation, error) {
	v := Validation{By: "tailscale /acl/validate"}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.c.BuildTailnetURL("acl", "validate"), bytes.NewReader(doc))
	if err != nil {
		return v, err
	}
	req.Header.Set("Content-Type", "application/hujson")
	resp, err := b.c.Do(req)
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return v, fmt.Errorf("reading validate response: %w", err)
	}
	var te tailscale.ACLTestError
	switch {
	case resp.StatusCode == http.StatusBadRequest:
		v.Checked, v.Message = true, string(bytes.TrimSpace(body))
		if json.Unmarshal(body, &te) == nil && te.Message != "" {
			v.Message = te.Message + testErrors(te.Data)
		}
		return v, nil
	case resp.StatusCode != http.StatusOK:
		return v, fmt.Errorf("validate returned %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	v.Checked, v.Valid = true, true
	if len(bytes.TrimSpace(body)) == 0 {
		return v, nil
	}
	if err := json.Unmarshal(body, &te); err != nil {
		return v, fmt.Errorf("decoding validate response: %w", err)
	}
	failed := false
	for _, d := range te.Data {
		failed = failed || len(d.Errors) > 0
		for _, w := range d.Warnings {
			v.Warnings = append(v.Warnings, prefixed(d.User, w))
		}
	}
	if te.Message != "" || failed {
		v.Valid, v.Message = false, strings.TrimSpace(te.Message+testErrors(te.Data))
	}
	return v, nil
}

// testErrors lists the failed tests of a validate answer.
func testErrors(data []tailscale.ACLTestFailureSummary) string {
	var out []string
	for _, d := range data {
		for _, e := range d.Errors {
			out = append(out, prefixed(d.User, e))
		}
	}
	if len(out) == 0 {
		return ""
	}
	return " (" + strings.Join(out, "; ") + ")"
}

func prefixed(src, msg string) string {
	if src == "" {
		return msg
	}
	return "test from " + src + ": " + msg
}

func (b *tsBackend) put(ctx context.Context, doc []byte, ifMatch string) (string, error) {
	// avoidCollisions with an empty ETag would send "If-Match: " (no
	// policy yet): Tailscale always has one, so treat it as a conflict.
	if ifMatch == "" {
		return "", fmt.Errorf("%w: the live policy had no ETag", ErrConflict)
	}
	res, err := b.c.SetACLHuJSON(ctx, tailscale.ACLHuJSON{ACL: string(doc), ETag: ifMatch}, true)
	if err != nil {
		var te tailscale.ACLTestError
		if errors.As(err, &te) && te.Status == http.StatusPreconditionFailed {
			return "", fmt.Errorf("%w (If-Match %s): %w", ErrConflict, ifMatch, err)
		}
		if errors.As(err, &te) && te.Status == http.StatusBadRequest {
			return "", fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		return "", err
	}
	return res.ETag, nil
}

// oauthTransport gets and caches an access token with the OAuth client
// credentials grant and sends it as a bearer token.
type oauthTransport struct {
	base       http.RoundTripper
	tokenURL   string
	id, secret string
	mu         sync.Mutex
	token      string
	expires    time.Time
}

func (o *oauthTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	tok, err := o.get(r.Context())
	if err != nil {
		return nil, err
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	return o.base.RoundTrip(r)
}

func (o *oauthTransport) get(ctx context.Context) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.token != "" && time.Until(o.expires) > time.Minute {
		return o.token, nil
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {o.id}, "client_secret": {o.secret}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := o.base.RoundTrip(req)
	if err != nil {
		return "", fmt.Errorf("getting oauth token: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return "", fmt.Errorf("getting oauth token: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	var t struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&t); err != nil {
		return "", fmt.Errorf("decoding oauth token: %w", err)
	}
	if t.AccessToken == "" {
		return "", errors.New("oauth token response has no access_token")
	}
	o.token, o.expires = t.AccessToken, time.Now().Add(time.Duration(t.ExpiresIn)*time.Second)
	return o.token, nil
}

// routes lists the tailnet's devices with all fields: advertisedRoutes
// and enabledRoutes (the approved ones).
func (b *tsBackend) routes(ctx context.Context) ([]NodeRoutes, error) {
	devs, err := b.c.Devices(ctx, tailscale.DeviceAllFields)
	if err != nil {
		return nil, fmt.Errorf("listing tailscale devices: %w", err)
	}
	nodes := make([]NodeRoutes, 0, len(devs))
	for _, d := range devs {
		nodes = append(nodes, NodeRoutes{Name: d.Hostname, Addrs: parseAddrs(d.Addresses),
			Advertised: parsePrefixes(d.AdvertisedRoutes), Approved: parsePrefixes(d.EnabledRoutes)})
	}
	return nodes, nil
}
