package atomicfile_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/atomicfile"
)

func TestWriteFile(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, path string)
		data    string
		perm    os.FileMode
		wantErr string
	}{
		{name: "new file", data: "hello\n", perm: 0o644},
		{name: "replace", setup: write("old content that is longer\n", 0o600), data: "new\n", perm: 0o640},
		{name: "empty", setup: write("x", 0o644), data: "", perm: 0o600},
		{name: "perm ignores umask", data: "x", perm: 0o666},
		{name: "directory in the way", setup: func(t *testing.T, p string) {
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}, data: "x", perm: 0o644, wantErr: "not a regular file"},
		{name: "missing parent", setup: func(t *testing.T, p string) {
			if err := os.Remove(filepath.Dir(p)); err != nil {
				t.Fatal(err)
			}
		}, data: "x", perm: 0o644, wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "d")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "torrc.9060")
			if tt.setup != nil {
				tt.setup(t, path)
			}
			err := atomicfile.WriteFile(path, []byte(tt.data), tt.perm)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name the file", err)
				}
				assertNoTemp(t, filepath.Dir(path))
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			assertFile(t, path, tt.data, tt.perm)
			assertNoTemp(t, dir)
		})
	}
}

func TestWriteFileRelativeName(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := atomicfile.WriteFile("plain.txt", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	assertFile(t, filepath.Join(dir, "plain.txt"), "x", 0o644)
}

func TestWriteFileReplacesSymlinkWithFile(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	link := filepath.Join(dir, "link")
	if err := os.WriteFile(target, []byte("target"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.WriteFile(link, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	assertFile(t, link, "new", 0o644)
	assertFile(t, target, "target", 0o644) // the link target is not written through
}

func TestWriteIfChanged(t *testing.T) {
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	tests := []struct {
		name        string
		setup       func(t *testing.T, path string)
		data        string
		perm        os.FileMode
		wantChanged bool
		wantMtime   bool // the old mtime survives
	}{
		{name: "missing", data: "a", perm: 0o644, wantChanged: true},
		{name: "same", setup: write("a", 0o644), data: "a", perm: 0o644, wantChanged: false, wantMtime: true},
		{name: "content differs", setup: write("a", 0o644), data: "b", perm: 0o644, wantChanged: true},
		{name: "only perm differs", setup: write("a", 0o600), data: "a", perm: 0o644, wantChanged: true, wantMtime: true},
		{name: "prefix of old", setup: write("abc", 0o644), data: "ab", perm: 0o644, wantChanged: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "f")
			if tt.setup != nil {
				tt.setup(t, path)
				if err := os.Chtimes(path, old, old); err != nil {
					t.Fatal(err)
				}
			}
			changed, err := atomicfile.WriteIfChanged(path, []byte(tt.data), tt.perm)
			if err != nil {
				t.Fatal(err)
			}
			if changed != tt.wantChanged {
				t.Errorf("changed = %v, want %v", changed, tt.wantChanged)
			}
			assertFile(t, path, tt.data, tt.perm)
			if tt.wantMtime {
				fi, _ := os.Stat(path)
				if !fi.ModTime().Equal(old) {
					t.Errorf("mtime = %v, want untouched %v", fi.ModTime(), old)
				}
			}
		})
	}
}

// TestConcurrentReaders checks that a reader never sees a partial file while
// a writer replaces it over and over.
func TestConcurrentReaders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	a := strings.Repeat("a", 64<<10)
	b := strings.Repeat("b", 64<<10)
	if err := atomicfile.WriteFile(path, []byte(a), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		for i := range 50 {
			d := a
			if i%2 == 0 {
				d = b
			}
			if err := atomicfile.WriteFile(path, []byte(d), 0o644); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			return
		default:
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if s := string(got); s != a && s != b {
			t.Fatalf("reader saw a torn file of %d bytes", len(got))
		}
	}
}

func write(data string, perm os.FileMode) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(data), perm); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, perm); err != nil {
			t.Fatal(err)
		}
	}
}

func assertFile(t *testing.T, path, data string, perm os.FileMode) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != data {
		t.Errorf("content = %q, want %q", got, data)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() {
		t.Errorf("%s is %v, want a regular file", path, fi.Mode())
	}
	if fi.Mode().Perm() != perm {
		t.Errorf("perm = %v, want %v", fi.Mode().Perm(), perm)
	}
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}
