package source

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFetchConditional(t *testing.T) {
	srv := newListServer(t)
	body := readTestdata(t, "monosans-scheme-uri.txt")
	srv.set("/list.txt", body)
	srv.set("/lm/list.txt", body)
	f := &Fetcher{}
	ctx := context.Background()
	for _, path := range []string{"/list.txt", "/lm/list.txt"} {
		t.Run(path, func(t *testing.T) {
			src := Source{Name: "s", URL: srv.URL + path}
			got, err := f.Fetch(ctx, src, upstream.SourceMeta{})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Body, body) || got.NotModified {
				t.Fatalf("first fetch: %d bytes, not-modified %v", len(got.Body), got.NotModified)
			}
			if got.ETag == "" && got.LastModified == "" {
				t.Fatal("no validators kept")
			}
			if ua := srv.header(path).Get("User-Agent"); ua != DefaultUserAgent {
				t.Fatalf("User-Agent %q", ua)
			}
			prev := upstream.SourceMeta{Name: "s", URL: src.URL, ETag: got.ETag, LastModified: got.LastModified}
			again, err := f.Fetch(ctx, src, prev)
			if err != nil {
				t.Fatal(err)
			}
			if !again.NotModified || again.Body != nil {
				t.Fatalf("second fetch not 304: %+v", again)
			}
			if again.ETag != got.ETag || again.LastModified != got.LastModified {
				t.Fatalf("validators lost on 304: %+v", again)
			}
			if req, full := srv.counts(path); req != 2 || full != 1 {
				t.Fatalf("requests %d, full answers %d; want 2, 1", req, full)
			}
			// a different URL for the same source name never sends old validators
			prev.URL = srv.URL + "/elsewhere"
			if _, err := f.Fetch(ctx, src, prev); err != nil {
				t.Fatal(err)
			}
			if req, full := srv.counts(path); req != 3 || full != 2 {
				t.Fatalf("stale validators used after URL change: %d, %d", req, full)
			}
		})
	}
}

func TestFetchGzip(t *testing.T) {
	srv := newListServer(t)
	body := readTestdata(t, "clarketm-spys-format.txt")
	srv.set("/gz/list.txt", body)     // Content-Encoding: gzip
	srv.set("/list.txt.gz", gz(body)) // a .gz file served as is
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "list.gz"), gz(body), 0o644)
	f := &Fetcher{}
	for _, u := range []string{srv.URL + "/gz/list.txt", srv.URL + "/list.txt.gz", "file://" + filepath.Join(dir, "list.gz")} {
		got, err := f.Fetch(context.Background(), Source{Name: "g", URL: u}, upstream.SourceMeta{})
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		if !bytes.Equal(got.Body, body) {
			t.Fatalf("%s: body not decompressed (%d bytes)", u, len(got.Body))
		}
	}
	if ae := srv.header("/gz/list.txt").Get("Accept-Encoding"); ae != "gzip" {
		t.Fatalf("Accept-Encoding %q", ae)
	}
}

func TestFetchSizeCap(t *testing.T) {
	srv := newListServer(t)
	srv.set("/big.txt", bytes.Repeat([]byte("1.2.3.4:80\n"), 10_000)) // 110 000 bytes, Content-Length
	srv.set("/bomb.gz", gz(bytes.Repeat([]byte("1.2.3.4:80\n"), 100_000)))
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "big.txt"), bytes.Repeat([]byte("1.2.3.4:80\n"), 10_000), 0o644)
	f := &Fetcher{}
	for _, u := range []string{
		srv.URL + "/big.txt",         // Content-Length says too much
		srv.URL + "/chunked-big",     // no Content-Length: cut while reading
		srv.URL + "/bomb.gz",         // small on the wire, 1.1 MB inflated
		"file://" + dir + "/big.txt", // file larger than the cap
	} {
		_, err := f.Fetch(context.Background(), Source{Name: "big", URL: u, MaxBytes: 64 << 10}, upstream.SourceMeta{})
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%s: err = %v, want ErrTooLarge", u, err)
		}
		if !strings.Contains(err.Error(), "max-bytes") {
			t.Fatalf("%s: error does not say which cap: %v", u, err)
		}
	}
}

