package acl

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
)

// Kind is a kind of control server.
type Kind string

// Kinds.
const (
	KindTailscale Kind = "tailscale"
	KindHeadscale Kind = "headscale"
)

// Target says where and how to apply the policy.
type Target struct {
	Kind Kind
	// BaseURL: Tailscale's API ("" = https://api.tailscale.com) or
	// headscale's server URL.
	BaseURL string
	// Tailnet is the Tailscale tailnet name ("" = "-", the key's own).
	Tailnet string
	// APIKey is a Tailscale API key or a headscale API key.
	APIKey string
	// OAuthClientID and OAuthClientSecret are Tailscale OAuth client
	// credentials (scope policy_file), used when APIKey is empty.
	OAuthClientID, OAuthClientSecret string
	// HeadscaleCLI is a headscale binary used for `headscale policy check`
	// before a write ("" = rely on headscale's check on write).
	HeadscaleCLI string
	// HTTPClient overrides the HTTP client (tests).
	HTTPClient *http.Client
}

func (t Target) backend() (backend, error) {
	switch t.Kind {
	case KindTailscale:
		return newTailscale(t)
	case KindHeadscale:
		return newHeadscale(t)
	}
	return nil, fmt.Errorf("unknown tailnet target kind %q (tailscale or headscale)", t.Kind)
}

// String names the target without its secrets.
func (t Target) String() string {
	if t.Kind == KindHeadscale {
		return "headscale at " + t.BaseURL
	}
	return "tailscale tailnet " + def(t.Tailnet, "-") + " at " + baseOr(t.BaseURL)
}

func def(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// ErrNoCredentials is TargetFromEnv's error when the environment holds no
// tailnet credentials at all (as opposed to incomplete or unreadable ones).
var ErrNoCredentials = errors.New("no tailnet credentials: set HEADSCALE_URL+HEADSCALE_API_KEY, TS_API_KEY, or TS_OAUTH_CLIENT_ID+TS_OAUTH_CLIENT_SECRET (or their _FILE forms)")

// TargetFromEnv builds the target from the environment. Every secret X may
// instead be given as X_FILE, a path to a file holding it (systemd
// credentials, CI secrets mounted as files):
//
//	HEADSCALE_URL, HEADSCALE_API_KEY[_FILE], HEADSCALE_CLI  → headscale
//	  (HEADSCALE_CLI: the headscale binary for `headscale policy check`;
//	  default: headscale on PATH, if any)
//	TS_API_KEY[_FILE]                                       → Tailscale, API key
//	TS_OAUTH_ID[_FILE], TS_OAUTH_SECRET[_FILE]              → Tailscale, OAuth client
//	  (or TS_OAUTH_CLIENT_ID[_FILE], TS_OAUTH_CLIENT_SECRET[_FILE])
//	TS_TAILNET (default "-"), TS_API_URL (default api.tailscale.com)
//
// HEADSCALE_URL wins when both kinds are configured.
func TargetFromEnv() (Target, error) {
	get := func(name string) (string, error) {
		if v := os.Getenv(name); v != "" {
			return strings.TrimSpace(v), nil
		}
		if f := os.Getenv(name + "_FILE"); f != "" {
			b, err := os.ReadFile(f)
			if err != nil {
				return "", fmt.Errorf("reading %s_FILE: %w", name, err)
			}
			return strings.TrimSpace(string(b)), nil
		}
		return "", nil
	}
	var errs []error
	must := func(name string) string {
		v, err := get(name)
		if err != nil {
			errs = append(errs, err)
		}
		return v
	}
	if u := os.Getenv("HEADSCALE_URL"); u != "" {
		cli := os.Getenv("HEADSCALE_CLI")
		if cli == "" {
			cli, _ = exec.LookPath("headscale") // none: not validated before a write
		}
		t := Target{Kind: KindHeadscale, BaseURL: u, APIKey: must("HEADSCALE_API_KEY"), HeadscaleCLI: cli}
		if t.APIKey == "" {
			errs = append(errs, errors.New("HEADSCALE_URL is set but HEADSCALE_API_KEY(_FILE) is not"))
		}
		return t, errors.Join(errs...)
	}
	t := Target{Kind: KindTailscale, BaseURL: os.Getenv("TS_API_URL"), Tailnet: os.Getenv("TS_TAILNET"),
		APIKey: must("TS_API_KEY"), OAuthClientID: must("TS_OAUTH_ID"), OAuthClientSecret: must("TS_OAUTH_SECRET")}
	// The names Tailscale's GitHub action and most CI setups use.
	if t.OAuthClientID == "" {
		t.OAuthClientID = must("TS_OAUTH_CLIENT_ID")
	}
	if t.OAuthClientSecret == "" {
		t.OAuthClientSecret = must("TS_OAUTH_CLIENT_SECRET")
	}
	if t.APIKey == "" && (t.OAuthClientID == "" || t.OAuthClientSecret == "") && len(errs) == 0 {
		if t.APIKey == "" && t.OAuthClientID == "" && t.OAuthClientSecret == "" {
			errs = append(errs, ErrNoCredentials)
		} else {
			errs = append(errs, errors.New("incomplete Tailscale OAuth client: set both TS_OAUTH_CLIENT_ID and TS_OAUTH_CLIENT_SECRET (or their _FILE forms)"))
		}
	}
	return t, errors.Join(errs...)
}
