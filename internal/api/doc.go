// Package api is the HTTP control API the process that owns the store
// serves (api.listen): our own /api/v1 over the same control.Manager
// D-Bus serves, documented by docs/api/openapi.yaml, and a mount for the
// Clash external-controller handler on every other path. One front door
// for both: bearer-secret auth (?token= on WebSocket upgrades), CORS with
// an allow-list and Private Network Access, the {"message": …} error
// shape. Client is control.Manager over this API, for proxypoolctl where
// no bus reaches the daemon.
package api
