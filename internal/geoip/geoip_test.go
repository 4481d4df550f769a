package geoip

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func openTestdata(t testing.TB) *DB {
	t.Helper()
	db, err := Open("testdata/geoip", "testdata/geoip6")
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestCountryTorFiles(t *testing.T) {
	db := openTestdata(t)
	tests := []struct{ ip, want string }{
		{"127.10.0.0", "US"},
		{"127.10.1.2", "US"},
		{"127.10.255.255", "US"},
		{"127.11.0.0", ""},    // gap
		{"127.9.255.255", ""}, // just before
		{"127.20.3.4", "DE"},  // lower-case in the file
		{"127.30.0.1", "FR"},  // dotted bounds
		{"8.8.8.8", "US"},
		{"10.1.2.3", ""}, // "??" is unknown
		{"0.0.0.0", ""},
		{"255.255.255.255", ""},
		{"::ffff:127.10.0.1", "US"}, // v4-mapped
		{"2001:db8::1", "US"},
		{"2001:db8:0:ffff:ffff:ffff:ffff:ffff", "US"},
		{"2001:db8:1::5", "FR"},
		{"2001:db8:2::", ""},
		{"fd00::1", ""},
		{"::", ""},
		{"fe80::1%eth0", ""},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			if got := db.CountryOf(tt.ip); got != tt.want {
				t.Fatalf("CountryOf(%s) = %q, want %q", tt.ip, got, tt.want)
			}
			a := netip.MustParseAddr(tt.ip)
			if got := db.Country(a); got != tt.want {
				t.Fatalf("Country(%s) = %q, want %q", tt.ip, got, tt.want)
			}
			if got := db.CountryIP(net.ParseIP(strings.Split(tt.ip, "%")[0])); got != tt.want {
				t.Fatalf("CountryIP(%s) = %q, want %q", tt.ip, got, tt.want)
			}
		})
	}
	if got := db.CountryOf("not an ip"); got != "" {
		t.Fatalf("garbage address: %q", got)
	}
	if got := db.CountryOf("[2001:db8::1]"); got != "US" {
		t.Fatalf("bracketed v6: %q", got)
	}
	if v4, v6 := db.Len(); v4 != 4 || v6 != 2 {
		t.Fatalf("Len = %d, %d; want 4, 2 (?? lines dropped)", v4, v6)
	}
	var nilDB *DB
	if nilDB.CountryOf("8.8.8.8") != "" {
		t.Fatal("nil DB answered")
	}
}

func TestOpenPathFindsGeoip6(t *testing.T) {
	db, err := OpenPath("testdata/geoip")
	if err != nil {
		t.Fatal(err)
	}
	if got := db.CountryOf("2001:db8:1::1"); got != "FR" {
		t.Fatalf("geoip6 next to geoip not loaded: %q", got)
	}
}

func TestOpenOnlyOneFamily(t *testing.T) {
	db, err := Open("", "testdata/geoip6")
	if err != nil {
		t.Fatal(err)
	}
	if db.CountryOf("127.10.0.1") != "" || db.CountryOf("2001:db8::1") != "US" {
		t.Fatal("v6-only DB")
	}
}

func TestUnsortedFileIsSorted(t *testing.T) {
	p := filepath.Join(t.TempDir(), "geoip")
	os.WriteFile(p, []byte("2132017152,2132082687,DE\n2131361792,2131427327,US\n"), 0o644)
	db, err := Open(p, "")
	if err != nil {
		t.Fatal(err)
	}
	if db.CountryOf("127.10.0.1") != "US" || db.CountryOf("127.20.0.1") != "DE" {
		t.Fatal("unsorted file looked up wrong")
	}
}

