package evloop

import (
	"errors"
	"net"
	"syscall"
)

// prefixConn gives back bytes the loop already read before reading on.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

func (p *prefixConn) CloseWrite() error {
	if cw, ok := p.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return p.Conn.Close()
}

var errPrefixPending = errors.New("bytes read ahead are still buffered")

// SyscallConn lets the relay read the socket directly once the bytes read
// ahead are gone.
func (p *prefixConn) SyscallConn() (syscall.RawConn, error) {
	if len(p.pre) > 0 {
		return nil, errPrefixPending
	}
	sc, ok := p.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("not a socket")
	}
	return sc.SyscallConn()
}
