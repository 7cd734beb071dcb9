package bfd

import (
	"errors"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The packet syscalls of udpConn are made with RawSyscall: both are
// non-blocking (the sockets are the runtime's, in non-blocking mode, and
// the runtime's poller waits for readiness), so they need not tell the
// scheduler they may block. A regular syscall does, and while netd is
// idle that wakes the runtime's monitor thread (sysmon) on every packet:
// at 10 packets a second each way per peer, most of an idle netd's CPU.

// rawSendto sends b to dst on fd; it returns EAGAIN when the socket's
// buffer is full.
func rawSendto(fd uintptr, b []byte, dst netip.AddrPort) error {
	sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: dst.Addr().As4()}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(dst.Port()>>8), byte(dst.Port())
	var bp unsafe.Pointer
	if len(b) > 0 {
		bp = unsafe.Pointer(&b[0])
	}
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(bp), uintptr(len(b)), 0,
		uintptr(unsafe.Pointer(&sa)), unix.SizeofSockaddrInet4)
	if e != 0 {
		return e
	}
	return nil
}

// rawRecvmsg reads one datagram and its control messages from fd; it
// returns EAGAIN when there is none.
func rawRecvmsg(fd uintptr, b, oob []byte) (n, oobn int, from netip.Addr, err error) {
	var sa unix.RawSockaddrInet4
	iov := unix.Iovec{Base: &b[0]}
	iov.SetLen(len(b))
	msg := unix.Msghdr{Name: (*byte)(unsafe.Pointer(&sa)), Namelen: unix.SizeofSockaddrInet4, Iov: &iov, Iovlen: 1}
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	r, _, e := unix.RawSyscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&msg)), 0)
	if e != 0 {
		return 0, 0, netip.Addr{}, e
	}
	if sa.Family == unix.AF_INET {
		from = netip.AddrFrom4(sa.Addr)
	}
	return int(r), int(msg.Controllen), from, nil
}

// isAgain reports whether err says the socket would block.
func isAgain(err error) bool {
	return errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK)
}
