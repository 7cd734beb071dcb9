package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// EchoServers are TCP echo listeners, one per pod, opened inside the pods'
// namespaces by this process.
type EchoServers struct {
	addrs map[netip.Addr]netip.AddrPort
	lns   []net.Listener
	wg    sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]bool // open connections, closed by Close
	closed bool
}

// StartEcho opens an echo listener in every pod.
func StartEcho(pods []Pod) (*EchoServers, error) {
	s := &EchoServers{addrs: map[netip.Addr]netip.AddrPort{}, conns: map[net.Conn]bool{}}
	for _, p := range pods {
		var ln net.Listener
		err := InNS(p.NS, func() error {
			var err error
			ln, err = net.Listen("tcp4", netip.AddrPortFrom(p.Addr, 0).String())
			return err
		})
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("listening in %s: %w", p.NS, err)
		}
		s.lns = append(s.lns, ln)
		s.addrs[p.Addr] = ln.Addr().(*net.TCPAddr).AddrPort()
		s.wg.Add(1)
		go s.serve(ln)
	}
	return s, nil
}

func (s *EchoServers) serve(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
			_, _ = io.Copy(c, c)
		}()
	}
}

// Addr is the echo address of the pod with address a.
func (s *EchoServers) Addr(a netip.Addr) (netip.AddrPort, bool) {
	ap, ok := s.addrs[a]
	return ap, ok
}

// Close stops every listener, closes the connections still open (a
// client whose packets a policy or a fault now drops never ends its own)
// and waits for their handlers.
func (s *EchoServers) Close() {
	for _, ln := range s.lns {
		_ = ln.Close()
	}
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// TCPEcho connects from inside the source pod to dst, sends payload, half
// closes and checks that exactly payload comes back.
func TCPEcho(ctx context.Context, src Pod, dst netip.AddrPort, payload []byte, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	var c net.Conn
	err := InNS(src.NS, func() error {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src.Addr, 0))}
		var err error
		c, err = d.DialContext(ctx, "tcp4", dst.String())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("connecting %s -> %s: %w", src.Addr, dst, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	got, rerr := io.ReadAll(c)
	if err := errors.Join(<-werr, rerr); err != nil {
		return 0, fmt.Errorf("echo %s -> %s after %d bytes: %w", src.Addr, dst, len(got), err)
	}
	if !bytes.Equal(got, payload) {
		return 0, fmt.Errorf("echo %s -> %s: sent %d bytes, got %d different bytes back", src.Addr, dst, len(payload), len(got))
	}
	return time.Since(start), nil
}
