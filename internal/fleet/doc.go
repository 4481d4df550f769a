// Package fleet runs a fleet of real upstream proxies on loopback, plus a
// judge, for tests, benchmarks and the demo (cmd/fleet).
//
// Member i listens on, and leaves from, its own address in its own /24:
// 127.(10+i/256).(i%256).1, so a judge on 127.0.0.1 sees which member a
// request came through. Members speak SOCKS5, SOCKS4/4a and HTTP (served
// here) or ss, vmess and trojan (served by mihomo's inbound listeners), and
// behave well or badly on purpose (refuse, black hole, reset, garbage,
// transparent, anonymous, local, or break the stream after a good
// handshake: close, reset, garbage).
//
// It is a test fixture: it binds only 127.0.0.0/8 addresses and is not a
// proxy server for real use.
package fleet
