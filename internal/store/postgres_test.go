package store

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRebind: the statements the store writes for SQLite reach
// PostgreSQL with its placeholders and names, string literals untouched.
func TestRebind(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"bare placeholders count up", "SELECT a FROM t WHERE b = ? AND c = ?", "SELECT a FROM t WHERE b = $1 AND c = $2"},
		{"numbered keep their number", "UPDATE t SET a = ?2 WHERE id = ?1 OR x = ?12", "UPDATE t SET a = $2 WHERE id = $1 OR x = $12"},
		{"a ? inside a literal stays", "SELECT '?', a FROM t WHERE b = ?", "SELECT '?', a FROM t WHERE b = $1"},
		{"a quote doubled inside a literal", "SELECT 'it''s ?' WHERE a = ?", "SELECT 'it''s ?' WHERE a = $1"},
		{"SQLite names", "SELECT group_concat(x, char(31)) FROM upstreams u NOT INDEXED WHERE id IN (SELECT value FROM json_each(?))",
			"SELECT string_agg(x, chr(31)) FROM upstreams u WHERE id IN (SELECT value FROM json_array_elements_text($1))"},
		{"nothing to do", "SELECT 1", "SELECT 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rebind(tt.in); got != tt.want {
				t.Errorf("rebind(%q)\n = %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestOpenPostgresRefuses: a URL that cannot be a database, or one that
// nothing answers, is a clear error that never shows the password.
func TestOpenPostgresRefuses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tests := []struct{ name, url, want string }{
		{"bad URL", "postgres://u:hunter2@%zz/db", "opening store"},
		{"nobody listens", "postgres://u:hunter2@/db?host=" + t.TempDir() + "&connect_timeout=2", "opening store postgres://u:xxxxx@/db"},
		{"bad port", "postgres://u:hunter2@127.94.0.1:99999/db", "opening store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, open := range []func() (*Store, error){
				func() (*Store, error) { return Open(ctx, tt.url, Options{}) },
				func() (*Store, error) { return OpenReadOnly(ctx, tt.url) },
			} {
				s, err := open()
				if err == nil {
					s.Close()
					t.Fatalf("opened %s", tt.url)
				}
				if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error %q: want it to say %q and hide the password", err, tt.want)
				}
			}
		})
	}
}
