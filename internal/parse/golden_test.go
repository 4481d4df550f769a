package parse

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.golden")

// goldenRecord is the normalized form of a Result kept in golden files.
type goldenRecord struct {
	Line      int            `json:"line"`
	Skipped   bool           `json:"skipped,omitempty"`
	Error     string         `json:"error,omitempty"`
	ID        string         `json:"id,omitempty"`
	Type      string         `json:"type,omitempty"`
	Addr      string         `json:"addr,omitempty"`
	Name      string         `json:"name,omitempty"`
	Country   string         `json:"country,omitempty"`
	Anonymity string         `json:"anonymity,omitempty"`
	Options   map[string]any `json:"options,omitempty"`
}

func render(rs []Result) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, r := range rs {
		g := goldenRecord{Line: r.Line, Skipped: r.Skipped, Country: r.Country, Anonymity: string(r.Anonymity)}
		if r.Err != nil {
			g.Error = r.Err.Error()
		} else if !r.Skipped {
			u := r.Upstream
			g.ID, g.Type, g.Addr, g.Name, g.Options = u.ID, string(u.Type), u.Addr(), u.Name, u.Options
		}
		_ = enc.Encode(g)
	}
	return buf.Bytes()
}

// TestGolden: representative inputs → normalized records. Parsing twice
// gives the same bytes (IDs are stable). go test -run TestGolden -update
// rewrites the .golden files.
func TestGolden(t *testing.T) {
	ins, _ := filepath.Glob("testdata/golden/*")
	n := 0
	for _, in := range ins {
		if strings.HasSuffix(in, ".golden") {
			continue
		}
		n++
		t.Run(filepath.Base(in), func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := Parse(data, Options{})
			if err != nil {
				t.Fatal(err)
			}
			got := render(rs)
			again, _ := Parse(data, Options{})
			if !bytes.Equal(got, render(again)) {
				t.Fatal("two parses of the same input differ")
			}
			golden := in + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if !bytes.Equal(got, want) {
				gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
				for i := 0; i < len(gl) || i < len(wl); i++ {
					var g, w string
					if i < len(gl) {
						g = gl[i]
					}
					if i < len(wl) {
						w = wl[i]
					}
					if g != w {
						t.Errorf("record %d:\n got  %s\n want %s", i+1, g, w)
					}
				}
			}
		})
	}
	if n < 4 {
		t.Fatalf("only %d golden inputs", n)
	}
}
