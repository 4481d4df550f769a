package evloop

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The loops' syscalls. Every socket they touch is nonblocking, so each
// call returns in microseconds: they go straight to the kernel
// (RawSyscall) instead of through the runtime's entersyscall/exitsyscall,
// which for calls this short cost more than the call and keep sysmon busy
// watching a P that is "in a syscall" thousands of times a second.
// accept and connect, once per socket, take x/sys/unix's wrappers for
// their typed addresses.

func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func sysRead(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func sysWrite(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	r, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func sysClose(fd int) {
	unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
}

func sysShutdownWrite(fd int) {
	unix.RawSyscall(unix.SYS_SHUTDOWN, uintptr(fd), unix.SHUT_WR, 0)
}

func sysNoDelay(fd int) {
	one := int32(1)
	unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, uintptr(unsafe.Pointer(&one)), 4, 0)
}

// sysSoError reads and clears a socket's pending error (a finished
// nonblocking connect).
func sysSoError(fd int) error {
	var v int32
	l := uint32(4)
	_, _, e := unix.RawSyscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_ERROR, uintptr(unsafe.Pointer(&v)), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return e
	}
	return errnoErr(unix.Errno(v))
}

// sysEpollCtl adds, changes or removes fd; its events carry fd and tag
// (epoll_event's 64 bits of data).
func sysEpollCtl(epfd, op, fd int, events uint32, tag int32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd), Pad: tag}
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(&ev)), 0, 0)
	return errnoErr(e)
}

// sysAccept accepts one connection, nonblocking and close-on-exec, and
// returns the peer's address.
func sysAccept(lfd int) (int, netip.Addr, error) {
	fd, sa, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		return -1, netip.Addr{}, err
	}
	var a netip.Addr
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		a = netip.AddrFrom4(sa.Addr)
	case *unix.SockaddrInet6:
		a = netip.AddrFrom16(sa.Addr).Unmap()
	}
	return fd, a, nil
}

// sysDial opens a nonblocking TCP socket with TCP_NODELAY and starts
// connecting it to ap.
func sysDial(ap netip.AddrPort) (int, error) {
	family := unix.AF_INET
	var sa unix.Sockaddr
	if ap.Addr().Is4() {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	sysNoDelay(fd)
	if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
		sysClose(fd)
		return -1, err
	}
	return fd, nil
}
