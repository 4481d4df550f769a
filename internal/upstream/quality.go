package upstream

import (
	"fmt"
	"strconv"
	"strings"
)

// Class is what kind of network an exit address belongs to, from its
// autonomous system (geoip.Classifier): what users of a pool ask for
// when a site treats datacenter addresses as bots.
type Class string

// Classes. ClassUnknown is an exit with no ASN database, or an ASN the
// table does not name and whose organisation matches no keyword.
const (
	ClassUnknown     Class = ""
	ClassDatacenter  Class = "datacenter"
	ClassResidential Class = "residential"
	ClassMobile      Class = "mobile"
)

// Classes are the names a group's class filter takes.
var Classes = []Class{ClassDatacenter, ClassResidential, ClassMobile}

// ParseClass reads a class name, any case.
func ParseClass(s string) (Class, error) {
	c := Class(strings.ToLower(strings.TrimSpace(s)))
	for _, k := range Classes {
		if c == k {
			return c, nil
		}
	}
	return ClassUnknown, fmt.Errorf("unknown exit class %q (datacenter, residential, mobile)", s)
}

// Quality is what the exit's address says of it beyond its country: its
// autonomous system (number and organisation, from an offline ASN
// database), that network's class, and whether the upstream reached the
// IPv6 judge. The zero value knows nothing.
type Quality struct {
	ASN   uint32 `json:"asn,omitempty"`
	Org   string `json:"org,omitempty"`
	Class Class  `json:"class,omitempty"`
	IPv6  bool   `json:"ipv6,omitempty"`
}

// ParseASN reads an AS number written 13335, AS13335 or as13335 (config,
// list filters, class tables, ipinfo's "asn" field).
func ParseASN(s string) (uint32, error) {
	t := strings.TrimSpace(s)
	if len(t) > 2 && strings.EqualFold(t[:2], "as") {
		t = t[2:]
	}
	n, err := strconv.ParseUint(t, 10, 32)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not an AS number (use 13335 or AS13335)", s)
	}
	return uint32(n), nil
}
