package nl

import (
	"context"
	"errors"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestRetryDump(t *testing.T) {
	ctx := context.Background()
	calls := 0
	err := retryDump(ctx, "things", func() error {
		if calls++; calls < 3 {
			return netlink.ErrDumpInterrupted
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Errorf("err %v after %d calls; want success on the third", err, calls)
	}
	calls = 0
	err = retryDump(ctx, "things", func() error { calls++; return netlink.ErrDumpInterrupted })
	if !errors.Is(err, netlink.ErrDumpInterrupted) || calls != dumpRetries {
		t.Errorf("err %v after %d calls; want ErrDumpInterrupted after %d", err, calls, dumpRetries)
	}
	boom := errors.New("boom")
	calls = 0
	err = retryDump(ctx, "things", func() error { calls++; return boom })
	if !errors.Is(err, boom) || calls != 1 {
		t.Errorf("err %v after %d calls; want boom at once", err, calls)
	}
}
