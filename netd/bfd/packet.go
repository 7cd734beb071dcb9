package bfd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// State is a BFD session state (RFC 5880 4.1).
type State uint8

// Session states.
const (
	AdminDown State = 0
	Down      State = 1
	Init      State = 2
	Up        State = 3
)

func (s State) String() string {
	switch s {
	case AdminDown:
		return "admindown"
	case Down:
		return "down"
	case Init:
		return "init"
	case Up:
		return "up"
	}
	return fmt.Sprintf("state%d", uint8(s))
}

// diagString names a diagnostic code (RFC 5880 4.1).
func diagString(d uint8) string {
	names := []string{
		"no diagnostic", "control detection time expired", "echo function failed", "neighbor signaled session down",
		"forwarding plane reset", "path down", "concatenated path down", "administratively down", "reverse concatenated path down",
	}
	if int(d) < len(names) {
		return names[d]
	}
	return fmt.Sprintf("diagnostic %d", d)
}

// stateNumber is the RFC 5880 number of a state name (State.String).
func stateNumber(name string) State {
	for _, st := range []State{AdminDown, Down, Init, Up} {
		if st.String() == name {
			return st
		}
	}
	return Down
}

// Diagnostic codes (RFC 5880 4.1) netd sets.
const (
	diagNone               = 0
	diagDetectExpired      = 1
	diagNeighborDown       = 3
	diagAdminDown          = 7
	packetLen              = 24
	flagPoll          byte = 0x20
	flagFinal         byte = 0x10
	flagCPI           byte = 0x08
	flagAuth          byte = 0x04
	flagDemand        byte = 0x02
	flagMultipt       byte = 0x01
)

// packet is a BFD Control packet without authentication.
type packet struct {
	diag          uint8
	state         State
	poll, final   bool
	detectMult    uint8
	myDiscr       uint32
	yourDiscr     uint32
	desiredMinTx  time.Duration
	requiredMinRx time.Duration
}

func micros(d time.Duration) uint32 { return uint32(d / time.Microsecond) }

func (p packet) marshal() []byte {
	b := make([]byte, packetLen)
	b[0] = 1<<5 | p.diag&0x1f
	b[1] = byte(p.state) << 6
	if p.poll {
		b[1] |= flagPoll
	}
	if p.final {
		b[1] |= flagFinal
	}
	b[2] = p.detectMult
	b[3] = packetLen
	binary.BigEndian.PutUint32(b[4:], p.myDiscr)
	binary.BigEndian.PutUint32(b[8:], p.yourDiscr)
	binary.BigEndian.PutUint32(b[12:], micros(p.desiredMinTx))
	binary.BigEndian.PutUint32(b[16:], micros(p.requiredMinRx))
	// Required Min Echo RX Interval: 0, netd does not do the echo function.
	return b
}

var errBadPacket = errors.New("bad bfd control packet")

// parse checks a received Control packet as RFC 5880 6.8.6 asks (the
// checks that do not need the session) and decodes it.
func parse(b []byte) (packet, error) {
	if len(b) < packetLen {
		return packet{}, fmt.Errorf("%w: %d bytes", errBadPacket, len(b))
	}
	if v := b[0] >> 5; v != 1 {
		return packet{}, fmt.Errorf("%w: version %d", errBadPacket, v)
	}
	if l := int(b[3]); l < packetLen || l > len(b) {
		return packet{}, fmt.Errorf("%w: length field %d", errBadPacket, l)
	}
	if b[1]&flagAuth != 0 {
		return packet{}, fmt.Errorf("%w: authentication is not supported", errBadPacket)
	}
	if b[1]&flagMultipt != 0 {
		return packet{}, fmt.Errorf("%w: multipoint bit set", errBadPacket)
	}
	p := packet{
		diag:          b[0] & 0x1f,
		state:         State(b[1] >> 6),
		poll:          b[1]&flagPoll != 0,
		final:         b[1]&flagFinal != 0,
		detectMult:    b[2],
		myDiscr:       binary.BigEndian.Uint32(b[4:]),
		yourDiscr:     binary.BigEndian.Uint32(b[8:]),
		desiredMinTx:  time.Duration(binary.BigEndian.Uint32(b[12:])) * time.Microsecond,
		requiredMinRx: time.Duration(binary.BigEndian.Uint32(b[16:])) * time.Microsecond,
	}
	if p.detectMult == 0 {
		return packet{}, fmt.Errorf("%w: detect multiplier 0", errBadPacket)
	}
	if p.myDiscr == 0 {
		return packet{}, fmt.Errorf("%w: my discriminator 0", errBadPacket)
	}
	if p.yourDiscr == 0 && p.state != Down && p.state != AdminDown {
		return packet{}, fmt.Errorf("%w: your discriminator 0 in state %v", errBadPacket, p.state)
	}
	return p, nil
}
