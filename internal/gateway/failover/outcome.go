package failover

// Outcomes of a client connection that are not dial causes, as both of
// the gateway's paths tell its Observer (ConnDone).
const (
	OutcomeOK           = "ok"
	OutcomeClientClosed = "client_closed"
	OutcomeClientTimout = "client_timeout"
	OutcomeClientError  = "client_error"
	OutcomeAuth         = "auth_rejected"
	OutcomeNoUpstream   = "no_upstream"
	OutcomeUnknownGroup = "unknown_group"
	OutcomeUpstream     = "upstream_failed"
	OutcomeBadTarget    = "bad_target" // a target no upstream can reach, refused before any dial
)
