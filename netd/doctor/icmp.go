package doctor

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/ducksnest/netd/netd/probe"
)

// ICMPProber is the real Prober: raw ICMP sockets in the current network
// namespace (needs CAP_NET_RAW), bound to the source address, DF set.
type ICMPProber struct{}

var _ Prober = ICMPProber{}

// exchange sends msg to dst and hands every ICMP message that arrives to
// match until it returns true or the timeout passes.
func exchange(ctx context.Context, src, dst netip.Addr, msg []byte, timeout time.Duration, match func(raw []byte, from netip.Addr, at time.Time) bool) (sent time.Time, err error) {
	c, err := probe.ListenICMP(ctx, src, probe.Socket{DF: probe.DFSet})
	if err != nil {
		return sent, fmt.Errorf("opening a raw ICMP socket on %s: %w", src, err)
	}
	defer c.Close()
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.SetDeadline(deadline); err != nil {
		return sent, err
	}
	sent = time.Now()
	if _, err := c.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return sent, err
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		at := time.Now()
		if isTimeout(err) {
			return sent, nil
		}
		if err != nil {
			return sent, fmt.Errorf("reading ICMP: %w", err)
		}
		fa, _ := netip.AddrFromSlice(from.(*net.IPAddr).IP)
		if match(buf[:n], fa.Unmap(), at) {
			return sent, nil
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Ping implements Prober.
func (ICMPProber) Ping(ctx context.Context, src, dst netip.Addr, size int, timeout time.Duration) (PingResult, error) {
	if size < 28 {
		return PingResult{}, fmt.Errorf("ping size %d below 28", size)
	}
	id, seq := uint16(rand.IntN(1<<16)), uint16(rand.IntN(1<<16))
	msg, err := probe.EchoRequest(id, seq, make([]byte, size-28))
	if err != nil {
		return PingResult{}, err
	}
	var (
		r       PingResult
		replyAt time.Time
	)
	sent, err := exchange(ctx, src, dst, msg, timeout, func(raw []byte, from netip.Addr, at time.Time) bool {
		res, ok := classifyEcho(raw, from, dst, id, seq)
		if ok {
			r, replyAt = res, at
		}
		return ok
	})
	if errors.Is(err, unix.EMSGSIZE) {
		return PingResult{LocalTooBig: true}, nil
	}
	if err != nil {
		return PingResult{}, err
	}
	if r.Reply {
		r.RTT = replyAt.Sub(sent)
	}
	return r, nil
}

// classifyEcho says what an ICMP message received after our echo request
// (id, seq) to dst means for it; ok is false if it is about something else.
func classifyEcho(raw []byte, from, dst netip.Addr, id, seq uint16) (r PingResult, ok bool) {
	a, ok := probe.AnswerTo(raw, from, dst, id)
	switch {
	case !ok || a.Reply && a.Seq != seq:
		return r, false
	case a.Reply:
		return PingResult{Reply: true}, true
	case a.FragNeeded():
		return PingResult{FragNeeded: true, MTU: a.MTU, From: from}, true
	case a.Type == int(ipv4.ICMPTypeDestinationUnreachable):
		return PingResult{From: from, Other: fmt.Sprintf("destination unreachable (code %d) from %s", a.Code, from)}, true
	}
	return PingResult{Other: "time exceeded from " + from.String()}, true
}

const dayMillis = 24 * 60 * 60 * 1000

// msOfDay is t in milliseconds since midnight UTC, as ICMP timestamps
// count (fractional).
func msOfDay(t time.Time) float64 {
	t = t.UTC()
	mid := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return float64(t.Sub(mid)) / float64(time.Millisecond)
}

// Timestamp implements Prober.
func (ICMPProber) Timestamp(ctx context.Context, src, dst netip.Addr, timeout time.Duration) (TimestampResult, error) {
	id, seq := uint16(rand.IntN(1<<16)), uint16(rand.IntN(1<<16))
	body := make([]byte, 16)
	binary.BigEndian.PutUint16(body[0:], id)
	binary.BigEndian.PutUint16(body[2:], seq)
	t1 := time.Now()
	binary.BigEndian.PutUint32(body[4:], uint32(msOfDay(t1)))
	msg, err := (&icmp.Message{Type: ipv4.ICMPTypeTimestamp, Body: &icmp.RawBody{Data: body}}).Marshal(nil)
	if err != nil {
		return TimestampResult{}, err
	}
	var r TimestampResult
	_, err = exchange(ctx, src, dst, msg, timeout, func(raw []byte, from netip.Addr, at time.Time) bool {
		if len(raw) < 20 || raw[0] != byte(ipv4.ICMPTypeTimestampReply) || from != dst ||
			binary.BigEndian.Uint16(raw[4:]) != id || binary.BigEndian.Uint16(raw[6:]) != seq {
			return false
		}
		recv, xmit := binary.BigEndian.Uint32(raw[12:]), binary.BigEndian.Uint32(raw[16:])
		if recv&(1<<31) != 0 || xmit&(1<<31) != 0 {
			return false // "not in milliseconds since midnight UT" (RFC 792)
		}
		r = TimestampFromReply(t1, at, recv, xmit)
		return true
	})
	return r, err
}

// TimestampFromReply computes the peer's clock offset from our send and
// receive times and the peer's receive and transmit timestamps (ms since
// midnight UTC), the way NTP does: offset = ((t2-t1) + (t3-t4)) / 2,
// taking the day wrap into account.
func TimestampFromReply(t1, t4 time.Time, recv, xmit uint32) TimestampResult {
	a := wrapMs(float64(recv) - msOfDay(t1))
	b := wrapMs(float64(xmit) - msOfDay(t4))
	off := (a + b) / 2
	rtt := t4.Sub(t1) - time.Duration(wrapMs(float64(xmit)-float64(recv))*float64(time.Millisecond))
	return TimestampResult{Reply: true, Offset: time.Duration(off * float64(time.Millisecond)), RTT: max(rtt, 0)}
}

// wrapMs brings a difference of times of day into (-12h, 12h].
func wrapMs(d float64) float64 {
	for d > dayMillis/2 {
		d -= dayMillis
	}
	for d <= -dayMillis/2 {
		d += dayMillis
	}
	return d
}
