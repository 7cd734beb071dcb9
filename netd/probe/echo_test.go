package probe

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// echoNet answers echo requests to the addresses in alive after rtt (in
// a synctest bubble: virtual time) and counts the requests per address.
type echoNet struct {
	mu    sync.Mutex
	alive map[netip.Addr]bool
	sent  map[netip.Addr]int
	rtt   time.Duration
}

func (n *echoNet) listen() (PacketConn, error) {
	return newMemConn(func(dst netip.Addr, _ uint16) (time.Duration, bool, error) {
		n.mu.Lock()
		defer n.mu.Unlock()
		n.sent[dst]++
		return n.rtt, n.alive[dst], nil
	}), nil
}

// TestAnswered: the first address that answers is returned as soon as its
// reply arrives; with none answering, the zero address after wait, having
// asked every address once per gap.
func TestAnswered(t *testing.T) {
	overlay := netip.MustParseAddr("100.64.0.3")
	lanAddr := netip.MustParseAddr("192.168.0.13")
	tests := []struct {
		name  string
		alive []netip.Addr
		want  netip.Addr
		took  time.Duration
		asked int // requests to each address
	}{
		{name: "overlay answers", alive: []netip.Addr{overlay}, want: overlay, took: 20 * time.Millisecond, asked: 1},
		{name: "only the LAN answers", alive: []netip.Addr{lanAddr}, want: lanAddr, took: 20 * time.Millisecond, asked: 1},
		{name: "none answers", want: netip.Addr{}, took: 150 * time.Millisecond, asked: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := &echoNet{alive: map[netip.Addr]bool{}, sent: map[netip.Addr]int{}, rtt: 20 * time.Millisecond}
				for _, a := range tt.alive {
					n.alive[a] = true
				}
				start := time.Now()
				got, err := Echo{Listen: n.listen}.Answered(context.Background(), []netip.Addr{overlay, lanAddr}, 150*time.Millisecond, 50*time.Millisecond)
				if err != nil {
					t.Fatal(err)
				}
				if got != tt.want {
					t.Errorf("answered by %v, want %v", got, tt.want)
				}
				if took := time.Since(start); took != tt.took {
					t.Errorf("took %v, want %v", took, tt.took)
				}
				for _, a := range []netip.Addr{overlay, lanAddr} {
					if n.sent[a] != tt.asked {
						t.Errorf("%d requests to %v, want %d", n.sent[a], a, tt.asked)
					}
				}
			})
		})
	}
}

// TestAnsweredLate: a reply slower than the gap still counts; a reply
// that comes after wait does not.
func TestAnsweredLate(t *testing.T) {
	a := netip.MustParseAddr("100.64.0.3")
	for _, tt := range []struct {
		rtt  time.Duration
		want netip.Addr
	}{{rtt: 120 * time.Millisecond, want: a}, {rtt: 200 * time.Millisecond}} {
		synctest.Test(t, func(t *testing.T) {
			n := &echoNet{alive: map[netip.Addr]bool{a: true}, sent: map[netip.Addr]int{}, rtt: tt.rtt}
			got, err := Echo{Listen: n.listen}.Answered(context.Background(), []netip.Addr{a}, 150*time.Millisecond, 50*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("rtt %v: answered by %v, want %v", tt.rtt, got, tt.want)
			}
		})
	}
}

// TestAnsweredNoSocket: a socket that cannot be opened is an error, not
// a silent path.
func TestAnsweredNoSocket(t *testing.T) {
	e := Echo{Listen: func() (PacketConn, error) { return nil, errors.New("operation not permitted") }}
	if _, err := e.Answered(context.Background(), []netip.Addr{netip.MustParseAddr("100.64.0.3")}, time.Second, time.Second); err == nil {
		t.Fatal("no error without a socket")
	}
}
