package store

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// TestFileModes: the database holds every upstream's credentials, so its
// file (and SQLite's -wal and -shm beside it) is the owner's only, or also
// its group's inside a directory closed to others (the units'
// /var/lib/proxypool, 0750), never anyone's; an existing world-readable
// file is tightened when the store opens it.
func TestFileModes(t *testing.T) {
	tests := []struct {
		name     string
		dirMode  fs.FileMode
		existing fs.FileMode // 0: no file before Open
		want     fs.FileMode
	}{
		{"make run's ./var", 0o755, 0, 0o600},
		{"private dir", 0o700, 0, 0o600},
		{"state directory 0750", 0o750, 0, 0o640},
		{"group-writable state directory", 0o770, 0, 0o640},
		{"world-readable file from an older build", 0o755, 0o644, 0o600},
		{"world-readable file in the state directory", 0o750, 0o644, 0o640},
		{"an owner-only file stays so", 0o750, 0o600, 0o600},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tc.dirMode); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "proxypool.db")
			ctx := context.Background()
			if tc.existing != 0 {
				st, err := Open(ctx, path, Options{})
				if err != nil {
					t.Fatal(err)
				}
				st.Close()
				for _, p := range []string{path, path + "-wal", path + "-shm"} {
					os.Chmod(p, tc.existing) // as builds before this one left them
				}
			}
			st, err := Open(ctx, path, Options{FlushInterval: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			u := upstream.MustNew(map[string]any{"type": "socks5", "server": "127.76.0.1", "port": 1080, "username": "u", "password": "secret"})
			if _, err := st.Add(ctx, "manual", u); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{path, path + "-wal", path + "-shm"} {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if got := fi.Mode().Perm(); got != tc.want {
					t.Errorf("%s: mode %v, want %v", filepath.Base(p), got, tc.want)
				}
			}
		})
	}
}
