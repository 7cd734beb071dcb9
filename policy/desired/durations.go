package desired

import (
	"encoding/json"
	"fmt"
	"time"
)

// The session timers are written as Go duration strings ("9s") in JSON and
// YAML renderings, so that `netd policy render --node` reads like the
// policy file and not like nanosecond counts.

type timersJSON struct {
	HoldTime     string `json:"holdTime"`
	Keepalive    string `json:"keepalive"`
	ConnectRetry string `json:"connectRetry"`
}

// MarshalJSON writes durations as strings.
func (t Timers) MarshalJSON() ([]byte, error) {
	return json.Marshal(timersJSON{t.HoldTime.String(), t.Keepalive.String(), t.ConnectRetry.String()})
}

// UnmarshalJSON reads durations written by MarshalJSON.
func (t *Timers) UnmarshalJSON(b []byte) error {
	var j timersJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	var err error
	if t.HoldTime, err = parseDuration(j.HoldTime); err != nil {
		return err
	}
	if t.Keepalive, err = parseDuration(j.Keepalive); err != nil {
		return err
	}
	t.ConnectRetry, err = parseDuration(j.ConnectRetry)
	return err
}

type grJSON struct {
	Enabled       bool   `json:"enabled"`
	RestartTime   string `json:"restartTime"`
	StalePathTime string `json:"stalePathTime"`
}

// MarshalJSON writes durations as strings.
func (g GracefulRestart) MarshalJSON() ([]byte, error) {
	return json.Marshal(grJSON{g.Enabled, g.RestartTime.String(), g.StalePathTime.String()})
}

// UnmarshalJSON reads durations written by MarshalJSON.
func (g *GracefulRestart) UnmarshalJSON(b []byte) error {
	var j grJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	g.Enabled = j.Enabled
	var err error
	if g.RestartTime, err = parseDuration(j.RestartTime); err != nil {
		return err
	}
	g.StalePathTime, err = parseDuration(j.StalePathTime)
	return err
}

func parseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("parsing duration %q: %w", s, err)
	}
	return d, nil
}
