package bfd

// Status: each session's state as `netd status` shows it (PeerState,
// with the timers of both ends).

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// PeerState is a session's state for status output.
type PeerState struct {
	Peer     netip.Addr `json:"peer"`
	State    string     `json:"state"`          // raw session state
	Diag     string     `json:"diag,omitempty"` // why it last went down (RFC 5880 diagnostic)
	Admitted bool       `json:"admitted"`       // up and past the hold-down
	Downs    int        `json:"downs"`          // transitions from up to down since start
	// Changes counts every state change since the session started;
	// LastChange is the last one (zero: none yet).
	Changes    int       `json:"changes"`
	LastChange time.Time `json:"lastChange,omitzero"`
	// EverUp says whether the session has been up since it started.
	EverUp bool `json:"everUp"`
	// LastReceived is when the peer's last packet arrived (zero: never).
	LastReceived time.Time `json:"lastReceived,omitzero"`
	// Local are this end's timers, Remote the peer's (from its last
	// packet; zero if none arrived).
	Local  Timers `json:"local"`
	Remote Timers `json:"remote"`
	// Warning says why a session that never came up did not (e.g. no
	// packets from the peer: a tailnet policy or firewall that drops UDP
	// 3784), once Config.WarnAfter passed; empty otherwise.
	Warning string `json:"warning,omitempty"`
}

// Timers are one end's BFD timers: how often it sends (DesiredMinTx), how
// often it accepts packets (RequiredMinRx), and its detect multiplier.
type Timers struct {
	DesiredMinTx  Duration `json:"desiredMinTx"`
	RequiredMinRx Duration `json:"requiredMinRx"`
	Multiplier    uint8    `json:"multiplier"`
}

// Duration is a time.Duration written in JSON as its string ("100ms").
type Duration time.Duration

// MarshalJSON writes d as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("bfd duration: %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("bfd duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) String() string { return time.Duration(d).String() }

// States returns every session's state, sorted by peer; a peer whose
// session has not started yet (Run has not opened the sockets) is down.
func (s *Server) States() []PeerState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PeerState, 0, len(s.sessions))
	for p, rt := range s.sessions {
		in := rt.s.snapshot()
		ps := PeerState{
			Peer: p, State: rt.state.String(), Admitted: rt.admitted, Downs: rt.total,
			Changes: in.changes, LastChange: in.lastChange, EverUp: in.everUp, LastReceived: in.lastRx,
			Local:   Timers{DesiredMinTx: Duration(in.localTx), RequiredMinRx: Duration(s.cfg.RxInterval), Multiplier: s.cfg.Multiplier},
			Warning: in.warning,
		}
		if in.diag != diagNone {
			ps.Diag = diagString(in.diag)
		}
		if !in.lastRx.IsZero() {
			ps.Remote = Timers{DesiredMinTx: Duration(in.remoteTx), RequiredMinRx: Duration(in.remoteRx), Multiplier: in.remoteMult}
		}
		out = append(out, ps)
	}
	for _, p := range s.want {
		if _, ok := s.sessions[p]; !ok { // not started yet (Run opens the sockets)
			out = append(out, PeerState{Peer: p, State: Down.String(),
				Local: Timers{DesiredMinTx: Duration(slowTx), RequiredMinRx: Duration(s.cfg.RxInterval), Multiplier: s.cfg.Multiplier}})
		}
	}
	slices.SortFunc(out, func(a, b PeerState) int { return a.Peer.Compare(b.Peer) })
	return out
}
