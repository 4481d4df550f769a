// Package geoiptest writes MaxMind-format databases for tests: the
// country and ASN layouts geoip reads, from a table, since a real
// GeoLite2 or DB-IP file cannot be fetched offline.
package geoiptest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"testing"
)

// mmdbEnc encodes MaxMind DB data (format spec:
// https://maxmind.github.io/MaxMind-DB/); WriteMMDB lays it under an IPv6
// search tree with 24-bit records, IPv4 under ::/96.
type mmdbEnc struct{ bytes.Buffer }

func (e *mmdbEnc) ctrl(typ byte, size int) {
	// sizes 29..284 take one more byte after the control (and type) bytes
	var ext []byte
	switch {
	case size >= 29+256:
		panic("test encoder: size too large")
	case size >= 29:
		ext, size = []byte{byte(size - 29)}, 29
	}
	if typ <= 7 {
		e.WriteByte(typ<<5 | byte(size))
	} else {
		e.WriteByte(byte(size))
		e.WriteByte(typ - 7)
	}
	e.Write(ext)
}

func (e *mmdbEnc) str(s string) { e.ctrl(2, len(s)); e.WriteString(s) }
func (e *mmdbEnc) mapN(n int)   { e.ctrl(7, n) }

func (e *mmdbEnc) uint(typ byte, v uint64) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	i := 0
	for i < 8 && b[i] == 0 {
		i++
	}
	e.ctrl(typ, 8-i)
	e.Write(b[i:])
}

type mmdbNode struct{ rec [2]int } // >0: node index+1; <0: -(data offset+1); 0: empty

// value encodes v: a string, a uint32 (as uint32), or a map of them.
func (e *mmdbEnc) value(v any) {
	switch v := v.(type) {
	case string:
		e.str(v)
	case uint32:
		e.uint(6, uint64(v))
	case map[string]any:
		e.mapN(len(v))
		for k, x := range v {
			e.str(k)
			e.value(x)
		}
	default:
		panic(fmt.Sprintf("test encoder: cannot encode %T", v))
	}
}

// WriteMMDB writes a database of type dbType holding each network's
// record (strings, uint32s and maps of them), as GeoLite2-ASN or
// GeoIP2-Country files are laid out.
func WriteMMDB(t testing.TB, path, dbType string, nets map[string]map[string]any) {
	t.Helper()
	nodes := []mmdbNode{{}}
	var data mmdbEnc
	for cidr, rec := range nets {
		p := netip.MustParsePrefix(cidr)
		bitsLen := p.Bits()
		addr := p.Addr().As16()
		if p.Addr().Is4() { // IPv4 lives at ::a.b.c.d/96+n, not at ::ffff:0:0/96
			bitsLen += 96
			addr = [16]byte{}
			v4 := p.Addr().As4()
			copy(addr[12:], v4[:])
		}
		off := data.Len()
		data.value(rec)
		n := 0
		for i := 0; i < bitsLen; i++ {
			bit := int(addr[i/8]>>(7-i%8)) & 1
			if i == bitsLen-1 {
				nodes[n].rec[bit] = -(off + 1)
				break
			}
			if nodes[n].rec[bit] <= 0 {
				nodes = append(nodes, mmdbNode{})
				nodes[n].rec[bit] = len(nodes)
			}
			n = nodes[n].rec[bit] - 1
		}
	}
	var out bytes.Buffer
	count := len(nodes)
	for _, nd := range nodes {
		for _, r := range nd.rec {
			v := count // empty
			switch {
			case r > 0:
				v = r - 1
			case r < 0:
				v = count + 16 + (-r - 1)
			}
			out.Write([]byte{byte(v >> 16), byte(v >> 8), byte(v)})
		}
	}
	out.Write(make([]byte, 16))
	out.Write(data.Bytes())
	out.WriteString("\xAB\xCD\xEFMaxMind.com")
	var md mmdbEnc
	md.mapN(8)
	md.str("node_count")
	md.uint(6, uint64(count))
	md.str("record_size")
	md.uint(5, 24)
	md.str("ip_version")
	md.uint(5, 6)
	md.str("database_type")
	md.str(dbType)
	md.str("languages")
	md.ctrl(11, 1)
	md.str("en")
	md.str("binary_format_major_version")
	md.uint(5, 2)
	md.str("binary_format_minor_version")
	md.uint(5, 0)
	md.str("build_epoch")
	md.uint(9, 1_700_000_000)
	out.Write(md.Bytes())
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
