package probe

import (
	"errors"
	"net/url"
	"testing"

	"github.com/proxypool/proxypool/internal/upstream"
)

func TestParseEchoAndClassify(t *testing.T) {
	const real = "198.51.100.7"
	tests := []struct {
		name      string
		body      string
		wantIP    string
		wantAnon  upstream.Anonymity
		wantTampr bool
	}{
		{"icanhazip plain", "203.0.113.9\n", "203.0.113.9", upstream.AnonElite, false},
		{"httpbin ip", `{"origin": "203.0.113.9"}`, "203.0.113.9", upstream.AnonElite, false},
		{"httpbin get elite", `{"args":{},"headers":{"Host":"j","User-Agent":"x"},"origin":"203.0.113.9","url":"http://j/get"}`, "203.0.113.9", upstream.AnonElite, false},
		{"via header is anonymous", `{"headers":{"Via":"1.1 squid"},"origin":"203.0.113.9"}`, "203.0.113.9", upstream.AnonAnonymous, false},
		{"lower-case proxy header", `{"headers":{"x-forwarded-for":"10.1.1.1"},"origin":"203.0.113.9"}`, "203.0.113.9", upstream.AnonAnonymous, false},
		{"xff with real ip is transparent", `{"headers":{"X-Forwarded-For":"198.51.100.7"},"origin":"198.51.100.7, 203.0.113.9"}`, "203.0.113.9", upstream.AnonTransparent, false},
		{"forwarded for= real ip", `{"headers":{"Forwarded":"for=198.51.100.7;proto=http"},"origin":"203.0.113.9"}`, "203.0.113.9", upstream.AnonTransparent, false},
		{"two origins without real ip", `{"origin":"192.0.2.1, 203.0.113.9"}`, "203.0.113.9", upstream.AnonAnonymous, false},
		{"ifconfig.me all.json", `{"ip_addr":"203.0.113.9","remote_host":"unavailable","user_agent":"x","port":1,"method":"GET","via":"","forwarded":""}`, "203.0.113.9", upstream.AnonElite, false},
		{"ifconfig.me with forwarded", `{"ip_addr":"203.0.113.9","via":"1.1 proxy","forwarded":""}`, "203.0.113.9", upstream.AnonAnonymous, false},
		{"judge on our own address is not a leak", `{"headers":{"Host":"198.51.100.7:8080"},"origin":"203.0.113.9","url":"http://198.51.100.7:8080/get"}`, "203.0.113.9", upstream.AnonElite, false},
		{"headers only (httpbin /headers)", `{"headers":{"Host":"j"}}`, "", upstream.AnonElite, false},
		{"html injected", "<html><script>ad()</script>203.0.113.9</html>", "", "", true},
		{"faked ip echo", `{"origin":"not-an-ip"}`, "", "", true},
		{"empty", "", "", "", true},
		{"json without anything", `{"hello":"world"}`, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := parseEcho([]byte(tt.body))
			if tt.wantTampr {
				if !errors.Is(err, errTamper) {
					t.Fatalf("want tamper error, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseEcho: %v", err)
			}
			if e.IP != tt.wantIP {
				t.Errorf("IP = %q, want %q", e.IP, tt.wantIP)
			}
			if got := classify(e, real); got != tt.wantAnon {
				t.Errorf("anonymity = %q, want %q", got, tt.wantAnon)
			}
		})
	}
}

func TestSameSlash24(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want bool
	}{
		{"127.0.0.1", "127.0.0.9", true},
		{"127.0.0.1", "127.10.0.1", false},
		{"198.51.100.7", "198.51.100.200", true},
		{"198.51.100.7", "198.51.101.7", false},
		{"2001:db8::1", "2001:db8::2", true},
		{"2001:db8::1", "127.0.0.1", false},
		{"x", "127.0.0.1", false},
	} {
		if got := sameSlash24(tt.a, tt.b); got != tt.want {
			t.Errorf("sameSlash24(%s,%s) = %v", tt.a, tt.b, got)
		}
	}
}

// TestProveNonce: an answer through an upstream proves it is the judge's by
// echoing our nonce unchanged; only a verified TLS connection to the judge
// may do without it (a plain-IP or /ip judge).
func TestProveNonce(t *testing.T) {
	const nonce = "n0nce"
	tests := []struct {
		name     string
		judge    string
		insecure bool
		headers  map[string]string
		tamper   bool
	}{
		{"http, echoed", "http://j/get", false, map[string]string{nonceHeader: nonce}, false},
		{"http, missing", "http://j/get", false, map[string]string{"Host": "j"}, true},
		{"http, plain-IP judge", "http://j/plain", false, nil, true},
		{"http, rewritten", "http://j/get", false, map[string]string{nonceHeader: "other"}, true},
		{"https verified, missing", "https://j/ip", false, nil, false},
		{"https verified, rewritten", "https://j/get", false, map[string]string{nonceHeader: "other"}, true},
		{"https unverified, missing", "https://j/ip", true, nil, true},
		{"https unverified, echoed", "https://j/get", true, map[string]string{nonceHeader: nonce}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Prober{opts: Options{InsecureJudges: tt.insecure}}
			j, err := url.Parse(tt.judge)
			if err != nil {
				t.Fatal(err)
			}
			err = p.proveNonce(j, echo{Headers: tt.headers}, nonce)
			if got := errors.Is(err, errTamper); got != tt.tamper {
				t.Fatalf("proveNonce = %v, want tamper %v", err, tt.tamper)
			}
		})
	}
}
