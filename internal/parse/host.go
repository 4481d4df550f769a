package parse

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/net/idna"

	"github.com/proxypool/proxypool/internal/upstream"
)

// maxNameLen is RFC 1035's limit on a name in text form (255 octets on the
// wire, less the length bytes and the root).
const maxNameLen = 253

// checkHost reports whether h, a server as upstream.New normalizes it
// (lower case, no brackets, no trailing dot, zero-padded IPv4 made
// canonical), is something the probe can dial: an IP literal or a DNS name.
// It returns the host to store: an international name becomes its A-label
// (xn--…), so that "bücher.example" and its punycode are one upstream and
// the resolver, which speaks ASCII only, can look it up.
//
// Names follow RFC 1123 (letters, digits and hyphens; a label neither
// starts nor ends with a hyphen; 1-63 octets a label, 253 in all; the last
// label is not all digits) with one exception: '_' is accepted inside a
// label, because real CDN and DNS names carry it (RFC 2181 §11 allows any
// octet in DNS; only host names are narrower) and mihomo dials them.
// A name needs a dot, except "localhost": a single label ("t", "host") is
// never a public DNS name, so a list that gives one is broken.
func checkHost(h string) (string, error) {
	if h == "" {
		return "", errors.New("empty host")
	}
	if a, err := netip.ParseAddr(h); err == nil {
		switch {
		case a.Zone() != "":
			return "", fmt.Errorf("bad host %q: an IPv6 zone names an interface of this host", h)
		case a.IsUnspecified():
			return "", fmt.Errorf("bad host %q: the unspecified address is not a server (dialling it reaches this host)", h)
		}
		return h, nil
	}
	if strings.Contains(h, ":") {
		return "", fmt.Errorf("bad host %q: has ':' but is not an IPv6 address", h)
	}
	name := h
	if !isASCII(h) {
		a, err := idna.Lookup.ToASCII(h)
		if err != nil {
			return "", fmt.Errorf("bad host %q: not a valid international name: %v", h, err)
		}
		name = a
	}
	if err := checkName(name); err != nil {
		return "", fmt.Errorf("bad host %q: %v", h, err)
	}
	return name, nil
}

// checkName checks an ASCII name against the rules checkHost describes.
func checkName(s string) error {
	if len(s) > maxNameLen {
		return fmt.Errorf("name is %d octets long, max %d", len(s), maxNameLen)
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if err := checkLabel(l); err != nil {
			return err
		}
	}
	if last := labels[len(labels)-1]; digits(last) {
		if len(labels) == 4 && allDigits(labels) {
			return errors.New("not an IPv4 address (each part must be 0-255)")
		}
		return errors.New("the last label is all digits: neither a host name nor an IPv4 address")
	}
	if len(labels) == 1 && s != "localhost" {
		return errors.New("a name without a dot is not a public DNS name")
	}
	return nil
}

func checkLabel(l string) error {
	switch {
	case l == "":
		return errors.New("empty label")
	case len(l) > 63:
		return fmt.Errorf("label %.20q… is %d octets long, max 63", l, len(l))
	case l[0] == '-' || l[len(l)-1] == '-':
		return fmt.Errorf("label %q starts or ends with '-'", l)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("label %q holds %q (want letters, digits, '-' or '_')", l, c)
		}
	}
	if strings.HasPrefix(strings.ToLower(l), "xn--") {
		if _, err := idna.Lookup.ToUnicode(l); err != nil {
			return fmt.Errorf("label %q is not valid punycode: %v", l, err)
		}
	}
	return nil
}

func allDigits(ss []string) bool {
	for _, s := range ss {
		if !digits(s) {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// unglue splits "A:PB:Q", two list entries whose newline was lost so that
// entry B:Q follows port P of entry A:P, where the split is certain: only
// when exactly one way of cutting PB gives a port (1-65535) and an IPv4
// address the parser would accept as a server (zero padding allowed, as
// upstream.NormalizeHost reads it; 0.0.0.0 not). "1.1.1.98:80185.226.204.160" cuts as
// 80|185.226.204.160, 801|85.226.204.160 and 8018|5.226.204.160, so it is
// rejected as ambiguous rather than guessed. It returns nil, nil when hp
// does not have that shape (three colon-separated parts, a host first, a
// digit after the first colon, a port last).
func unglue(hp string) ([]string, error) {
	parts := strings.Split(hp, ":")
	if len(parts) != 3 || !digits(parts[2]) || parts[1] == "" || !isDigit(parts[1][0]) {
		return nil, nil
	}
	if n, _ := strconv.Atoi(parts[2]); len(parts[2]) > 5 || n < 1 || n > 65535 {
		return nil, nil // the second entry's port is no port: no cut is certain
	}
	if _, err := checkHost(upstream.NormalizeHost(parts[0])); err != nil {
		return nil, nil
	}
	mid := parts[1]
	var ports []string
	var next string
	for k := 1; k <= 5 && k < len(mid); k++ {
		p, rest := mid[:k], mid[k:]
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 || !isIPv4(rest) {
			continue
		}
		if _, err := checkHost(upstream.NormalizeHost(rest)); err != nil {
			continue // 0.0.0.0: not an entry anyone lists
		}
		ports = append(ports, p)
		next = rest
	}
	switch len(ports) {
	case 1:
		return []string{parts[0] + ":" + ports[0], next + ":" + parts[2]}, nil
	case 0:
		return nil, fmt.Errorf("%q looks like two entries glued together, but no cut of %q gives a port and an IPv4 address", hp, mid)
	}
	return nil, fmt.Errorf("%q is two entries glued together, ambiguous: the first one's port could be %s", hp, orList(ports))
}

// isIPv4 reports dotted decimal with four parts of 1-3 digits, each at
// most 255: the IPv4 forms upstream.NormalizeHost accepts, zero padding
// included.
func isIPv4(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return false
	}
	for _, p := range parts {
		if !digits(p) || len(p) > 3 {
			return false
		}
		if n, _ := strconv.Atoi(p); n > 255 {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func orList(ss []string) string {
	if len(ss) < 2 {
		return strings.Join(ss, "")
	}
	return strings.Join(ss[:len(ss)-1], ", ") + " or " + ss[len(ss)-1]
}

// unglueLink splits a plain link whose authority is two entries glued
// together (scheme://[user@]A:PB:Q…, see unglue) into scheme://[user@]A:P
// and scheme://B:Q…: the credentials stay with the first entry, what
// follows the authority with the second. It returns nil, nil for any other
// link.
func unglueLink(l string) ([]string, error) {
	scheme, body, _ := strings.Cut(l, "://")
	if !plainSchemes[strings.ToLower(scheme)] {
		return nil, nil
	}
	end := strings.IndexAny(body, "/?#")
	if end < 0 {
		end = len(body)
	}
	auth, tail := body[:end], body[end:]
	user := ""
	if at := strings.LastIndexByte(auth, '@'); at >= 0 {
		user, auth = auth[:at+1], auth[at+1:]
	}
	hps, err := unglue(auth)
	if err != nil || hps == nil {
		if err != nil {
			err = fmt.Errorf("%s: %w", strings.ToLower(scheme), err)
		}
		return nil, err
	}
	return []string{scheme + "://" + user + hps[0], scheme + "://" + hps[1] + tail}, nil
}
