package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// PingStream sends ICMP echo requests at a fixed rate from a namespace and
// counts the replies, like "ping -i": what a fault test watches across a
// restart.
type PingStream struct {
	Src, Dst netip.Addr
	fd       int
	id       uint16
	stop     chan struct{}
	done     sync.WaitGroup

	mu      sync.Mutex
	sent    int
	replied map[uint16]bool
}

// StartPingStream starts sending one echo request every interval from
// src (inside ns) to dst.
func StartPingStream(ns string, src, dst netip.Addr, interval time.Duration) (*PingStream, error) {
	var fd int
	err := InNS(ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		if err != nil {
			return fmt.Errorf("opening raw icmp socket: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4()}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("binding %s: %w", src, err)
	}
	// A receive timeout lets the reader notice Stop.
	tv := unix.Timeval{Usec: 100000}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("setting receive timeout: %w", err)
	}
	s := &PingStream{Src: src, Dst: dst, fd: fd, id: uint16(rand.IntN(1 << 16)), stop: make(chan struct{}), replied: map[uint16]bool{}}
	s.done.Add(2)
	go s.send(interval)
	go s.receive()
	return s, nil
}

func (s *PingStream) send(interval time.Duration) {
	defer s.done.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	to := &unix.SockaddrInet4{Addr: s.Dst.As4()}
	for seq := uint16(1); ; seq++ {
		s.mu.Lock()
		s.sent++
		s.mu.Unlock()
		// A send error (no route) is a lost packet.
		_ = unix.Sendto(s.fd, echoRequest(s.id, seq, 64), 0, to)
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

func (s *PingStream) receive() {
	defer s.done.Done()
	buf := make([]byte, 1500)
	stopAt := time.Time{}
	for {
		select {
		case <-s.stop:
			if stopAt.IsZero() {
				stopAt = time.Now()
			}
		default:
		}
		// After Stop, wait up to 1s for replies still in flight.
		if !stopAt.IsZero() && time.Since(stopAt) > time.Second {
			return
		}
		n, _, err := unix.Recvfrom(s.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		p := buf[:n]
		if len(p) < 28 {
			continue
		}
		ihl := int(p[0]&0x0f) * 4
		if len(p) < ihl+8 || p[ihl] != 0 || netip.AddrFrom4([4]byte(p[12:16])) != s.Dst {
			continue
		}
		if binary.BigEndian.Uint16(p[ihl+4:]) != s.id {
			continue
		}
		s.mu.Lock()
		s.replied[binary.BigEndian.Uint16(p[ihl+6:])] = true
		s.mu.Unlock()
	}
}

// Stop stops sending, waits a second for late replies, and returns how
// many requests were sent and the sequence numbers never answered.
func (s *PingStream) Stop() (sent int, lost []uint16) {
	close(s.stop)
	s.done.Wait()
	unix.Close(s.fd)
	s.mu.Lock()
	defer s.mu.Unlock()
	for seq := uint16(1); int(seq) <= s.sent; seq++ {
		if !s.replied[seq] {
			lost = append(lost, seq)
		}
	}
	return s.sent, lost
}
