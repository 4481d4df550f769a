package control

import "context"

// Caller is who made a call, as the server learnt it from the bus.
type Caller struct {
	UID uint32
	// Privileged: root, the daemon's own user or a member of an allowed
	// group (Options.AllowedGIDs). Only a privileged caller may change the
	// pool or read the upstreams' credentials.
	Privileged bool
}

type callerKey struct{}

// WithCaller returns ctx carrying c. The server puts the caller in the
// context of every call it hands to the Manager.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller ctx carries; ok is false for a context no
// server made (an in-process call).
func CallerFrom(ctx context.Context) (c Caller, ok bool) {
	c, ok = ctx.Value(callerKey{}).(Caller)
	return c, ok
}
