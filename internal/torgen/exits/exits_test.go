package exits

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/proxypool/proxypool/internal/upstream"
)

func serveTestdata(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.FileServer(http.Dir("testdata")))
	t.Cleanup(srv.Close)
	return srv
}

func TestSourceRecordedFiles(t *testing.T) {
	srv := serveTestdata(t)
	abs, _ := filepath.Abs("testdata/torstatus-2012-01-head200.csv")
	tests := []struct {
		name       string
		url        string
		relays     int
		usable     int
		usableUS   int
		firstNick  string
		firstFP    string
		firstAddr  string
		firstCC    string
		wantFlagFP bool
	}{
		{"torstatus 2017 over http", srv.URL + "/torstatus-2017-04-head300.csv", 300, 124, 15, "reactortornode", "", "78.109.23.1", "UA", false},
		{"torstatus 2013 over http", srv.URL + "/torstatus-2013-09-head200.csv", 200, 72, 17, "", "", "", "DE", false},
		{"torstatus 2012 from file://", "file://" + abs, 200, 65, 20, "0000000000Tibyman", "", "151.66.170.99", "IT", false},
		{"consensus over http", srv.URL + "/consensus-ns-2022-11-19-head400.txt", 400, 91, 0, "seele", "000A10D43011EA4928A35F610405F92B4433B4DC", "104.53.221.159", "", true},
		{"onionoo recorded, no flags", srv.URL + "/onionoo-fp-addr-country-head300.json", 300, 0, 0, "", "00045153816F644E78AD61BD2EDEFC7DA28587A4", "91.66.247.27", "DE", false},
		{"onionoo with flags", srv.URL + "/onionoo-details-flags-synthetic.json", 5, 3, 1, "usexit1", "0008D9640FE4947F73E355F67E20C2D290BBC72C", "204.8.96.141", "US", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := Source{URL: tt.url}.Relays(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != tt.relays {
				t.Errorf("relays = %d, want %d", len(rs), tt.relays)
			}
			u := UsableExits(rs)
			if len(u) != tt.usable {
				t.Errorf("usable exits = %d, want %d", len(u), tt.usable)
			}
			us := 0
			for _, r := range u {
				if !r.UsableExit() {
					t.Errorf("%+v kept but not usable", r)
				}
				if r.Country == "US" {
					us++
				}
			}
			if us != tt.usableUS {
				t.Errorf("usable US exits = %d, want %d", us, tt.usableUS)
			}
			f := rs[0]
			if tt.firstNick != "" && f.Nickname != tt.firstNick {
				t.Errorf("first nickname = %q, want %q", f.Nickname, tt.firstNick)
			}
			if f.Fingerprint != tt.firstFP {
				t.Errorf("first fingerprint = %q, want %q", f.Fingerprint, tt.firstFP)
			}
			if tt.firstAddr != "" && f.Address != tt.firstAddr {
				t.Errorf("first address = %q, want %q", f.Address, tt.firstAddr)
			}
			if f.Country != tt.firstCC {
				t.Errorf("first country = %q, want %q", f.Country, tt.firstCC)
			}
		})
	}
}

