package geoip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
)

// MaxBadLines is the most malformed lines a range file may have and still
// load (with those lines skipped); see the package doc.
const MaxBadLines = 10

// DB maps IP addresses to country codes. The zero value knows nothing and
// answers "" for every address.
type DB struct {
	v4       []range4
	v6       []range6
	mmdb     *mmdbReader
	warnings []string
}

// Open loads Tor's geoip (IPv4) file from path4 and geoip6 (IPv6) file from
// path6. Either may be empty to go without that family. When path4 (or
// path6) ends in ".mmdb" it is opened as a MaxMind database, which answers
// for both families; the other path must then be empty.
func Open(path4, path6 string) (*DB, error) {
	isMMDB := func(p string) bool { return strings.HasSuffix(strings.ToLower(p), ".mmdb") }
	switch {
	case isMMDB(path4) || isMMDB(path6):
		p := path4
		if isMMDB(path6) {
			p = path6
		}
		if path4 != "" && path6 != "" {
			return nil, fmt.Errorf("opening geoip: %s is a MaxMind database, which covers IPv4 and IPv6: give it alone", p)
		}
		r, err := openMMDB(p)
		if err != nil {
			return nil, err
		}
		return &DB{mmdb: r}, nil
	case path4 == "" && path6 == "":
		return nil, errors.New("opening geoip: no database path given")
	}
	db := &DB{}
	if path4 != "" {
		f, err := os.Open(path4)
		if err != nil {
			return nil, fmt.Errorf("opening geoip: %w", err)
		}
		db.v4, db.warnings, err = read4(f, path4, db.warnings)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	if path6 != "" {
		f, err := os.Open(path6)
		if err != nil {
			return nil, fmt.Errorf("opening geoip: %w", err)
		}
		db.v6, db.warnings, err = read6(f, path6, db.warnings)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	return db, nil
}

// OpenPath opens what a config's single "geoip:" key names: a .mmdb file,
// or Tor's IPv4 geoip file, in which case the IPv6 file next to it (the same
// path with "6" appended, as Debian installs them) is loaded too when it
// exists.
func OpenPath(path string) (*DB, error) {
	if strings.HasSuffix(strings.ToLower(path), ".mmdb") {
		return Open(path, "")
	}
	path6 := path + "6"
	if _, err := os.Stat(path6); err != nil {
		path6 = ""
	}
	return Open(path, path6)
}

// Close releases a MaxMind database; it is a no-op for Tor range files.
func (db *DB) Close() error {
	if db == nil || db.mmdb == nil {
		return nil
	}
	return db.mmdb.close()
}

// Warnings lists the malformed lines that were skipped while loading, as
// "file:line: problem".
func (db *DB) Warnings() []string {
	if db == nil {
		return nil
	}
	return db.warnings
}

// Len is the number of IPv4 and IPv6 ranges loaded (0 for a .mmdb).
func (db *DB) Len() (v4, v6 int) {
	if db == nil {
		return 0, 0
	}
	return len(db.v4), len(db.v6)
}

// Country returns the country code of ip, or "" when unknown.
// IPv4-mapped IPv6 addresses are looked up as IPv4; zones are ignored.
func (db *DB) Country(ip netip.Addr) string {
	if db == nil || !ip.IsValid() {
		return ""
	}
	ip = ip.Unmap().WithZone("")
	if db.mmdb != nil {
		return db.mmdb.country(ip)
	}
	if ip.Is4() {
		return lookup4(db.v4, ip)
	}
	return lookup6(db.v6, ip)
}

// ASN returns the autonomous system number and organisation of ip, or
// 0, "" when unknown. Only a MaxMind-format database with ASN records
// (GeoLite2-ASN, DB-IP ASN lite, ipinfo) knows them; Tor's range files
// and country-only databases answer 0.
func (db *DB) ASN(ip netip.Addr) (uint32, string) {
	if db == nil || db.mmdb == nil || !ip.IsValid() {
		return 0, ""
	}
	return db.mmdb.asn(ip.Unmap().WithZone(""))
}

// ASNOf is ASN for a textual address; 0, "" for one that does not parse.
func (db *DB) ASNOf(s string) (uint32, string) {
	a, err := netip.ParseAddr(strings.Trim(strings.TrimSpace(s), "[]"))
	if err != nil {
		return 0, ""
	}
	return db.ASN(a)
}

// CountryIP is Country for a net.IP.
func (db *DB) CountryIP(ip net.IP) string {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return ""
	}
	return db.Country(a)
}

// CountryOf is Country for a textual address ("8.8.8.8", "2001:db8::1");
// it answers "" for anything that does not parse.
func (db *DB) CountryOf(s string) string {
	a, err := netip.ParseAddr(strings.Trim(strings.TrimSpace(s), "[]"))
	if err != nil {
		return ""
	}
	return db.Country(a)
}

// code normalizes a country code from a database: upper case, and "" for
// Tor's unknown marker "??" or anything that is not two letters or digits
// (old MaxMind pseudo-codes such as A1 are kept).
func code(cc string) string {
	if len(cc) != 2 {
		return ""
	}
	b := [2]byte{upper(cc[0]), upper(cc[1])}
	for _, c := range b {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return ""
		}
	}
	return string(b[:])
}

func upper(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}
