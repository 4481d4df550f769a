// Package control is proxypool's D-Bus contract: the bus name, object path
// and interface, the Go types that travel over the bus, the Manager
// interface the probe daemon implements, Serve (the daemon side) and Client
// (the proxypoolctl side), so that no caller ever spells a D-Bus method
// name.
//
// Small arguments are typed D-Bus values; structured results (records,
// status, reports) travel as one JSON string each. That keeps the
// introspection readable and the client a thin json.Unmarshal.
//
// The package does no pool logic: it moves calls between the bus and a
// Manager, and checks that callers of mutating methods are root, the
// daemon's own user, or a member of group proxypool. Every call's context
// carries its Caller, by which the Manager gives the upstreams'
// credentials to those privileged callers only.
package control
