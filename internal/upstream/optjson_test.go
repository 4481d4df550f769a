package upstream

import (
	"encoding/json"
	"reflect"
	"testing"
)

var optionsSamples = []string{
	`{}`,
	`{"port":1080,"server":"10.0.0.1","type":"socks5"}`,
	` { "a" : 1 , "b" : [ 1 , 2.5 , -3 , 1e3 , -0 , 0.0 , 1E-2 , 12345678901234567890 ] } `,
	`{"alterId":0,"cipher":"auto","name":"🇺🇸 US-1 | free","network":"ws","port":443,"server":"a.example.com",` +
		`"skip-cert-verify":true,"tls":true,"type":"vmess","uuid":"0000-1111","ws-opts":{"headers":{"Host":"cdn.example.com"},"path":"/vmess"}}`,
	`{"x":null,"y":false,"z":[],"w":{},"v":[[{"a":[true]}]]}`,
	`{"big":9007199254740993,"neg":-9223372036854775808,"f":1.5,"e":2e0,"n":123456789012345}`,
	`{"name":"a\"b","type":"http"}`, // escape: encoding/json decides
	`{"name":"\u00e9t\u00e9 \ud83d\ude00 \u003c\u0026\u003e"}`,
	`{"name":"bad utf8 ` + "\xff\xfe" + `"}`,
	`{"a":1,"a":{"b":2}}`, // duplicate key: the last wins
	`null`, `[]`, `{"a":1}x`, `{"a":01}`, `{"a":1.}`, `{"a":-}`, `{"a":1e}`, `{"a":1e400}`, `{"a" 1}`, `{"a":1,}`,
	`{"a":[1,]}`, `{"a":tru}`, `{"a":"x`, `{"a":"tab	in string"}`, `{`, ``, `{"a":nul}`, `{"a":[1 2]}`,
}

// TestFastOptionsMatchesEncodingJSON: the fast decoder returns exactly
// what encoding/json (plus whole-number normalisation) returns, or leaves
// the input to it.
func TestFastOptionsMatchesEncodingJSON(t *testing.T) {
	for _, raw := range optionsSamples {
		checkFastOptions(t, raw)
	}
	if _, ok := fastOptions(optionsSamples[1]); !ok {
		t.Error("fast decoder refused plain options")
	}
	if _, ok := fastOptions(optionsSamples[3]); !ok {
		t.Error("fast decoder refused share-link options")
	}
}

func FuzzFastOptions(f *testing.F) {
	for _, raw := range optionsSamples {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw string) { checkFastOptions(t, raw) })
}

func checkFastOptions(t *testing.T, raw string) {
	t.Helper()
	want, werr := jsonOptions(raw)
	got, ok := fastOptions(raw)
	if !ok {
		return
	}
	if werr != nil {
		t.Fatalf("%q: fast decoder accepted what encoding/json refuses (%v): %#v", raw, werr, got)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\nfast %#v\njson %#v", raw, got, want)
	}
	// and it round-trips like the stored text
	if _, err := json.Marshal(got); err != nil {
		t.Fatal(err)
	}
}
