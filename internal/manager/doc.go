// Package manager implements control.Manager, the daemon side of the D-Bus
// control plane: it answers proxypoolctl's calls from the store and starts
// long work (probe checks, source refreshes, torgen runs) as background jobs
// that report control.Progress, so that no handler waits on the network.
//
// It consumes small interfaces: the store's methods (Store), the probe's
// wake-up (Checker), a refresh run (Refresher) and the Tor instances (Tor).
// cmd/proxypoold wires them to the real parts; proxypoolctl --db uses the
// read-only methods over a read-only store with none of the others.
//
// The package does not talk to D-Bus itself: Options.Emit receives Progress
// signals and the caller forwards them (control.Server.Progress).
package manager
