package bgptest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/ducksnest/netd/internal/testutil"
)

// Raw is a BGP session driven by hand, for the orderings a GoBGP speaker
// never produces by itself: the test decides when it sends End-of-RIB
// and when its TCP connection drops without a NOTIFICATION. It speaks
// IPv4 unicast with the graceful restart capability (Restart State bit
// unset), answers nothing but KEEPALIVEs, and records the prefixes it is
// sent.
type Raw struct {
	conn net.Conn
	wmu  sync.Mutex // one message at a time on conn

	mu        sync.Mutex
	prefixes  map[netip.Prefix]bool
	err       error
	done      chan struct{}
	closeOnce sync.Once
}

// rawHold is the hold time Raw offers; it sends a KEEPALIVE every third.
const rawHold = 3

// DialRaw opens a session from from to the speaker at to:Port as asn,
// retrying for up to 20 s while the speaker refuses or closes the
// connection (GoBGP does while it holds the peer Idle), and returns once
// both sides have exchanged OPEN and KEEPALIVE. The session is closed in
// t.Cleanup.
func DialRaw(t T, from, to netip.Addr, asn uint32) *Raw {
	t.Helper()
	return DialRawRestart(t, from, to, asn, 120)
}

// DialRawRestart is DialRaw with the graceful restart time the session
// advertises, in seconds.
func DialRawRestart(t T, from, to netip.Addr, asn uint32, restart uint16) *Raw {
	t.Helper()
	var r *Raw
	var last error
	_, err := testutil.Every(100*time.Millisecond).Wait(context.Background(), 20*time.Second, "the speaker to take the session", func() (bool, error) {
		r, last = dialRaw(from, to, asn, restart)
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("raw bgp session %v -> %v: %v", from, to, last)
		return nil
	}
	t.Cleanup(r.Drop)
	return r
}

func dialRaw(from, to netip.Addr, asn uint32, restart uint16) (*Raw, error) {
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0)), Timeout: 2 * time.Second}
	conn, err := d.Dial("tcp", netip.AddrPortFrom(to, Port).String())
	if err != nil {
		return nil, err
	}
	r := &Raw{conn: conn, prefixes: map[netip.Prefix]bool{}, done: make(chan struct{})}
	if err := r.handshake(from, asn, restart); err != nil {
		conn.Close()
		return nil, err
	}
	go r.read()
	go r.keepalive()
	return r, nil
}

func (r *Raw) handshake(id netip.Addr, asn uint32, restart uint16) error {
	caps := []bgp.ParameterCapabilityInterface{
		bgp.NewCapMultiProtocol(bgp.RF_IPv4_UC),
		bgp.NewCapRouteRefresh(),
		bgp.NewCapGracefulRestart(false, true, restart, []*bgp.CapGracefulRestartTuple{bgp.NewCapGracefulRestartTuple(bgp.RF_IPv4_UC, true)}),
		bgp.NewCapFourOctetASNumber(asn),
	}
	as16 := uint16(bgp.AS_TRANS)
	if asn <= 0xffff {
		as16 = uint16(asn)
	}
	open := bgp.NewBGPOpenMessage(as16, rawHold, id.String(), []bgp.OptionParameterInterface{bgp.NewOptionParameterCapability(caps)})
	if err := r.conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	if err := r.send(open); err != nil {
		return err
	}
	for _, want := range []uint8{bgp.BGP_MSG_OPEN, bgp.BGP_MSG_KEEPALIVE} {
		m, err := readMessage(r.conn)
		if err != nil {
			return err
		}
		if m.Header.Type != want {
			return fmt.Errorf("got BGP message type %d, want %d", m.Header.Type, want)
		}
		if want == bgp.BGP_MSG_OPEN {
			if err := r.send(bgp.NewBGPKeepAliveMessage()); err != nil {
				return err
			}
		}
	}
	return r.conn.SetDeadline(time.Time{})
}

