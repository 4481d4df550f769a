package geoip

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/proxypool/proxypool/internal/geoip/geoiptest"
	"github.com/proxypool/proxypool/internal/upstream"
)

type recordedASN struct {
	ip  string
	asn uint32
	org string
}

// readRecordedASN reads testdata/asn-recorded.tsv: the exits of a
// recorded free list with the ASN a GeoLite2-ASN lookup gave them.
func readRecordedASN(t *testing.T) []recordedASN {
	t.Helper()
	f, err := os.Open("testdata/asn-recorded.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []recordedASN
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		f := strings.Split(sc.Text(), "\t")
		n, err := strconv.ParseUint(f[1], 10, 32)
		if len(f) != 3 || err != nil {
			t.Fatalf("bad recorded line %q", sc.Text())
		}
		out = append(out, recordedASN{f[0], uint32(n), f[2]})
	}
	if len(out) < 200 {
		t.Fatalf("recorded table has %d rows, want the whole file", len(out))
	}
	return out
}

// writeASNMMDB writes a GeoLite2-ASN-layout database of the recorded
// exits (each a /32).
func writeASNMMDB(t *testing.T, recs []recordedASN) string {
	t.Helper()
	nets := map[string]map[string]any{}
	for _, r := range recs {
		nets[r.ip+"/32"] = map[string]any{"autonomous_system_number": r.asn, "autonomous_system_organization": r.org}
	}
	p := filepath.Join(t.TempDir(), "asn.mmdb")
	geoiptest.WriteMMDB(t, p, "GeoLite2-ASN", nets)
	return p
}

// TestASNFromRecordedTable: every recorded exit answers its ASN and
// organisation; addresses outside the table, garbage and a country-only
// database answer nothing.
func TestASNFromRecordedTable(t *testing.T) {
	recs := readRecordedASN(t)
	db, err := OpenPath(writeASNMMDB(t, recs))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, r := range recs {
		if n, org := db.ASNOf(r.ip); n != r.asn || org != r.org {
			t.Errorf("%s → AS%d %q, want AS%d %q", r.ip, n, org, r.asn, r.org)
		}
	}
	for _, ip := range []string{"127.0.0.1", "2001:db8::1", "not-an-ip", ""} {
		if n, org := db.ASNOf(ip); n != 0 || org != "" {
			t.Errorf("%q → AS%d %q, want unknown", ip, n, org)
		}
	}
	p := filepath.Join(t.TempDir(), "country.mmdb")
	writeMMDB(t, p, map[string]map[string]string{recs[0].ip + "/32": {"country": "US"}})
	cdb, err := OpenPath(p)
	if err != nil {
		t.Fatal(err)
	}
	defer cdb.Close()
	if n, _ := cdb.ASNOf(recs[0].ip); n != 0 {
		t.Errorf("country-only database gave AS%d", n)
	}
}

// TestClassOfRecordedExits: the shipped table classes the recorded
// exits a user would look up: clouds are datacenter, a mobile carrier is
// mobile, an access network is residential, and an override file wins.
func TestClassOfRecordedExits(t *testing.T) {
	over := filepath.Join(t.TempDir(), "classes.txt")
	if err := os.WriteFile(over, []byte("residential AS13335 # ours\nmobile org:telecoms\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	shipped, err := NewClassifier("")
	if err != nil {
		t.Fatal(err)
	}
	overridden, err := NewClassifier(over)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		asn              uint32
		org              string
		shipped, overrid upstream.Class
	}{
		{13335, "Cloudflare, Inc.", upstream.ClassDatacenter, upstream.ClassResidential},
		{132203, "Tencent Building, Kejizhongyi Avenue", upstream.ClassDatacenter, upstream.ClassDatacenter},
		{396982, "Google LLC", upstream.ClassDatacenter, upstream.ClassDatacenter},
		{209641, "Ihor Hosting Ltd", upstream.ClassDatacenter, upstream.ClassDatacenter},
		{51396, "Pfcloud UG (haftungsbeschrankt)", upstream.ClassDatacenter, upstream.ClassDatacenter},
		{31163, "PJSC MegaFon", upstream.ClassMobile, upstream.ClassMobile},
		{7922, "Comcast Cable Communications, LLC", upstream.ClassResidential, upstream.ClassResidential},
		{3320, "Deutsche Telekom AG", upstream.ClassResidential, upstream.ClassResidential},
		{4775, "Globe Telecoms", upstream.ClassResidential, upstream.ClassMobile},
		{0, "", upstream.ClassUnknown, upstream.ClassUnknown},
	} {
		if got := shipped.Class(tc.asn, tc.org); got != tc.shipped {
			t.Errorf("shipped: AS%d %q → %q, want %q", tc.asn, tc.org, got, tc.shipped)
		}
		if got := overridden.Class(tc.asn, tc.org); got != tc.overrid {
			t.Errorf("overridden: AS%d %q → %q, want %q", tc.asn, tc.org, got, tc.overrid)
		}
	}
}

// TestClassifierRejectsBadRules: a broken override file is an error
// naming its line, not a silent miss.
func TestClassifierRejectsBadRules(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"datacenter\n", ":1: want"},
		{"# ok\nserver AS1\n", ":2: unknown exit class"},
		{"mobile ASx\n", `:1: "ASx" is not an AS number`},
		{"mobile AS0\n", "is not an AS number"},
		{"mobile org:\n", ":1: empty org word"},
	} {
		p := filepath.Join(t.TempDir(), "c.txt")
		if err := os.WriteFile(p, []byte(tc.text), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := NewClassifier(p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to hold %q", tc.text, err, tc.want)
		}
	}
	if _, err := NewClassifier(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing override file: no error")
	}
}
