package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// TestListAndExportExitQuality: list shows each exit's ASN, class and
// IPv6 and filters by --asn and --class, export's live_proxies.json
// carries asn, org, class and ipv6, and a bad filter is a usage error
// naming it.
func TestListAndExportExitQuality(t *testing.T) {
	servers := []string{"127.74.0.1", "127.74.0.2", "127.74.0.3"}
	quals := []upstream.Quality{
		{ASN: 13335, Org: "Cloudflare, Inc.", Class: upstream.ClassDatacenter},
		{ASN: 7922, Org: "Comcast Cable Communications, LLC", Class: upstream.ClassResidential, IPv6: true},
		{ASN: 31163, Org: "PJSC MegaFon", Class: upstream.ClassMobile},
	}
	path, idList := dbWithChecks(t, servers, func(i int, id string) upstream.CheckResult {
		r := upstream.CheckResult{ID: id, At: time.Now(), OK: true, TotalMS: 50, ExitIP: "198.51.100.1",
			Anonymity: upstream.AnonElite, Caps: upstream.CapConnect}
		r.Quality = quals[i]
		return r
	})
	ids := map[string]string{}
	for i, id := range idList {
		ids[id] = servers[i]
	}

	listed := func(out string) []string {
		var got []string
		for id, server := range ids {
			if strings.Contains(out, id) {
				got = append(got, server)
			}
		}
		slices.Sort(got)
		return got
	}
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"list"}, []string{"127.74.0.1", "127.74.0.2", "127.74.0.3"}},
		{[]string{"list", "--asn", "AS7922"}, []string{"127.74.0.2"}},
		{[]string{"list", "--class", "mobile"}, []string{"127.74.0.3"}},
		{[]string{"export", "--format", "txt", "--class", "datacenter"}, []string{"127.74.0.1"}},
	} {
		out := mustCtl(t, append([]string{"--db", path}, tt.args...)...)
		if tt.args[0] == "export" {
			// a txt export names servers, not ids
			var got []string
			for _, s := range servers {
				if strings.Contains(out, s+":") {
					got = append(got, s)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("%v: %v, want %v\n%s", tt.args, got, tt.want, out)
			}
			continue
		}
		if got := listed(out); !slices.Equal(got, tt.want) {
			t.Errorf("%v: %v, want %v\n%s", tt.args, got, tt.want, out)
		}
	}
	out := mustCtl(t, "--db", path, "list", "--asn", "7922")
	header, row, _ := strings.Cut(out, "\n")
	if f := strings.Fields(header); !slices.Contains(f, "ASN") || !slices.Contains(f, "CLASS") || !slices.Contains(f, "IPV6") ||
		!strings.Contains(row, "AS7922") || !strings.Contains(row, "residential") || !strings.Contains(row, "yes") {
		t.Errorf("list row does not show the exit's quality:\n%s", out)
	}

	var live []map[string]any
	if err := json.Unmarshal([]byte(mustCtl(t, "--db", path, "export", "--format", "json", "--asn", "7922")), &live); err != nil {
		t.Fatal(err)
	}
	if len(live) != 1 || live[0]["asn"] != 7922.0 || live[0]["org"] != "Comcast Cable Communications, LLC" ||
		live[0]["class"] != "residential" || live[0]["ipv6"] != true {
		t.Errorf("live_proxies.json: %v", live)
	}

	for _, args := range [][]string{{"list", "--asn", "ASx"}, {"export", "--class", "hosting"}} {
		code, _, errOut := ctl(t, "", append([]string{"--db", path}, args...)...)
		if code != exitUsage || !strings.Contains(errOut, args[1]) {
			t.Errorf("%v: exit %d, %q; want a usage error naming %s", args, code, errOut, args[1])
		}
	}
}
