package torrc

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestRenderGolden(t *testing.T) {
	fp := "$0008D9640FE4947F73E355F67E20C2D290BBC72C"
	tests := []struct {
		name string
		in   Instance
	}{
		{"country-process", Instance{Key: "country/us", Group: "us", Port: 9060, DataDir: "/var/lib/proxypool/tor/9060",
			ControlSocket: "/var/lib/proxypool/tor/9060/control", ExitNodes: []string{"{us}"},
			MaxCircuitDirtiness: 10 * time.Minute, NewCircuitPeriod: 30 * time.Second}},
		{"country-exclude-systemd", Instance{Key: "country/nonus", Group: "nonus", Port: 9061,
			ExitNodes: []string{"{de}", "{nl}"}, ExcludeExitNodes: []string{"{ch}", "{ua}", "{us}"}}},
		{"grouped-extra", Instance{Key: "grouped/us/104.53.0.0/16", Group: "us", Port: 9062, DataDir: "/d/9062", ControlPort: 19062,
			ExitNodes: []string{"104.53.0.7/32", "104.53.221.159/32"},
			Extra:     []string{"TestingTorNetwork 1", "DirAuthority auth1 orport=25011 v3ident=AA 127.0.1.11:25111 BB", "GeoIPFile /tmp/net/geoip"}}},
		{"grouped-systemd-controlport", Instance{Key: "grouped/us/104.53.0.0/16", Group: "us", Port: 9064, ControlPort: 19064,
			HashedControlPassword: "16:0011223344556677605B1F2D4E6A8C0E1F2A3B4C5D6E7F8091A2B3C4D5",
			ExitNodes:             []string{"104.53.0.7/32"}}},
		{"single", Instance{Key: "single/us/0008D9640FE4947F73E355F67E20C2D290BBC72C", Group: "us", Port: 9063,
			DataDir: "/d/9063", ControlSocket: "/d/9063/control", ExitNodes: []string{fp}, MaxCircuitDirtiness: 1500 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Render(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", tt.name+".torrc")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("render differs from %s:\n%s", golden, got)
			}
			if v := FindVerifier(); v != nil && tt.in.Extra == nil {
				p := filepath.Join(t.TempDir(), "torrc")
				os.WriteFile(p, got, 0o644)
				if err := v.Verify(context.Background(), p); err != nil {
					t.Errorf("real tor rejects the golden file: %v", err)
				}
			}
		})
	}
}

