package nl

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// DefaultBatchBytes is how many bytes of route messages go into one sendmsg.
const DefaultBatchBytes = 64 << 10

// ackTruesize is a generous estimate of the receive buffer one ACK takes
// in the kernel (an skb with a 36-byte message).
const ackTruesize = 1024

// batcher writes route messages on a raw NETLINK_ROUTE socket, many per
// sendmsg, each with NLM_F_ACK and its own sequence number, and maps every
// ACK or error back to its operation.
type batcher struct {
	mu       sync.Mutex
	fd       int
	seq      uint32
	maxBytes int
	maxMsgs  int // so that the ACKs of one batch fit in the receive buffer
	buf      []byte
	rbuf     []byte
	idx      []int  // ops index of each message of the batch in flight, by seq-base
	off      []int  // offset of each message in buf
	seen     []bool // whether the answer to each message has come
	// errorsOnly: only the last message of a batch asks for an ACK; the
	// kernel still answers every failed message, in order, before it.
	errorsOnly bool
	dumpHint   map[int]int // capacity for the next dump of a table
}

// openBatcher opens the socket in ns (the current namespace if ns is not
// open).
func openBatcher(ns netns.NsHandle, maxBytes int, errorsOnly bool) (*batcher, error) {
	fd, err := socketAt(ns)
	if err != nil {
		return nil, err
	}
	// Short ACKs (no echo of the request), error strings, big buffers so
	// the ACKs of a whole batch fit.
	for _, o := range []struct{ level, opt, val int }{
		{unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1},
		{unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1},
		{unix.SOL_NETLINK, unix.NETLINK_GET_STRICT_CHK, 1},
		{unix.SOL_SOCKET, unix.SO_SNDBUF, 4 * maxBytes},
		{unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8 << 20},
	} {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.val); err != nil && o.opt != unix.SO_RCVBUFFORCE && o.opt != unix.NETLINK_GET_STRICT_CHK {
			unix.Close(fd)
			return nil, fmt.Errorf("setting netlink socket option %d: %w", o.opt, err)
		}
	}
	// Without CAP_NET_ADMIN the forced size fails: take what rmem_max
	// allows, and send no more messages per batch than ACKs fit in it.
	rcvbuf, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err == nil && rcvbuf < 8<<20 {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
		rcvbuf, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("reading netlink receive buffer size: %w", err)
	}
	tv := unix.Timeval{Sec: 30}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("setting netlink receive timeout: %w", err)
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("setting netlink send timeout: %w", err)
	}
	return &batcher{fd: fd, maxBytes: maxBytes, maxMsgs: max(16, rcvbuf/ackTruesize), rbuf: make([]byte, 64<<10), dumpHint: map[int]int{}, errorsOnly: errorsOnly}, nil
}

// socketAt opens a blocking NETLINK_ROUTE socket inside ns.
func socketAt(ns netns.NsHandle) (int, error) {
	if ns.IsOpen() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			return -1, fmt.Errorf("getting current netns: %w", err)
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			return -1, fmt.Errorf("entering netns: %w", err)
		}
		defer func() {
			// A thread left in the wrong namespace must die with its
			// goroutine: unlock only if we got back.
			if netns.Set(orig) == nil {
				runtime.UnlockOSThread()
			}
		}()
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return -1, fmt.Errorf("opening netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("binding netlink socket: %w", err)
	}
	return fd, nil
}

func (b *batcher) close() error { return unix.Close(b.fd) }

// apply sends ops in batches of at most maxBytes and collects one error per
// op. A failure of the socket itself is reported for every op not yet
// acknowledged.
func (b *batcher) apply(ctx context.Context, ops []Op) []error {
	b.mu.Lock()
	defer b.mu.Unlock()
	errs := make([]error, len(ops))
	for i := 0; i < len(ops); {
		if err := ctx.Err(); err != nil {
			fill(errs[i:], err)
			return errs
		}
		b.buf = b.buf[:0]
		b.idx, b.off = b.idx[:0], b.off[:0]
		base := b.seq + 1
		for ; i < len(ops) && len(b.buf) < b.maxBytes && len(b.idx) < b.maxMsgs; i++ {
			n := len(b.buf)
			var err error
			b.buf, err = appendRouteMsg(b.buf, ops[i], base+uint32(len(b.idx)))
			if err != nil {
				b.buf = b.buf[:n]
				errs[i] = fmt.Errorf("%s %s: %w", ops[i].Kind, ops[i].Route.Dst, err)
				continue
			}
			b.idx = append(b.idx, i)
			b.off = append(b.off, n)
		}
		if len(b.idx) == 0 {
			continue
		}
		b.seq = base + uint32(len(b.idx)) - 1
		if err := b.roundTrip(ops, errs, base); err != nil {
			for _, k := range b.idx {
				if errs[k] == nil || errors.Is(errs[k], errNoAck) { // outcome unknown
					errs[k] = err
				}
			}
			fill(errs[i:], err)
			return errs
		}
	}
	return errs
}

