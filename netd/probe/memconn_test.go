package probe

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// memConn is an in-memory ICMP socket for the tests in a testing/synctest
// bubble: an echo request written to it is answered (in virtual time) as
// answer says.
type memConn struct {
	// answer says whether the request to dst with seq is answered, and
	// after how long; an error fails the write (no route).
	answer func(dst netip.Addr, seq uint16) (rtt time.Duration, ok bool, err error)
	in     chan reply
	done   chan struct{}
	once   sync.Once
}

// reply is a message to be read, and where it came from.
type reply struct {
	b    []byte
	from net.Addr
}

func newMemConn(answer func(dst netip.Addr, seq uint16) (time.Duration, bool, error)) *memConn {
	return &memConn{answer: answer, in: make(chan reply, 64), done: make(chan struct{})}
}

func (c *memConn) WriteTo(b []byte, dst net.Addr) (int, error) {
	m, err := icmp.ParseMessage(protocolICMP, b)
	if err != nil || m.Type != ipv4.ICMPTypeEcho {
		return 0, errors.New("not an echo request")
	}
	a, _ := netip.AddrFromSlice(dst.(*net.IPAddr).IP)
	rtt, ok, err := c.answer(a, uint16(m.Body.(*icmp.Echo).Seq))
	if err != nil {
		return 0, err
	}
	if !ok {
		return len(b), nil
	}
	rb, err := (&icmp.Message{Type: ipv4.ICMPTypeEchoReply, Body: m.Body}).Marshal(nil)
	if err != nil {
		return 0, err
	}
	time.AfterFunc(rtt, func() {
		select {
		case c.in <- reply{rb, dst}:
		case <-c.done:
		}
	})
	return len(b), nil
}

func (c *memConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case r := <-c.in:
		return copy(b, r.b), r.from, nil
	case <-c.done:
		return 0, nil, net.ErrClosed
	}
}

func (c *memConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return nil
}
