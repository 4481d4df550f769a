// Package torctl talks to one tor instance's control port or socket through
// bine's control package: cookie authentication, waiting for bootstrap,
// NEWNYM, GETINFO, and the instance's current exit (circuit-status → last
// hop → ns/id → address → ip-to-country). bine's calls take no context, so
// every call sets deadlines on the underlying connection from ctx.
package torctl