func TestMalformedLines(t *testing.T) {
	good := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "%d,%d,US\n", i*10, i*10+5)
		}
		return b.String()
	}
	tests := []struct {
		name    string
		body    string
		wantErr string // "" means it loads
		warns   int
	}{
		{"one bad line in a small file fails", "1,2,US\n3,x,US\n", "geoip:2: bad end address", 0},
		{"wrong field count", "# c\n\n1,2\n", "geoip:3: want 3 comma-separated fields", 0},
		{"reversed range", "5,2,US\n", "geoip:1: start 5 after end 2", 0},
		{"bad country", "1,2,USA\n", `geoip:1: bad country code "USA"`, 0},
		{"out of range", "1,4294967296,US\n", "bad end address", 0},
		{"empty file", "# only comments\n", "no address ranges", 0},
		{"binary garbage", "\x00\x01\x02\n\xff\xfe\n", "geoip:1:", 0},
		{"mostly fine file loads, bad line skipped", good(500) + "oops\n" + good(10), "", 1},
		{"too many bad lines fails", good(2000) + strings.Repeat("oops\n", MaxBadLines+1), "11 of 2011 lines malformed", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "geoip")
			if err := os.WriteFile(p, []byte(tt.body), 0o644); err != nil {
				t.Fatal(err)
			}
			db, err := Open(p, "")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), p) {
					t.Fatalf("err %v does not name the file", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if w := db.Warnings(); len(w) != tt.warns || !strings.Contains(w[0], "geoip:501:") {
				t.Fatalf("warnings = %q", w)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open("", ""); err == nil {
		t.Fatal("no paths accepted")
	}
	if _, err := Open("testdata/nope", ""); err == nil || !strings.Contains(err.Error(), "testdata/nope") {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := Open("x.mmdb", "testdata/geoip6"); err == nil {
		t.Fatal("mmdb with a second path accepted")
	}
	p := filepath.Join(t.TempDir(), "broken.mmdb")
	os.WriteFile(p, []byte("not a maxmind file"), 0o644)
	if _, err := Open(p, ""); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("broken mmdb: %v", err)
	}
}

func TestRealTorGeoipDB(t *testing.T) {
	const p4, p6 = "/usr/share/tor/geoip", "/usr/share/tor/geoip6"
	if _, err := os.Stat(p4); err != nil {
		t.Skip("tor-geoipdb not installed (apt-get install tor-geoipdb)")
	}
	db, err := OpenPath(p4)
	if err != nil {
		t.Fatal(err)
	}
	if w := db.Warnings(); len(w) != 0 {
		t.Fatalf("real file has malformed lines: %q", w[:min(len(w), 3)])
	}
	for ip, want := range map[string]string{
		"8.8.8.8": "US", "1.1.1.1": "AU", "77.88.8.8": "RU", "114.114.114.114": "CN",
		"86.59.21.38": "AT", "171.25.193.9": "SE", "127.0.0.1": "", "10.0.0.1": "",
	} {
		if got := db.CountryOf(ip); got != want {
			t.Errorf("%s → %q, want %q", ip, got, want)
		}
	}
	if _, err := os.Stat(p6); err == nil {
		for ip, want := range map[string]string{"2001:4860:4860::8888": "US", "2a02:6b8::feed:ff": "RU"} {
			if got := db.CountryOf(ip); got != want {
				t.Errorf("%s → %q, want %q", ip, got, want)
			}
		}
	}
}

func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		"16777216,16777471,AU", "1,2,??", "127.0.0.1,127.0.0.2,us", " 1 , 2 , DE ",
		"2001:2::,2001:2:0:ffff:ffff:ffff:ffff:ffff,JP", "::,::1,??", "a,b,c,d", "",
		"4294967295,4294967295,ZZ", "fe80::1%eth0,fe80::2,US",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if lo, hi, cc, err := ParseLine4(line); err == nil {
			if lo > hi || (cc != "" && len(cc) != 2) {
				t.Fatalf("ParseLine4(%q) = %d, %d, %q", line, lo, hi, cc)
			}
		}
		if lo, hi, cc, err := ParseLine6(line); err == nil {
			if hi.Less(lo) || !lo.Is6() || (cc != "" && len(cc) != 2) {
				t.Fatalf("ParseLine6(%q) = %v, %v, %q", line, lo, hi, cc)
			}
		}
	})
}

func BenchmarkCountry(b *testing.B) {
	db := openTestdata(b)
	path := "testdata"
	if _, err := os.Stat("/usr/share/tor/geoip"); err == nil {
		path = "/usr/share/tor"
		var err error
		if db, err = OpenPath("/usr/share/tor/geoip"); err != nil {
			b.Fatal(err)
		}
	}
	ips := []netip.Addr{
		netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("185.220.101.1"),
		netip.MustParseAddr("127.10.0.1"), netip.MustParseAddr("2001:4860:4860::8888"),
	}
	b.Run(path, func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			db.Country(ips[i%len(ips)])
		}
	})
}

func BenchmarkOpenRealFiles(b *testing.B) {
	if _, err := os.Stat("/usr/share/tor/geoip"); err != nil {
		b.Skip("tor-geoipdb not installed")
	}
	for b.Loop() {
		if _, err := OpenPath("/usr/share/tor/geoip"); err != nil {
			b.Fatal(err)
		}
	}
}
