package geoip

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// range4 is one line of Tor's geoip file. cc is an index into codes.
type range4 struct {
	lo, hi uint32
	cc     uint16
}

// u128 is an IPv6 address as a big-endian pair, for ordering.
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

func u128Of(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

type range6 struct {
	lo, hi u128
	cc     uint16
}

// codeList and codeIndex intern every two-character code (A-Z, 0-9) so a
// range stores 2 bytes and a lookup returns a shared string. Both are built
// once at package init and only read after.
var codeList, codeIndex = buildCodes()

func buildCodes() ([]string, map[string]uint16) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	list := make([]string, 0, len(alphabet)*len(alphabet))
	index := make(map[string]uint16, len(alphabet)*len(alphabet))
	for i := 0; i < len(alphabet); i++ {
		for j := 0; j < len(alphabet); j++ {
			c := string([]byte{alphabet[i], alphabet[j]})
			index[c] = uint16(len(list))
			list = append(list, c)
		}
	}
	return list, index
}

// ParseLine4 parses one data line of Tor's IPv4 geoip file:
// "INTIPLOW,INTIPHIGH,CC", where the bounds are decimal uint32 (dotted IPv4
// is accepted too). It returns the country code upper-cased, and "" for
// Tor's unknown marker "??".
func ParseLine4(line string) (lo, hi uint32, cc string, err error) {
	f, err := fields3(line)
	if err != nil {
		return 0, 0, "", err
	}
	if lo, err = parse4(f[0]); err != nil {
		return 0, 0, "", fmt.Errorf("bad start address: %w", err)
	}
	if hi, err = parse4(f[1]); err != nil {
		return 0, 0, "", fmt.Errorf("bad end address: %w", err)
	}
	if lo > hi {
		return 0, 0, "", fmt.Errorf("start %s after end %s", f[0], f[1])
	}
	cc, err = parseCC(f[2])
	return lo, hi, cc, err
}

// ParseLine6 parses one data line of Tor's geoip6 file:
// "IPV6LOW,IPV6HIGH,CC" with textual IPv6 addresses.
func ParseLine6(line string) (lo, hi netip.Addr, cc string, err error) {
	f, err := fields3(line)
	if err != nil {
		return lo, hi, "", err
	}
	if lo, err = parse6(f[0]); err != nil {
		return netip.Addr{}, netip.Addr{}, "", fmt.Errorf("bad start address: %w", err)
	}
	if hi, err = parse6(f[1]); err != nil {
		return netip.Addr{}, netip.Addr{}, "", fmt.Errorf("bad end address: %w", err)
	}
	if hi.Less(lo) {
		return netip.Addr{}, netip.Addr{}, "", fmt.Errorf("start %s after end %s", f[0], f[1])
	}
	cc, err = parseCC(f[2])
	return lo, hi, cc, err
}

func fields3(line string) ([3]string, error) {
	var f [3]string
	a, rest, ok1 := strings.Cut(line, ",")
	b, c, ok2 := strings.Cut(rest, ",")
	if !ok1 || !ok2 || strings.IndexByte(c, ',') >= 0 {
		return f, fmt.Errorf("want 3 comma-separated fields (start,end,country), got %d", strings.Count(line, ",")+1)
	}
	f[0], f[1], f[2] = strings.TrimSpace(a), strings.TrimSpace(b), strings.TrimSpace(c)
	return f, nil
}

func parse4(s string) (uint32, error) {
	if strings.Contains(s, ".") {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return 0, fmt.Errorf("%q is not an IPv4 address", s)
		}
		return binary.BigEndian.Uint32(a.AsSlice()), nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a 32-bit decimal address", s)
	}
	return uint32(n), nil
}

func parse6(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q is not an IPv6 address", s)
	}
	return a, nil
}

func parseCC(s string) (string, error) {
	if s == "??" {
		return "", nil
	}
	if c := code(s); c != "" {
		return c, nil
	}
	return "", fmt.Errorf("bad country code %q", s)
}

