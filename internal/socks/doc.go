// Package socks speaks the SOCKS4, SOCKS4a and SOCKS5 protocols (CONNECT
// only): the server side (ServerHandshake + Reply; internal/fleet/proxyserver
// builds a small server for tests on them) and the client side (Connect, a
// SOCKS5 CONNECT over an existing connection).
//
// It only handles protocol details. It knows nothing of upstream pools,
// failover or relaying policy: the gateway decides what to dial and what to
// answer. Host names are passed through unresolved (socks4a/socks5h).
package socks