func TestRenderRejects(t *testing.T) {
	base := Instance{Key: "k", Port: 9060, ExitNodes: []string{"{us}"}}
	tests := []struct {
		name string
		mod  func(*Instance)
		want string
	}{
		{"port", func(i *Instance) { i.Port = 0 }, "port 0"},
		{"no exits", func(i *Instance) { i.ExitNodes = nil }, "no ExitNodes"},
		{"two countries in one brace", func(i *Instance) { i.ExitNodes = []string{"{de,nl}"} }, "one two-letter code per braces"},
		{"comma", func(i *Instance) { i.ExitNodes = []string{"a,b"} }, "contains a comma"},
		{"extra newline", func(i *Instance) { i.Extra = []string{"A 1", "B 1\nC 2"} }, "extra-config line 2"},
		{"key newline", func(i *Instance) { i.Key = "a\nb" }, "bad key"},
		{"exclude space", func(i *Instance) { i.ExcludeExitNodes = []string{"{u s}"} }, "whitespace"},
		{"user with a space", func(i *Instance) { i.User = "debian tor" }, `user "debian tor" contains whitespace`},
		{"user newline", func(i *Instance) { i.User = "tor\nControlPort 1" }, "bad path or address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base
			tt.mod(&in)
			_, err := Render(in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

type countingVerifier struct {
	n   int
	err error
}

func (c *countingVerifier) Verify(context.Context, string) error { c.n++; return c.err }

func TestWriteOnlyChangesAndStale(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	v := &countingVerifier{}
	in := Instance{Key: "country/us", Group: "us", Port: 9060, ExitNodes: []string{"{us}"}}
	for i, want := range []bool{true, false} {
		changed, err := Write(ctx, dir, in, v)
		if err != nil || changed != want {
			t.Fatalf("write %d: changed=%v err=%v, want changed=%v", i, changed, err, want)
		}
	}
	if v.n != 1 {
		t.Errorf("verifier ran %d times, want 1 (unchanged files are not re-verified)", v.n)
	}
	st1, _ := os.Stat(Path(dir, 9060))
	in.ExitNodes = []string{"{ca}"}
	if changed, err := Write(ctx, dir, in, v); !changed || err != nil {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	st2, _ := os.Stat(Path(dir, 9060))
	if os.SameFile(st1, st2) {
		t.Error("file replaced in place, want a new inode (rename)")
	}

	// A failing verification keeps the old file and leaves no temp file.
	v.err = os.ErrInvalid
	in.ExitNodes = []string{"{fr}"}
	if _, err := Write(ctx, dir, in, v); err == nil {
		t.Fatal("verify error ignored")
	}
	b, _ := os.ReadFile(Path(dir, 9060))
	if !strings.Contains(string(b), "ExitNodes {ca}") {
		t.Errorf("old file lost:\n%s", b)
	}

	// Keys read back; stale ones go; foreign files stay.
	v.err = nil
	Write(ctx, dir, Instance{Key: "single/us/X", Port: 9061, ExitNodes: []string{"$" + strings.Repeat("A", 40)}}, v)
	os.WriteFile(filepath.Join(dir, "torrc.9062"), []byte("SocksPort 9062\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "torrc"), []byte("SocksPort 9050\n"), 0o644)
	keys, err := ReadKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[9060] != "country/us" || keys[9061] != "single/us/X" {
		t.Errorf("keys = %v", keys)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") || strings.Contains(e.Name(), ".verify-") {
			t.Errorf("temp file left: %s", e.Name())
		}
	}
	removed, err := RemoveStale(dir, []int{9061})
	if err != nil || len(removed) != 1 || removed[0] != 9060 {
		t.Fatalf("removed %v err %v", removed, err)
	}
	for _, f := range []string{"torrc.9061", "torrc.9062", "torrc"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := os.Stat(Path(dir, 9060)); !os.IsNotExist(err) {
		t.Errorf("stale torrc.9060 still there")
	}
}

func TestWriteRealTorRejectsBadConfig(t *testing.T) {
	v := FindVerifier()
	if v == nil {
		t.Skip("tor is not installed (apt-get install tor): cannot run --verify-config")
	}
	dir := t.TempDir()
	in := Instance{Key: "country/us", Port: 9060, ExitNodes: []string{"{us}"}, Extra: []string{"NoSuchOption 1"}}
	_, err := Write(context.Background(), dir, in, v)
	if err == nil || !strings.Contains(err.Error(), "verify-config") {
		t.Fatalf("err = %v, want a verify-config failure", err)
	}
	if _, err := os.Stat(Path(dir, 9060)); !os.IsNotExist(err) {
		t.Error("rejected config landed")
	}
}

// TestVerifierFor: tor.binary is the program --verify-config runs, not
// whatever "tor" is first in $PATH.
func TestVerifierFor(t *testing.T) {
	own := filepath.Join(t.TempDir(), "my-tor")
	if err := os.WriteFile(own, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		bin  string
		want Verifier
	}{
		{"a path is that program", own, TorVerifier{Binary: own}},
		{"a missing program verifies nothing", filepath.Join(t.TempDir(), "tor"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := VerifierFor(tt.bin); got != tt.want {
				t.Errorf("VerifierFor(%q) = %#v, want %#v", tt.bin, got, tt.want)
			}
		})
	}
}
