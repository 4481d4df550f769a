// Package torops runs proxypool's Tor instances as a pool needs them: one
// torgen generation within each group's instance budget, the SLO guard's
// tor steps (NEWNYM a group, scale it up by one), the tor.newnym-period
// rotation, and the daemon side of `proxypoolctl tor` (manager.Tor).
//
// The pieces meet in the store, so they work the same across processes:
//
//   - the instances are the upstreams of source "tor" (their group, their
//     age as first_seen). Their control is, under systemd, a loopback
//     ControlPort at the SOCKS port + ControlPortOffset with a password
//     (the probe may not read a Debian tor@ instance's cookie, only its
//     _tor-<port> group may); in `proxypoold run`, the children's cookie
//     sockets under the data dir;
//   - the control password is made once, by whichever process comes first
//     (store.TorControlPassword); torgen hashes it into every systemd
//     instance's torrc;
//   - each tor group with a floor in grouped or single mode has a budget
//     (store.TorGroups): generation starts from the floor and takes the
//     larger stored value; ScaleUp raises it to one more than the group
//     runs. The last plan's unused slots (exits nobody uses yet) are
//     ScaleUp's "anything to add?".
//
// After raising a budget ScaleUp applies it: in `run` by regenerating at
// once (Supervisor), under systemd by rewriting RequestFile beside the
// database, which proxy-torgen.path watches to start proxy-torgen.service
// (the probe has no right to start units, and needs none).
//
// It does not read the config: cmd maps config.Tor onto Options.
package torops
