package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runParseCtl(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

const parseSample = "# list\n1.2.3.4:8080\nvless://@example.com:443?security=tls\ntrojan://pw@5.6.7.8:443#tr\n"

func TestParseJSON(t *testing.T) {
	code, out, errOut := runParseCtl(t, parseSample, "--json", "parse", "-")
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("want 4 JSON lines, got %q", out)
	}
	var recs []map[string]any
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		recs = append(recs, m)
	}
	if recs[0]["skipped"] != true || recs[0]["line"] != 1.0 {
		t.Errorf("line 1: %v", recs[0])
	}
	if recs[1]["ok"] != true || recs[1]["type"] != "http" || recs[1]["server"] != "1.2.3.4" || recs[1]["port"] != 8080.0 || recs[1]["id"] == "" {
		t.Errorf("line 2: %v", recs[1])
	}
	if recs[2]["ok"] != false || recs[2]["error"] != "vless: missing uuid" || recs[2]["line"] != 3.0 {
		t.Errorf("line 3: %v", recs[2])
	}
	if recs[3]["type"] != "trojan" || recs[3]["name"] != "tr" {
		t.Errorf("line 4: %v", recs[3])
	}
	last := strings.Split(strings.TrimSpace(errOut), "\n")
	if got := last[len(last)-1]; got != "parsed 4 lines: 2 ok, 1 failed, 1 skipped" {
		t.Errorf("last stderr line %q", got)
	}
}

func TestParseTableAndFlagsAfterFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "list.txt")
	if err := os.WriteFile(f, []byte(parseSample), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runParseCtl(t, "", "parse", f, "--format", "socks5")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.HasPrefix(out, "LINE  TYPE") || !strings.Contains(out, "socks5  1.2.3.4:8080") || !strings.Contains(out, "trojan  5.6.7.8:443") {
		t.Errorf("table:\n%s", out)
	}
	if !strings.Contains(errOut, "line 3: vless: missing uuid") {
		t.Errorf("stderr: %s", errOut)
	}
}

func TestParseExitCodes(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want int
		msg  string
	}{
		{"no verb", nil, 2, "usage:"},
		{"unknown verb", []string{"frobnicate"}, 2, `unknown verb "frobnicate"`},
		{"bad global flag", []string{"--nope", "parse"}, 2, "flag provided but not defined"},
		{"bad format", []string{"parse", "--format", "xml", "-"}, 2, "unknown --format"},
		{"two files", []string{"parse", "a", "b"}, 2, "at most one FILE"},
		{"missing file", []string{"parse", "/nonexistent/x"}, 1, "no such file"},
		{"too large", []string{"parse", "--max-bytes", "10", "-"}, 1, "input too large"},
		{"help", []string{"help"}, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runParseCtl(t, parseSample, tc.args...)
			if code != tc.want || !strings.Contains(out+errOut, tc.msg) {
				t.Errorf("exit %d (want %d), output %q lacks %q", code, tc.want, out+errOut, tc.msg)
			}
		})
	}
}

// TestParseExitWhenNothingParsed: input whose every line failed exits 1 (a
// script must not take it for a good list); one good line, or nothing but
// comments, exits 0. The summary stays the last line either way.
func TestParseExitWhenNothingParsed(t *testing.T) {
	tests := []struct {
		name, in string
		want     int
		summary  string
	}{
		{"every line failed", "vless://@example.com:443\nsocks5://t:1080\n", 1, "parsed 2 lines: 0 ok, 2 failed, 0 skipped"},
		{"failed and skipped", "# list\n1.2.3.4:99999\n", 1, "parsed 2 lines: 0 ok, 1 failed, 1 skipped"},
		{"one good line", "vless://@example.com:443\n1.2.3.4:80\n", 0, "parsed 2 lines: 1 ok, 1 failed, 0 skipped"},
		{"only comments", "# nothing yet\n", 0, "parsed 1 lines: 0 ok, 0 failed, 1 skipped"},
		{"empty", "", 0, "parsed 0 lines: 0 ok, 0 failed, 0 skipped"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, args := range [][]string{{"parse", "-"}, {"--json", "parse", "-"}} {
				code, _, errOut := runParseCtl(t, tc.in, args...)
				lines := strings.Split(strings.TrimSpace(errOut), "\n")
				if code != tc.want || lines[len(lines)-1] != tc.summary {
					t.Errorf("%v: exit %d (want %d), last stderr line %q (want %q)", args, code, tc.want, lines[len(lines)-1], tc.summary)
				}
			}
		})
	}
}
