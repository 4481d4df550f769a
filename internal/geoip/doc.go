// Package geoip answers offline which country an IP address is in, and,
// from a MaxMind-format ASN database (GeoLite2-ASN, DB-IP ASN lite), its
// autonomous system and organisation; Classifier names the exit's class
// (datacenter, residential, mobile) from those with the table in
// classes.txt. It reads Tor's geoip/geoip6 range files (Debian's
// tor-geoipdb: /usr/share/tor/geoip and /usr/share/tor/geoip6) into sorted
// tables searched by binary search, or a MaxMind-format .mmdb database.
//
// Country codes are returned as the database has them, upper-cased (ISO
// 3166-1 alpha-2, plus pseudo-codes such as EU and AP that the Tor files
// carry); "" means unknown, including Tor's "??".
//
// Malformed lines: a range file whose bad lines are few (at most
// MaxBadLines and at most 1% of its data lines) is loaded with those lines
// skipped, and (*DB).Warnings lists them as "file:line: problem". A file
// with more bad lines than that is not a geoip file (or is badly damaged):
// Open fails with the first bad line's file:line.
//
// The package does no I/O after Open and holds no global state; a DB is
// safe for concurrent use.
package geoip