func TestSourceCountryLookupForConsensus(t *testing.T) {
	srv := serveTestdata(t)
	rs, err := Source{URL: srv.URL + "/consensus-ns-2022-11-19-head400.txt", Country: func(ip string) string {
		if strings.HasPrefix(ip, "104.") {
			return "us"
		}
		return "de"
	}}.Relays(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Country != "US" || rs[1].Country != "DE" {
		t.Errorf("countries = %q, %q; want US, DE", rs[0].Country, rs[1].Country)
	}
}

func TestBadInputNamesThePlace(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"csv bad port", "Router Name,Country Code,IP Address,ORPort,Flag - Exit\nx,US,1.2.3.4,9001,1\ny,US,1.2.3.5,nine,1\n", `csv line 3: field "ORPort"`},
		{"csv bad ip", "Router Name,Country Code,IP Address,ORPort,Flag - Exit\nx,US,1.2.3,9001,1\n", `csv line 2: field "IP Address"`},
		{"csv bad flag", "Router Name,Country Code,IP Address,ORPort,Flag - Exit\nx,US,1.2.3.4,9001,yes\n", `csv line 2: field "Flag - Exit"`},
		{"csv missing column", "Router Name,IP Address,ORPort\n", `missing column "Flag - Exit"`},
		{"consensus short r", "network-status-version 3\nr a b c\n", "consensus line 2"},
		{"consensus bad id", "network-status-version 3\nr nick !!!! x 2022-01-01 00:00:00 1.2.3.4 9001 0\n", "consensus line 2: bad identity"},
		{"onionoo truncated", `{"relays":[{"fingerprint":"00`, "parsing onionoo details"},
		{"onionoo bad fp", `{"relays":[{"fingerprint":"XYZ","or_addresses":["1.2.3.4:1"]}]}`, "onionoo relay 0"},
		{"unknown", "hello\n", "unrecognized relay document"},
		{"empty", "", "empty relay document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc), "")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestSourceErrors(t *testing.T) {
	srv := serveTestdata(t)
	for _, u := range []string{srv.URL + "/missing.csv", "gopher://x/", "control://127.0.0.1:9051"} {
		if _, err := (Source{URL: u}).Relays(context.Background()); err == nil {
			t.Errorf("%s: no error", u)
		}
	}
	if _, err := (Source{URL: srv.URL + "/torstatus-2017-04-head300.csv", MaxBytes: 100}).Relays(context.Background()); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("size cap: err = %v", err)
	}
}

// fakeTor answers GETINFO from a consensus file and a country table. The
// real control path is exercised against a private tor network in torgen's
// tests; this one pins the key handling and batching.
type fakeTor struct {
	ns    string
	cc    map[string]string
	calls int
}

func (f *fakeTor) GetInfo(_ context.Context, keys ...string) (map[string]string, error) {
	f.calls++
	m := map[string]string{}
	for _, k := range keys {
		switch {
		case k == "ns/all":
			m[k] = f.ns
		case strings.HasPrefix(k, "ip-to-country/"):
			ip := strings.TrimPrefix(k, "ip-to-country/")
			if c, ok := f.cc[ip]; ok {
				m[k] = c
			} else {
				m[k] = "??"
			}
		default:
			return nil, fmt.Errorf("552 unrecognized key %q", k)
		}
	}
	return m, nil
}

func (f *fakeTor) Close() error { return nil }