// lineReader walks the data lines of a range file, counting bad lines
// against the tolerance in the package doc.
type lineReader struct {
	name     string
	sc       *bufio.Scanner
	line     int
	data     int // data (non-comment, non-blank) lines seen
	bad      int
	firstBad error
	warnings []string
}

func newLineReader(r io.Reader, name string, warnings []string) *lineReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 64*1024)
	return &lineReader{name: name, sc: sc, warnings: warnings}
}

// next returns the next data line, or ok=false at the end.
func (lr *lineReader) next() (string, bool) {
	for lr.sc.Scan() {
		lr.line++
		s := strings.TrimSpace(lr.sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		lr.data++
		return s, true
	}
	return "", false
}

func (lr *lineReader) badLine(err error) {
	lr.bad++
	e := fmt.Errorf("%s:%d: %w", lr.name, lr.line, err)
	if lr.firstBad == nil {
		lr.firstBad = e
	}
	lr.warnings = append(lr.warnings, e.Error())
}

// finish applies the tolerance and returns the final error, if any.
func (lr *lineReader) finish() error {
	if err := lr.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("reading geoip: %s:%d: line too long (not a geoip file?)", lr.name, lr.line+1)
		}
		return fmt.Errorf("reading geoip: %s: %w", lr.name, err)
	}
	if lr.bad > 0 && (lr.bad > MaxBadLines || lr.bad*100 > lr.data) {
		return fmt.Errorf("reading geoip: %d of %d lines malformed, first: %w", lr.bad, lr.data, lr.firstBad)
	}
	if lr.data == 0 {
		return fmt.Errorf("reading geoip: %s: no address ranges", lr.name)
	}
	return nil
}

func read4(r io.Reader, name string, warnings []string) ([]range4, []string, error) {
	lr := newLineReader(r, name, warnings)
	var out []range4
	for {
		s, ok := lr.next()
		if !ok {
			break
		}
		lo, hi, cc, err := ParseLine4(s)
		if err != nil {
			lr.badLine(err)
			continue
		}
		if cc == "" {
			continue // "??": same as no entry
		}
		out = append(out, range4{lo, hi, codeIndex[cc]})
	}
	if err := lr.finish(); err != nil {
		return nil, warnings, err
	}
	if !sort.SliceIsSorted(out, func(i, j int) bool { return out[i].lo < out[j].lo }) {
		sort.SliceStable(out, func(i, j int) bool { return out[i].lo < out[j].lo })
	}
	return out, lr.warnings, nil
}

func read6(r io.Reader, name string, warnings []string) ([]range6, []string, error) {
	lr := newLineReader(r, name, warnings)
	var out []range6
	for {
		s, ok := lr.next()
		if !ok {
			break
		}
		lo, hi, cc, err := ParseLine6(s)
		if err != nil {
			lr.badLine(err)
			continue
		}
		if cc == "" {
			continue
		}
		out = append(out, range6{u128Of(lo), u128Of(hi), codeIndex[cc]})
	}
	if err := lr.finish(); err != nil {
		return nil, warnings, err
	}
	less := func(i, j int) bool { return out[i].lo.less(out[j].lo) }
	if !sort.SliceIsSorted(out, less) {
		sort.SliceStable(out, less)
	}
	return out, lr.warnings, nil
}

// lookup4 finds the last range starting at or before ip and checks it
// covers ip. Ranges in Tor's files do not overlap.
func lookup4(rs []range4, ip netip.Addr) string {
	x := binary.BigEndian.Uint32(ip.AsSlice())
	i := sort.Search(len(rs), func(i int) bool { return rs[i].lo > x }) - 1
	if i < 0 || rs[i].hi < x {
		return ""
	}
	return codeList[rs[i].cc]
}

func lookup6(rs []range6, ip netip.Addr) string {
	x := u128Of(ip)
	i := sort.Search(len(rs), func(i int) bool { return x.less(rs[i].lo) }) - 1
	if i < 0 || rs[i].hi.less(x) {
		return ""
	}
	return codeList[rs[i].cc]
}
