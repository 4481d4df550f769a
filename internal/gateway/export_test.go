package gateway

// SetRelayBudget sets how much one event-loop turn relays for a tunnel:
// rounds over both directions of at most reads reads each.
func SetRelayBudget(o *Options, rounds, reads int) { o.relayRounds, o.relayReads = rounds, reads }

// LogClientSummary logs the auth and per-client refusal summary now
// (the gateway does every 10 s).
func (g *Gateway) LogClientSummary() { g.clients.logSummary(g.log) }
