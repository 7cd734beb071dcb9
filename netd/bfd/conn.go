package bfd

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"syscall"
)

// conn is a Server's packet I/O: the kernel's UDP sockets in netd
// (udpConn), an in-memory wire in the tests of the state machine. Read is
// called from one goroutine, write from many.
type conn interface {
	// read returns the next packet, its source and the TTL it arrived
	// with (-1 if the kernel did not say); after closeRead it fails.
	read(buf []byte) (n int, from netip.Addr, ttl int, err error)
	// write sends b to the BFD port of peer.
	write(b []byte, peer netip.Addr) error
	closeRead()
	closeWrite()
}

// udpConn is RFC 5881 over the kernel: a socket listening on the BFD port
// and one sending from a source port in 49152-65535, both with TTL 255
// and the received TTL reported.
type udpConn struct {
	rx, tx       *net.UDPConn
	rawRx, rawTx syscall.RawConn
	port         uint16 // the peers' BFD port
	oob          []byte
}

// listenUDP opens the sockets of local: listening on listenPort (0: one
// the kernel chooses, in tests), sending to peerPort.
func listenUDP(ctx context.Context, local netip.Addr, listenPort, peerPort int) (*udpConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_TTL, 255); serr != nil {
				return
			}
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_RECVTTL, 1)
		})
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(ctx, "udp4", netip.AddrPortFrom(local, uint16(listenPort)).String())
	if err != nil {
		return nil, fmt.Errorf("listening on bfd port: %w", err)
	}
	var tc net.PacketConn
	for range 64 {
		// RFC 5881 4: source port in 49152-65535.
		src := netip.AddrPortFrom(local, uint16(49152+rand.IntN(16384)))
		if tc, err = lc.ListenPacket(ctx, "udp4", src.String()); err == nil {
			break
		}
	}
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("opening bfd source port: %w", err)
	}
	c := &udpConn{rx: pc.(*net.UDPConn), tx: tc.(*net.UDPConn), port: uint16(peerPort), oob: make([]byte, 128)}
	if c.rawRx, err = c.rx.SyscallConn(); err == nil {
		c.rawTx, err = c.tx.SyscallConn()
	}
	if err != nil {
		pc.Close()
		tc.Close()
		return nil, fmt.Errorf("bfd sockets: %w", err)
	}
	return c, nil
}

func (c *udpConn) read(buf []byte) (int, netip.Addr, int, error) {
	var (
		n, oobn int
		from    netip.Addr
		rerr    error
	)
	// Read calls the func again once the poller says the socket is
	// readable, as long as it returns false (EAGAIN).
	err := c.rawRx.Read(func(fd uintptr) bool {
		n, oobn, from, rerr = rawRecvmsg(fd, buf, c.oob)
		return !isAgain(rerr)
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return 0, netip.Addr{}, 0, err
	}
	ttl, ok := recvTTL(c.oob[:oobn])
	if !ok {
		ttl = -1
	}
	return n, from, ttl, nil
}

func (c *udpConn) write(b []byte, peer netip.Addr) error {
	dst := netip.AddrPortFrom(peer, c.port)
	var werr error
	err := c.rawTx.Write(func(fd uintptr) bool {
		werr = rawSendto(fd, b, dst)
		return !isAgain(werr)
	})
	if err == nil {
		err = werr
	}
	return err
}

func (c *udpConn) closeRead()  { _ = c.rx.Close() }
func (c *udpConn) closeWrite() { _ = c.tx.Close() }

// localPort is the port the listening socket got.
func (c *udpConn) localPort() int { return c.rx.LocalAddr().(*net.UDPAddr).Port }

func recvTTL(oob []byte) (int, bool) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, false
	}
	for _, m := range msgs {
		if m.Header.Level == syscall.IPPROTO_IP && m.Header.Type == syscall.IP_TTL && len(m.Data) >= 4 {
			return int(m.Data[0]) | int(m.Data[1])<<8 | int(m.Data[2])<<16 | int(m.Data[3])<<24, true
		}
	}
	return 0, false
}
