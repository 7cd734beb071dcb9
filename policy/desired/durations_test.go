package desired

import (
	"encoding/json"
	"testing"
	"time"
)

func TestDurationsRoundTrip(t *testing.T) {
	in := Speaker{
		Timers:          Timers{HoldTime: 9 * time.Second, Keepalive: 3 * time.Second, ConnectRetry: 2 * time.Second},
		GracefulRestart: GracefulRestart{Enabled: true, RestartTime: 2 * time.Minute, StalePathTime: 5 * time.Minute},
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Speaker
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.Timers != in.Timers || out.GracefulRestart != in.GracefulRestart {
		t.Fatalf("round trip: got %+v %+v from %s", out.Timers, out.GracefulRestart, b)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	if got := m["timers"].(map[string]any)["holdTime"]; got != "9s" {
		t.Errorf("holdTime rendered as %v, want \"9s\"", got)
	}
	if err := json.Unmarshal([]byte(`{"timers":{"holdTime":"soon"}}`), &out); err == nil {
		t.Error("a bad duration must be an error")
	}
}
