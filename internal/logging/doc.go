// Package logging builds the logrus loggers proxypool passes to its
// components, and names the structured fields they log.
//
// New always returns a fresh logrus.New() logger: mihomo's log package
// rewrites logrus's global logger when imported, so nothing in proxypool
// logs through logrus's package-level functions (internal/deps_test.go
// enforces it).
//
// Where the output goes decides its shape:
//
//   - Format "auto", started by systemd with stderr connected to the journal
//     (JOURNAL_STREAM matches) and the native journal socket reachable:
//     every entry is sent natively, its logrus fields becoming upper-case
//     journal fields (upstream_id → UPSTREAM_ID), so `journalctl -o verbose`
//     and `journalctl UPSTREAM_ID=…` see them. Nothing is written to stderr,
//     so an entry is never logged twice; if a send fails, that entry falls
//     back to stderr as text.
//   - stderr connected to the journal but no native socket (or Format
//     "text"): text without timestamps (journald adds its own) and without
//     colours.
//   - anything else (a terminal, a pipe, a file): text with full timestamps,
//     coloured on a terminal.
//   - Format "json": one JSON object per line, whatever the destination.
//
// Every is a per-key rate limiter for warnings that would otherwise repeat
// once per upstream or per connection.
package logging