func readMessage(c io.Reader) (*bgp.BGPMessage, error) {
	buf := make([]byte, bgp.BGP_HEADER_LENGTH)
	if _, err := io.ReadFull(c, buf); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(buf[16:18]))
	if n < bgp.BGP_HEADER_LENGTH {
		return nil, fmt.Errorf("bad BGP message length %d", n)
	}
	buf = append(buf, make([]byte, n-bgp.BGP_HEADER_LENGTH)...)
	if _, err := io.ReadFull(c, buf[bgp.BGP_HEADER_LENGTH:]); err != nil {
		return nil, err
	}
	return bgp.ParseBGPMessage(buf)
}

func (r *Raw) send(m *bgp.BGPMessage) error {
	b, err := m.Serialize()
	if err != nil {
		return err
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	_, err = r.conn.Write(b)
	return err
}

func (r *Raw) read() {
	for {
		m, err := readMessage(r.conn)
		if err != nil {
			r.close(err)
			return
		}
		switch body := m.Body.(type) {
		case *bgp.BGPNotification:
			r.close(fmt.Errorf("notification %d/%d", body.ErrorCode, body.ErrorSubcode))
			return
		case *bgp.BGPUpdate:
			r.update(body)
		}
	}
}

func (r *Raw) update(u *bgp.BGPUpdate) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range u.WithdrawnRoutes {
		if p, err := netip.ParsePrefix(w.String()); err == nil {
			delete(r.prefixes, p)
		}
	}
	for _, n := range u.NLRI {
		if p, err := netip.ParsePrefix(n.String()); err == nil {
			r.prefixes[p] = true
		}
	}
}

func (r *Raw) keepalive() {
	t := time.NewTicker(time.Second * rawHold / 3)
	defer t.Stop()
	for {
		select {
		case <-r.done:
			return
		case <-t.C:
			if err := r.send(bgp.NewBGPKeepAliveMessage()); err != nil {
				r.close(err)
				return
			}
		}
	}
}

func (r *Raw) close(err error) {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.err = err
		r.mu.Unlock()
		close(r.done)
		r.conn.Close()
	})
}

// SendEOR sends the End-of-RIB marker of IPv4 unicast.
func (r *Raw) SendEOR() error { return r.send(bgp.NewEndOfRib(bgp.RF_IPv4_UC)) }

// Drop closes the TCP connection without a NOTIFICATION, as a process
// killed or a link cut would.
func (r *Raw) Drop() { r.close(errors.New("dropped")) }

// Has reports whether the speaker has sent prefix p (and not withdrawn it).
func (r *Raw) Has(p netip.Prefix) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.prefixes[p]
}

// Err is why the session ended (nil while it is up).
func (r *Raw) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Announce sends an iBGP UPDATE for p with next hop nh.
func (r *Raw) Announce(p netip.Prefix, nh netip.Addr) error {
	attrs := []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP),
		bgp.NewPathAttributeAsPath(nil),
		bgp.NewPathAttributeNextHop(nh.String()),
		bgp.NewPathAttributeLocalPref(100),
	}
	nlri := []*bgp.IPAddrPrefix{bgp.NewIPAddrPrefix(uint8(p.Bits()), p.Addr().String())}
	return r.send(bgp.NewBGPUpdateMessage(nil, attrs, nlri))
}

// Attempt opens a connection from from to the speaker at to:Port, waits
// for the speaker's OPEN (so its session with from is in OpenSent) and
// closes the connection without answering: a session attempt that fails
// before it is established. It reports whether the speaker sent its OPEN
// (false: it refused or closed the connection, as GoBGP does while it
// holds the peer Idle).
func Attempt(from, to netip.Addr) (bool, error) {
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0)), Timeout: 2 * time.Second}
	conn, err := d.Dial("tcp", netip.AddrPortFrom(to, Port).String())
	if err != nil {
		return false, nil //nolint:nilerr // refused: the speaker is not listening for from yet
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(3 * time.Second)); err != nil {
		return false, err
	}
	m, err := readMessage(conn)
	if err != nil {
		return false, nil //nolint:nilerr // closed: the speaker holds from Idle
	}
	return m.Header.Type == bgp.BGP_MSG_OPEN, nil
}
