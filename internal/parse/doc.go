// Package parse turns what users have (share links, host:port lists, JSON
// proxy lists, base64 subscriptions, Clash/mihomo YAML) into upstreams, one
// result per input line or entry.
//
// Every share link is converted with mihomo's common/convert, one line at a
// time, and every resulting mapping is validated by building mihomo's
// adapter (adapter.ParseProxy) and closing it again: a record mihomo cannot
// build is reported as failed, with the cause. SOCKS4/4a (which mihomo lacks)
// and wireguard:// links (which mihomo's converter lacks) are parsed here.
//
// Detection ("auto"), in order: a body starting with '[' is a JSON list; one
// starting with '{' or having a top-level "proxies:" line is Clash/mihomo
// YAML (JSON is YAML); a body that is all base64 and decodes to text with
// "://" in it is a base64 subscription; anything else is read line by line.
//
// Every server, whichever reader it came through, must be an IP literal or
// a DNS name (checkHost: RFC 1123 with '_' allowed, at least one dot or
// "localhost", international names stored as their A-label); entries glued
// together without a newline ("1.2.3.4:80805.6.7.8:3128") are cut where
// exactly one cut gives a port and an IPv4 address, and fail otherwise.
//
// Bare "host:port" lines (and host:port YAML/JSON strings) take the scheme
// named by Options.Format (socks5, socks4, http, https); with "auto" or
// "links" they are http, the most common kind of bare free list.
//
// The package never panics on input and caps what it holds: the whole input
// (Options.MaxBytes, default 64 MiB), a line (64 KiB), a JSON entry (1 MiB),
// YAML parsed as a document (16 MiB; larger Clash files are read line by
// line), YAML nesting (64 levels) and YAML nodes (alias expansion), and the
// number of records (1 Mi). A panic inside mihomo becomes that line's error.
//
// Link is the inverse: the share link v2rayN/NekoBox/Shadowrocket would
// write for an upstream, read back through ParseURI before it is returned,
// so a link either gives the same upstream (ID and name) or Link fails
// naming the option no link can carry. Where a Clash record differs from
// any link only in what mihomo's converter invents or ignores (udp, its
// "chrome" fingerprint, legacy keys such as ws-path), Link says so under a
// "proxypool" query key that link() reads and other clients ignore; it may
// hold nothing that changes how a client dials (see extrasKey).
//
// It does no I/O and sets mihomo's process-wide log level to silent once.
package parse
