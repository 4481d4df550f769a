package gateway

import (
	"net/netip"
	"syscall"
	"unsafe"
)

// The loops' syscalls. Every socket they touch is nonblocking, so each
// call returns in microseconds: they go straight to the kernel
// (RawSyscall) instead of through the runtime's entersyscall/exitsyscall,
// which for calls this short cost more than the call and keep sysmon busy
// watching a P that is "in a syscall" thousands of times a second.

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func sysRead(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	r, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func sysWrite(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func sysClose(fd int) {
	syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(fd), 0, 0)
}

func sysShutdownWrite(fd int) {
	syscall.RawSyscall(syscall.SYS_SHUTDOWN, uintptr(fd), syscall.SHUT_WR, 0)
}

func sysNoDelay(fd int) {
	one := int32(1)
	syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY, uintptr(unsafe.Pointer(&one)), 4, 0)
}

// sysSoError reads and clears a socket's pending error (a finished
// nonblocking connect).
func sysSoError(fd int) error {
	var v int32
	l := uint32(4)
	_, _, e := syscall.RawSyscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), syscall.SOL_SOCKET, syscall.SO_ERROR, uintptr(unsafe.Pointer(&v)), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return e
	}
	return errnoErr(syscall.Errno(v))
}

// sysEpollCtl adds, changes or removes fd; its events carry fd and tag
// (epoll_event's 64 bits of data).
func sysEpollCtl(epfd, op, fd int, events uint32, tag int32) error {
	ev := syscall.EpollEvent{Events: events, Fd: int32(fd), Pad: tag}
	_, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(&ev)), 0, 0)
	return errnoErr(e)
}

// sysAccept accepts one connection, nonblocking and close-on-exec, and
// returns the peer's address.
func sysAccept(lfd int) (int, netip.Addr, error) {
	var rsa syscall.RawSockaddrAny
	l := uint32(unsafe.Sizeof(rsa))
	r, _, e := syscall.RawSyscall6(syscall.SYS_ACCEPT4, uintptr(lfd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&l)), syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, netip.Addr{}, e
	}
	var a netip.Addr
	switch rsa.Addr.Family {
	case syscall.AF_INET:
		a = netip.AddrFrom4((*syscall.RawSockaddrInet4)(unsafe.Pointer(&rsa)).Addr)
	case syscall.AF_INET6:
		a = netip.AddrFrom16((*syscall.RawSockaddrInet6)(unsafe.Pointer(&rsa)).Addr).Unmap()
	}
	return int(r), a, nil
}

// sysDial opens a nonblocking TCP socket with TCP_NODELAY and starts
// connecting it to ap.
func sysDial(ap netip.AddrPort) (int, error) {
	family := syscall.AF_INET
	if !ap.Addr().Is4() {
		family = syscall.AF_INET6
	}
	r, _, e := syscall.RawSyscall(syscall.SYS_SOCKET, uintptr(family), syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if e != 0 {
		return -1, e
	}
	fd := int(r)
	sysNoDelay(fd)
	port := ap.Port()
	if family == syscall.AF_INET {
		sa := syscall.RawSockaddrInet4{Family: syscall.AF_INET, Addr: ap.Addr().As4()}
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		_, _, e = syscall.RawSyscall(syscall.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	} else {
		sa := syscall.RawSockaddrInet6{Family: syscall.AF_INET6, Addr: ap.Addr().As16()}
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		_, _, e = syscall.RawSyscall(syscall.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	}
	if e != 0 && e != syscall.EINPROGRESS {
		sysClose(fd)
		return -1, e
	}
	return fd, nil
}
