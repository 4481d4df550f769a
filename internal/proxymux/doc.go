// Package proxymux tells the protocols of one mixed proxy port apart by the
// first byte a client sends: 0x05 is SOCKS5, 0x04 is SOCKS4/4a, anything
// else is HTTP. It only peeks; it never consumes bytes, dials or answers.
package proxymux
