package proxymux

import (
	"bufio"
	"fmt"
)

// Protocol is what a client speaks.
type Protocol uint8

// The protocols of a mixed port.
const (
	HTTP Protocol = iota
	SOCKS4
	SOCKS5
)

func (p Protocol) String() string {
	switch p {
	case SOCKS4:
		return "socks4"
	case SOCKS5:
		return "socks5"
	}
	return "http"
}

// Sniff peeks at the first byte buffered in r (reading it from the
// connection if needed) and says which protocol follows. The byte stays in
// r for the protocol parser. Set a read deadline on the connection first: a
// silent client would otherwise hold Sniff forever.
func Sniff(r *bufio.Reader) (Protocol, error) {
	b, err := r.Peek(1)
	if err != nil {
		return HTTP, fmt.Errorf("reading first byte: %w", err)
	}
	switch b[0] {
	case 5:
		return SOCKS5, nil
	case 4:
		return SOCKS4, nil
	}
	return HTTP, nil
}