func TestFromControl(t *testing.T) {
	ns, err := os.ReadFile("testdata/consensus-ns-2022-11-19-head400.txt")
	if err != nil {
		t.Fatal(err)
	}
	ft := &fakeTor{ns: string(ns), cc: map[string]string{"178.218.144.18": "it", "162.247.74.201": "us"}}
	src := Source{URL: "control://127.0.0.1:9051", DialControl: func(ctx context.Context, addr string) (Controller, error) {
		if addr != "127.0.0.1:9051" {
			t.Errorf("dial addr = %q", addr)
		}
		return ft, nil
	}}
	rs, err := src.Relays(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	u := UsableExits(rs)
	if len(u) != 91 {
		t.Fatalf("usable = %d, want 91", len(u))
	}
	got := map[string]string{}
	for _, r := range u {
		got[r.Nickname] = r.Country
	}
	if got["titamon3"] != "IT" || got["CalyxInstitute14"] != "US" {
		t.Errorf("countries: titamon3=%q CalyxInstitute14=%q", got["titamon3"], got["CalyxInstitute14"])
	}
	if ft.calls != 1+2 { // ns/all, then 91 addresses in batches of 64
		t.Errorf("GETINFO calls = %d, want 3", ft.calls)
	}
}

func TestSlotsModes(t *testing.T) {
	relays := []upstream.Relay{
		exit("A", "US", "10.1.0.1", 10), exit("B", "US", "10.1.0.2", 20), exit("C", "US", "10.2.0.1", 5),
		exit("D", "DE", "10.3.0.1", 7), exit("E", "NL", "10.3.0.9", 9), exit("F", "UA", "10.4.0.1", 1),
		exit("G", "", "10.5.0.1", 1),
		{Fingerprint: fp("H"), Country: "US", Address: "10.6.0.1", Flags: []string{"Exit", "Running", "Valid", "BadExit"}},
		{Fingerprint: fp("I"), Country: "US", Address: "10.7.0.1", Flags: []string{"Running", "Valid"}},
	}
	groups := []Group{
		{Name: "us", Countries: []string{"us"}},
		{Name: "nonus", ExcludeCountries: []string{"US", "UA", "CH"}},
		{Name: "fr", Countries: []string{"FR"}},
	}
	tests := []struct {
		mode Mode
		want []string // key: ExitNodes / ExcludeExitNodes
	}{
		{ModeCountry, []string{
			"country/nonus: {de},{nl} / {ch},{ua},{us}",
			"country/us: {us} / ",
		}},
		{ModeGrouped, []string{
			// the /16 itself; every other country of the list excluded
			// (the unknown-country G needs none: GeoIPExcludeUnknown)
			"grouped/nonus/10.3.0.0/16: 10.3.0.0/16 / {ch},{ua},{us}",
			"grouped/us/10.1.0.0/16: 10.1.0.0/16 / {de},{nl},{ua}",
			"grouped/us/10.2.0.0/16: 10.2.0.0/16 / {de},{nl},{ua}",
		}},
		{ModeSingle, []string{
			"single/nonus/" + fp("D") + ": $" + fp("D") + " / ",
			"single/nonus/" + fp("E") + ": $" + fp("E") + " / ",
			"single/us/" + fp("A") + ": $" + fp("A") + " / ",
			"single/us/" + fp("B") + ": $" + fp("B") + " / ",
			"single/us/" + fp("C") + ": $" + fp("C") + " / ",
		}},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			slots, empty, err := Slots(groups, relays, tt.mode)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range slots {
				got = append(got, s.Key+": "+strings.Join(s.ExitNodes, ",")+" / "+strings.Join(s.ExcludeExitNodes, ","))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("slots:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if len(empty) != 1 || empty[0] != "fr" {
				t.Errorf("empty groups = %v, want [fr]", empty)
			}
		})
	}
	if _, _, err := Slots([]Group{{Name: "a b"}}, relays, ModeCountry); err == nil {
		t.Error("group name with a space accepted")
	}
	if _, _, err := Slots([]Group{{Name: "x", Mode: "weird"}}, relays, ModeCountry); err == nil {
		t.Error("bad mode accepted")
	}
}