func TestFetchTimeout(t *testing.T) {
	srv := newListServer(t)
	f := &Fetcher{}
	start := time.Now()
	_, err := f.Fetch(context.Background(), Source{Name: "slow", URL: srv.URL + "/slow", Timeout: 200 * time.Millisecond}, upstream.SourceMeta{})
	if err == nil || !strings.Contains(err.Error(), "timed out after 200ms") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("timeout took %v", d)
	}
}

func TestFetchErrors(t *testing.T) {
	srv := newListServer(t)
	srv.set("/list.txt", []byte("1.2.3.4:80\n"))
	srv.fail("/down", 500)
	f := &Fetcher{}
	tests := []struct{ url, want string }{
		{srv.URL + "/down", "500 Internal Server Error"},
		{srv.URL + "/missing", "404 Not Found"},
		{srv.URL + "/loop0", "stopped after 5 redirects"},
		{"ftp://example.com/x", "scheme must be file, http or https"},
		{"file://example.com/etc/passwd", `not host "example.com"`},
		{"file:///nonexistent/proxypool/list.txt", "no such file"},
		{"file://" + t.TempDir(), "is a directory"},
		{"http://127.0.0.1:1/x", "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			_, err := f.Fetch(context.Background(), Source{Name: "e", URL: tt.url}, upstream.SourceMeta{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	// one redirect is followed
	got, err := f.Fetch(context.Background(), Source{Name: "r", URL: srv.URL + "/redirect-once"}, upstream.SourceMeta{})
	if err != nil || string(got.Body) != "1.2.3.4:80\n" {
		t.Fatalf("redirect: %q %v", got.Body, err)
	}
}

func TestFetchFileURLs(t *testing.T) {
	want := readTestdata(t, "monosans-scheme-uri.txt")
	abs, _ := filepath.Abs("testdata/monosans-scheme-uri.txt")
	tmp := t.TempDir()
	os.MkdirAll(filepath.Join(tmp, "lists"), 0o755)
	os.WriteFile(filepath.Join(tmp, "lists", "a.txt"), want, 0o644)
	tests := []struct {
		name, url, workdir string
	}{
		{"relative to the process", "file://./testdata/monosans-scheme-uri.txt", ""},
		{"relative to WorkDir", "file://./lists/a.txt", tmp},
		{"parent-relative", "file://../source/testdata/monosans-scheme-uri.txt", ""},
		{"absolute", "file://" + abs, ""},
		{"localhost", "file://localhost" + abs, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &Fetcher{WorkDir: tt.workdir}
			got, err := f.Fetch(context.Background(), Source{Name: "f", URL: tt.url}, upstream.SourceMeta{})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Body, want) {
				t.Fatalf("read %d bytes, want %d", len(got.Body), len(want))
			}
			again, err := f.Fetch(context.Background(), Source{Name: "f", URL: tt.url}, upstream.SourceMeta{URL: tt.url, ETag: got.ETag})
			if err != nil || !again.NotModified {
				t.Fatalf("unchanged file not NotModified: %+v %v", again, err)
			}
		})
	}
	// a rewritten file is read again
	p := filepath.Join(tmp, "lists", "a.txt")
	f := &Fetcher{}
	u := "file://" + p
	first, _ := f.Fetch(context.Background(), Source{Name: "f", URL: u}, upstream.SourceMeta{})
	os.WriteFile(p, []byte("5.6.7.8:1080\n"), 0o644)
	os.Chtimes(p, time.Now().Add(time.Minute), time.Now().Add(time.Minute))
	got, err := f.Fetch(context.Background(), Source{Name: "f", URL: u}, upstream.SourceMeta{URL: u, ETag: first.ETag})
	if err != nil || got.NotModified || string(got.Body) != "5.6.7.8:1080\n" {
		t.Fatalf("changed file: %+v %v", got, err)
	}
}
