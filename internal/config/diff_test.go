package config

import (
	"reflect"
	"testing"
)

func TestDiff(t *testing.T) {
	base := `
gateway:
  strategy: round-robin
  ports:
    - listen: 127.0.0.1:8001
      group: us
groups:
  us: {countries: [US], min-healthy: 2}
log: {level: info}
`
	tests := []struct {
		name, edited string
		want         []string
	}{
		{"same file", base, nil},
		{"strategy and log level", `
gateway:
  strategy: sticky
  ports:
    - listen: 127.0.0.1:8001
      group: us
groups:
  us: {countries: [US], min-healthy: 2}
log: {level: debug}
`, []string{"gateway.ports", "gateway.strategy", "log.level"}}, // the port's strategy follows gateway.strategy
		{"a port and a group floor", `
gateway:
  strategy: round-robin
  ports:
    - listen: 127.0.0.1:8001
      group: us
    - listen: 127.0.0.1:8002
groups:
  us: {countries: [US], min-healthy: 3}
  de: {countries: [DE]}
log: {level: info}
`, []string{"gateway.ports", "groups.de", "groups.us.min-healthy"}},
		{"a source", base + `
sources:
  - {name: extra, url: "file:///tmp/x.txt"}
`, []string{"sources"}},
	}
	a, err := Parse([]byte(base), "a.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Parse([]byte(tt.edited), "b.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if got := Diff(a, b); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Diff = %q, want %q", got, tt.want)
			}
		})
	}
}
