// Package dial turns an upstream record into a connection to a target
// through that upstream. It is the one dialer shared by the probe and the
// gateway, and the only package that reaches mihomo's outbound adapters;
// nothing of mihomo leaks out of it.
//
// Targets are never resolved locally: a host name in "host:port" is handed
// to the upstream as a name (socks5h / CONNECT host semantics). The
// upstream's own server name, when it is not an IP literal, is resolved with
// the system resolver only (see resolve.go).
//
// It does not pick upstreams, retry, or record health: callers do, using
// Classify to turn an error into its upstream.Cause.
package dial
