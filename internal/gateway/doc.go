// Package gateway is proxypool's front door: it serves listeners (the mixed
// port and pinned group ports), tells SOCKS5/SOCKS4a/HTTP apart, checks the
// optional auth and its username parameters, asks a Picker for an upstream,
// dials through it with failover inside a total deadline, answers the
// client only once the upstream's CONNECT succeeded (or with one precise
// error), relays with half-close and timeouts, and reports each outcome.
//
// It does not choose upstreams (Picker), dial protocols (Dialer) or store
// health (Reporter): those are consumer-side interfaces wired in cmd.
// Socket activation and sd_notify also live in cmd; Run takes listeners
// and calls OnReady.
//
// Both ways of serving a connection, goroutines (conn.go) and the event
// loops (package evloop, for SOCKS5 over plain SOCKS5 upstreams), admit it
// through one admission (admission.go) and drive one failover.Failover per
// request; the loops see the gateway only as an evloop.Host (host.go).
package gateway
