package probe

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/ducksnest/netd/internal/testutil"
)

// TestListenICMP opens sockets in a fresh namespace whose loopback
// carries 1300 bytes and pings 127.0.0.1 from them. A plain socket reads
// its own echo request first (a raw socket gets every ICMP message the
// host receives); with EchoRepliesOnly the first it reads is the reply.
// With DFSet a 1400-byte echo is refused (EMSGSIZE, what the doctor's
// path MTU check calls refused locally); with DFClear it goes out in
// fragments and is answered. ReadBuffer is set past net.core.rmem_max.
func TestListenICMP(t *testing.T) {
	testutil.NeedRoot(t, "creates a network namespace and raw sockets")
	ns := fmt.Sprintf("netd-probe-sock-%d", os.Getpid())
	ip(t, "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	ip(t, "-n", ns, "link", "set", "lo", "mtu", "1300", "up")
	lo := netip.MustParseAddr("127.0.0.1")

	listen := func(o Socket) *net.IPConn {
		t.Helper()
		var c *net.IPConn
		err := inNamedNS(ns, func() (err error) {
			c, err = ListenICMP(t.Context(), lo, o)
			return err
		})
		if err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// first sends an echo request of size bytes (the whole IP packet) to
	// 127.0.0.1 on c and returns the type of the first message c reads.
	first := func(c *net.IPConn, size int) (ipv4.ICMPType, error) {
		t.Helper()
		b, err := EchoRequest(0x4242, 1, make([]byte, size-28))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.WriteTo(b, &net.IPAddr{IP: lo.AsSlice()}); err != nil {
			return 0, err
		}
		if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		m, err := icmp.ParseMessage(protocolICMP, buf[:n])
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		return m.Type.(ipv4.ICMPType), nil
	}

	if typ, err := first(listen(Socket{}), 84); err != nil || typ != ipv4.ICMPTypeEcho {
		t.Errorf("plain socket: first read %v (%v), want the echo request", typ, err)
	}
	if typ, err := first(listen(Socket{EchoRepliesOnly: true}), 84); err != nil || typ != ipv4.ICMPTypeEchoReply {
		t.Errorf("EchoRepliesOnly: first read %v (%v), want the echo reply", typ, err)
	}
	if typ, err := first(listen(Socket{DF: DFSet, EchoRepliesOnly: true}), 1400); !errors.Is(err, unix.EMSGSIZE) {
		t.Errorf("DFSet, 1400 bytes on a 1300-byte link: %v (%v), want EMSGSIZE", typ, err)
	}
	if typ, err := first(listen(Socket{DF: DFClear, EchoRepliesOnly: true}), 1400); err != nil || typ != ipv4.ICMPTypeEchoReply {
		t.Errorf("DFClear, 1400 bytes on a 1300-byte link: %v (%v), want the echo reply", typ, err)
	}

	rc, err := listen(Socket{ReadBuffer: 4 << 20}).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got int
	var serr error
	if err := rc.Control(func(fd uintptr) { got, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	if got < 4<<20 { // the kernel reports twice what was set
		t.Errorf("SO_RCVBUF %d, want at least %d", got, 4<<20)
	}
}
