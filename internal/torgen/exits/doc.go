// Package exits discovers Tor relays and turns the usable exits into
// instance slots: it parses Onionoo details JSON, torstatus-style CSV
// exports (Tor_query_EXPORT.csv), network-status consensus documents and a
// running tor's answers to GETINFO ns/all + ip-to-country; it keeps only
// usable exits, sorts them into the configured geo groups under one of the
// three port modes (country, grouped, single) and assigns ports that stay
// stable across refreshes. It does no process or systemd work.
package exits
