// Package tornet builds a private Tor network on loopback for tests, the
// way Tor's chutney does (see docs in the team's tornet.md): three
// directory authorities, two middles and four exits (US, US, DE, NL), each
// relay on its own advertised address in 127.0.N.0/24 (never 127.0.0.0/24:
// a probe's "real IP" on loopback is 127.0.0.1; the second US exit in
// 127.1.N.0/24, another /16, so tor.mode grouped has two US ranges, one of
// them shared with the DE and NL exits), a private GeoIP file that
// maps those addresses to countries, and an HTTP target on 127.0.0.1 that
// reports which exit a request came through. Product tor processes join it
// only through ClientConfig lines (TestingTorNetwork, DirAuthority,
// GeoIPFile…) appended to their torrc.
//
// It is a test helper: StartT skips when tor is absent or when the heavy
// tests are not enabled (PROXYPOOL_TORNET=1, which `make test` sets).
package tornet
