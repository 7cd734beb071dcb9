package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// StatusClient asks a running netd over its unix socket (netd run
// --socket) for its status and metrics: `netd status` and `netd doctor`.
type StatusClient struct {
	Socket string
}

func (c StatusClient) get(ctx context.Context, path string) ([]byte, error) {
	hc := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true, // a client per call: nothing to keep the connection for
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", c.Socket)
		},
	}, Timeout: 10 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://netd"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking netd at %s (is it running?): %w", c.Socket, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("netd answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// Status returns the daemon's status and the JSON it came as.
func (c StatusClient) Status(ctx context.Context) (Status, []byte, error) {
	var st Status
	body, err := c.get(ctx, "/status")
	if err != nil {
		return st, nil, err
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, nil, fmt.Errorf("decoding status: %w", err)
	}
	return st, body, nil
}

// Metrics returns the daemon's metrics in the Prometheus text format.
func (c StatusClient) Metrics(ctx context.Context) ([]byte, error) {
	return c.get(ctx, "/metrics")
}
