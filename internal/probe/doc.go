// Package probe keeps the pool honest: it dials upstreams through their own
// protocol, fetches a judge URL, and turns what comes back into a
// upstream.CheckResult (latency, exit IP, country, anonymity, tamper signs).
// The engine checks thousands at once with bounded concurrency and a hard
// per-check deadline that covers dial, handshake and response.
//
// It does not store anything (results go to a ResultSink), does not pick
// upstreams for traffic (that is pool), and knows no protocol details beyond
// HTTP (the Dialer does the rest).
package probe
