package geoip

import (
	"fmt"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/proxypool/proxypool/internal/upstream"
)

// mmdbReader answers from a MaxMind-format database (GeoLite2/GeoIP2
// Country or City, DB-IP, or any database with the same country layout).
type mmdbReader struct {
	r *maxminddb.Reader
}

// mmdbRecord is the part of a GeoIP2-style record we read.
type mmdbRecord struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	RegisteredCountry struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"registered_country"`
	CountryCode string `maxminddb:"country_code"` // ipinfo-style flat layout
}

// asnRecord is the GeoLite2-ASN / DB-IP ASN lite layout; ipinfo's flat
// files name the same fields asn ("AS13335") and as_name.
type asnRecord struct {
	Number uint32 `maxminddb:"autonomous_system_number"`
	Org    string `maxminddb:"autonomous_system_organization"`
	ASN    string `maxminddb:"asn"`
	ASName string `maxminddb:"as_name"`
}

func openMMDB(path string) (*mmdbReader, error) {
	r, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening geoip: %s: %w", path, err)
	}
	return &mmdbReader{r: r}, nil
}

func (m *mmdbReader) close() error { return m.r.Close() }

func (m *mmdbReader) country(ip netip.Addr) string {
	res := m.r.Lookup(ip)
	if !res.Found() {
		return "" // also covers lookup errors, such as IPv6 in an IPv4-only database
	}
	var rec mmdbRecord
	if err := res.Decode(&rec); err != nil {
		return ""
	}
	for _, c := range []string{rec.Country.ISOCode, rec.RegisteredCountry.ISOCode, rec.CountryCode} {
		if cc := code(c); cc != "" {
			return cc
		}
	}
	return ""
}

func (m *mmdbReader) asn(ip netip.Addr) (uint32, string) {
	res := m.r.Lookup(ip)
	if !res.Found() {
		return 0, ""
	}
	var rec asnRecord
	if err := res.Decode(&rec); err != nil {
		return 0, ""
	}
	if rec.Number == 0 && rec.ASN != "" {
		n, err := upstream.ParseASN(rec.ASN)
		if err != nil {
			return 0, ""
		}
		rec.Number, rec.Org = n, rec.ASName
	}
	if rec.Number == 0 {
		return 0, ""
	}
	return rec.Number, rec.Org
}
