package gateway

import "time"

// Observer is told what the gateway does, for metrics. Its methods take
// plain values (a *metrics.GatewayMetrics satisfies it) and must be cheap
// and safe for concurrent use. A nil Observer costs nothing.
//
// Every accepted connection gets one ConnOpened and one ConnDone. proto is
// "socks5", "socks4", "http" or "unknown" (nothing readable was sent).
// outcome is "ok" when the client got its tunnel or response;
// "client_closed", "client_timeout" or "client_error" when the client
// left, stalled or spoke nonsense; "auth_rejected"; "bad_target" (a
// target no upstream can reach, refused before any dial); otherwise the
// failure: "no_upstream", "unknown_group", "upstream_failed" (a forwarded response
// broke before it started), or the dial cause of the last try ("refused",
// "timeout", "reset", "handshake", "auth", "unreachable", "dns",
// "closed", "local", "other", or a target cause "target_refused",
// "target_unreachable", "target_timeout", "target_denied").
type Observer interface {
	ConnOpened(listener, proto string)
	ConnDone(listener, proto, outcome string, dur time.Duration)
	ActiveTunnels(delta int)
	// DialLatency observes one dial try: cause "ok" or the failure.
	DialLatency(cause string, d time.Duration)
	Retry()
	// Bytes counts relayed bytes (up: client to upstream) once per tunnel.
	Bytes(up, down int64)
	AuthRejected(listener string)
	// AuthDelayed counts a refusal held back because its source kept
	// failing; ClientLimited a connection refused for its source's
	// max-conns-per-client.
	AuthDelayed(listener string)
	ClientLimited(listener string)
}
