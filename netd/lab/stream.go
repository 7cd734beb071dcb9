package lab

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/ducksnest/netd/netd/probe"
)

// PingStream sends ICMP echo requests at a fixed rate from a namespace and
// counts the replies, like "ping -i": what a fault test watches across a
// restart.
type PingStream struct {
	Src, Dst netip.Addr
	conn     *net.IPConn
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
	c, err := ListenICMP(context.Background(), ns, src, probe.Socket{})
	if err != nil {
		return nil, err
	}
	s := &PingStream{Src: src, Dst: dst, conn: c, id: uint16(rand.IntN(1 << 16)), stop: make(chan struct{}), replied: map[uint16]bool{}}
	s.done.Add(2)
	go s.send(interval)
	go s.receive()
	return s, nil
}

func (s *PingStream) send(interval time.Duration) {
	defer s.done.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	to := &net.IPAddr{IP: s.Dst.AsSlice()}
	data := make([]byte, 56) // 64-byte ICMP messages, as ping sends
	for seq := uint16(1); ; seq++ {
		s.mu.Lock()
		s.sent++
		s.mu.Unlock()
		// A send error (no route) is a lost packet.
		if req, err := probe.EchoRequest(s.id, seq, data); err == nil {
			_, _ = s.conn.WriteTo(req, to)
		}
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

// receive counts replies until a second after Stop (replies still in
// flight), then returns.
func (s *PingStream) receive() {
	defer s.done.Done()
	go func() {
		<-s.stop
		_ = s.conn.SetReadDeadline(time.Now().Add(time.Second))
	}()
	probe.ReadEchoReplies(s.conn, s.id, func(from netip.Addr, seq uint16, _ []byte) bool {
		if from == s.Dst {
			s.mu.Lock()
			s.replied[seq] = true
			s.mu.Unlock()
		}
		return false
	})
}

// Stop stops sending, waits a second for late replies, and returns how
// many requests were sent and the sequence numbers never answered.
func (s *PingStream) Stop() (sent int, lost []uint16) {
	close(s.stop)
	s.done.Wait()
	_ = s.conn.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for seq := uint16(1); int(seq) <= s.sent; seq++ {
		if !s.replied[seq] {
			lost = append(lost, seq)
		}
	}
	return s.sent, lost
}
