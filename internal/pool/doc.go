// Package pool holds the gateway's view of the healthy upstreams: an
// immutable snapshot (healthy only, with score, latency, country, exit IP
// and groups) swapped atomically when the store changes, and the choice of
// one upstream per request (round-robin over distinct exits, random,
// least-latency, sticky by session or client, rotate-every-N), with
// passive ejection of upstreams that keep failing.
//
// It does not dial, relay or write the store: it reads through a Loader,
// learns about outcomes through Observe, and answers Pick.
package pool
