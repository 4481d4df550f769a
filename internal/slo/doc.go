// Package slo keeps the pool's standing promise: every configured group (and
// the pool as a whole) has at least its floor of healthy upstreams
// (min-healthy) and of distinct exit IPs (min-exits). A Guard evaluates the
// floors every check-interval; when a group is below its floor it acts in
// order of cost, one step per evaluation, and says so in the log (GROUP
// field), in Status/Summary (sd_notify STATUS, proxypoolctl status) and
// through the OnFloor/OnAction hooks (metrics):
//
//  1. recheck:  re-check the group's failing and dead upstreams now instead of
//     at their backoff time;
//  2. refresh:  fetch sources early (the Refresher keeps each source's
//     min-interval, so a dry group never hammers a source);
//  3. newnym:   for Tor groups, NEWNYM the group's instances;
//  4. instance: for Tor groups, bring up more instances from unused exits, up
//     to tor.max-instances.
//
// It stops as soon as the floor is met, starts a new round of steps at most
// once per min-action-interval per group (so each kind of action runs at most
// that often), and a group that a whole round did not help backs off
// (doubling, capped) and is logged once per round, not once per tick.
//
// The package only decides. It does not read the store, fetch, probe or run
// tor: it consumes Counter, Rechecker, Refresher and TorScaler, which cmd
// wires to the store, source.Fetcher, the probe and torgen. Group membership
// is the pool's own (Member wraps internal/pool), so the floors count exactly
// what the gateway serves. It never stops the gateway serving a group below
// its floor.
package slo