// Two refreshes from two different recorded exports: buckets present in both
// keep their ports, new ones take free ports, none collide.
func TestAssignPortsStableAcrossRefreshes(t *testing.T) {
	groups := []Group{{Name: "us", Countries: []string{"US"}}, {Name: "nonus", ExcludeCountries: []string{"US", "UA", "CH"}}}
	ports := Ports{Base: 9060, Max: 9299}
	load := func(name string) []Slot {
		rs, err := Source{URL: "testdata/" + name}.Relays(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		slots, _, err := Slots(groups, rs, ModeGrouped)
		if err != nil {
			t.Fatal(err)
		}
		return slots
	}
	first, dropped, err := AssignPorts(load("torstatus-2013-09-head200.csv"), nil, ports)
	if err != nil || len(dropped) != 0 {
		t.Fatalf("first: err=%v dropped=%d", err, len(dropped))
	}
	prev := map[string]Held{}
	for _, s := range first {
		prev[s.Key] = Held{Port: s.Port, Hashed: true}
	}
	checkUnique(t, first, ports)
	second, dropped, err := AssignPorts(load("torstatus-2017-04-head300.csv"), prev, ports)
	if err != nil || len(dropped) != 0 {
		t.Fatalf("second: err=%v dropped=%d", err, len(dropped))
	}
	checkUnique(t, second, ports)
	same, moved, fresh := 0, 0, 0
	for _, s := range second {
		if h, ok := prev[s.Key]; ok {
			if p := h.Port; p != s.Port {
				moved++
				t.Errorf("%s moved from %d to %d", s.Key, p, s.Port)
			}
			same++
		} else {
			fresh++
		}
	}
	if same == 0 || fresh == 0 {
		t.Fatalf("test data should overlap partly: same=%d fresh=%d", same, fresh)
	}
	t.Logf("refresh 1: %d slots; refresh 2: %d slots, %d kept their port, %d new", len(first), len(second), same, fresh)

	// Unchanged input: identical assignment.
	again, _, _ := AssignPorts(load("torstatus-2013-09-head200.csv"), prev, ports)
	for _, s := range again {
		if prev[s.Key].Port != s.Port {
			t.Errorf("same input: %s got %d, had %d", s.Key, s.Port, prev[s.Key].Port)
		}
	}
}

func TestAssignPortsCapAndRange(t *testing.T) {
	var slots []Slot
	for i := 0; i < 10; i++ {
		slots = append(slots, Slot{Key: fmt.Sprintf("single/us/%02d", i), Bandwidth: int64(i)})
	}
	kept, dropped, err := AssignPorts(slots, map[string]Held{"single/us/00": {Port: 9064, Hashed: true}}, Ports{Base: 9060, Max: 9069, MaxInstances: 3})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, s := range kept {
		got[s.Key] = s.Port
	}
	// The old holder keeps 9064; then the two highest-bandwidth new ones,
	// each on its own hashed port (in key order, around 9064).
	p08 := HashedPort("single/us/08", 9060, 9069, map[int]bool{9064: true})
	p09 := HashedPort("single/us/09", 9060, 9069, map[int]bool{9064: true, p08: true})
	want := map[string]int{"single/us/00": 9064, "single/us/08": p08, "single/us/09": p09}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("kept %v, want %v", got, want)
	}
	checkUnique(t, kept, Ports{Base: 9060, Max: 9069})
	if len(dropped) != 7 {
		t.Errorf("dropped %d, want 7", len(dropped))
	}
	kept, _, _ = AssignPorts(slots, map[string]Held{"single/us/00": {Port: 9061, Hashed: true}}, Ports{Base: 9060, Max: 9063, Reserved: []int{9060, 9061}})
	if len(kept) != 2 || kept[0].Port != 9062 || kept[1].Port != 9063 {
		t.Errorf("reserved ports handed out: %d, %d", kept[0].Port, kept[1].Port)
	}
	kept, dropped, _ = AssignPorts(slots, nil, Ports{Base: 9060, Max: 9061})
	if len(kept) != 2 || len(dropped) != 8 {
		t.Errorf("range of 2: kept %d dropped %d", len(kept), len(dropped))
	}
	if _, _, err := AssignPorts(slots, nil, Ports{Base: 9070, Max: 9060}); err == nil {
		t.Error("inverted range accepted")
	}
}

func checkUnique(t *testing.T, slots []Slot, p Ports) {
	t.Helper()
	seen := map[int]string{}
	for _, s := range slots {
		if s.Port < p.Base || s.Port > p.Max {
			t.Errorf("%s: port %d out of range", s.Key, s.Port)
		}
		if k, dup := seen[s.Port]; dup {
			t.Errorf("port %d given to %s and %s", s.Port, k, s.Key)
		}
		seen[s.Port] = s.Key
	}
}

func fp(s string) string { return strings.Repeat(s, 40) }

func exit(name, cc, addr string, bw int64) upstream.Relay {
	return upstream.Relay{Fingerprint: fp(name), Nickname: name, Country: cc, Address: addr, Bandwidth: bw,
		Flags: []string{"Exit", "Fast", "Running", "Valid"}}
}