func fill(errs []error, err error) {
	for k := range errs {
		if errs[k] == nil {
			errs[k] = err
		}
	}
}

var errNoAck = errors.New("no ack")

// roundTrip sends the batch in b.buf and reads the answers: one ACK per
// message, or, with errorsOnly, one error per failed message and an ACK
// for the last one.
func (b *batcher) roundTrip(ops []Op, errs []error, base uint32) error {
	last := len(b.idx) - 1
	b.seen = slices.Grow(b.seen[:0], len(b.idx))[:len(b.idx)]
	for k := range b.idx {
		b.seen[k] = false
		errs[b.idx[k]] = errNoAck
		if b.errorsOnly && k != last {
			flags := binary.NativeEndian.Uint16(b.buf[b.off[k]+6:])
			binary.NativeEndian.PutUint16(b.buf[b.off[k]+6:], flags&^unix.NLM_F_ACK)
			errs[b.idx[k]] = nil
		}
	}
	if err := unix.Sendto(b.fd, b.buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sending %d route messages: %w", len(b.idx), err)
	}
	pending := len(b.idx)
	if b.errorsOnly {
		pending = 1
	}
	for pending > 0 {
		n, err := unix.Read(b.fd, b.rbuf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading acks (%d outstanding): %w", pending, err)
		}
		msgs := b.rbuf[:n]
		for len(msgs) >= unix.SizeofNlMsghdr {
			l := int(binary.NativeEndian.Uint32(msgs[0:4]))
			if l < unix.SizeofNlMsghdr || l > len(msgs) {
				return fmt.Errorf("malformed netlink message of length %d", l)
			}
			m := msgs[:l]
			msgs = msgs[min(nlmAlign(l), len(msgs)):]
			typ := binary.NativeEndian.Uint16(m[4:6])
			flags := binary.NativeEndian.Uint16(m[6:8])
			seq := binary.NativeEndian.Uint32(m[8:12])
			d := seq - base // wraps around to a big number for older seqs
			if typ != unix.NLMSG_ERROR || d >= uint32(len(b.idx)) || len(m) < unix.SizeofNlMsghdr+4 || b.seen[d] {
				continue // a stale answer of an earlier, failed batch
			}
			k := int(d)
			b.seen[k] = true
			if !b.errorsOnly || k == last {
				pending--
			}
			i := b.idx[k]
			errno := int32(binary.NativeEndian.Uint32(m[16:20]))
			errs[i] = opError(ops[i], errno, m, flags)
		}
	}
	return nil
}

// opError turns the errno of an ACK into the op's error (nil on success).
func opError(op Op, errno int32, m []byte, flags uint16) error {
	if errno == 0 {
		return nil
	}
	e := unix.Errno(-errno)
	if op.Kind == Delete && e == unix.ESRCH {
		return nil // already gone
	}
	err := error(e)
	if flags&unix.NLM_F_ACK_TLVS != 0 {
		// nlmsgerr: errno, then the request's header (capped), then TLVs.
		off := unix.SizeofNlMsghdr + 4 + unix.SizeofNlMsghdr
		if flags&unix.NLM_F_CAPPED == 0 && len(m) >= off {
			off = unix.SizeofNlMsghdr + 4 + nlmAlign(int(binary.NativeEndian.Uint32(m[20:24])))
		}
		for off+4 <= len(m) {
			al := int(binary.NativeEndian.Uint16(m[off:]))
			at := binary.NativeEndian.Uint16(m[off+2:])
			if al < 4 || off+al > len(m) {
				break
			}
			if at == unix.NLMSGERR_ATTR_MSG {
				err = fmt.Errorf("%w: %s", e, unix.ByteSliceToString(m[off+4:off+al]))
			}
			off += rtaAlign(al)
		}
	}
	return fmt.Errorf("%s %s: %w", op.Kind, op.Route.Dst, err)
}

func nlmAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }
func rtaAlign(n int) int { return (n + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1) }
