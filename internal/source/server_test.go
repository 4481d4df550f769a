package source

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// listServer is a loopback HTTP server standing in for list hosts, GitHub
// raw and t.me. Bodies can be swapped at run time; requests are counted.
type listServer struct {
	*httptest.Server
	mu       sync.Mutex
	bodies   map[string][]byte // path → body, served with ETag + Last-Modified
	status   map[string]int    // path → forced status
	requests map[string]int
	full     map[string]int // 200 answers
	lastHdr  map[string]http.Header
	inFlight atomic.Int32
	maxInFly atomic.Int32
}

var lastModified = time.Date(2026, 8, 20, 10, 0, 0, 0, time.UTC)

func newListServer(t *testing.T) *listServer {
	t.Helper()
	s := &listServer{
		bodies: map[string][]byte{}, status: map[string]int{},
		requests: map[string]int{}, full: map[string]int{}, lastHdr: map[string]http.Header{},
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *listServer) set(path string, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bodies[path] = body
	delete(s.status, path)
}

func (s *listServer) fail(path string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status[path] = status
}

func (s *listServer) counts(path string) (requests, full int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[path], s.full[path]
}

func (s *listServer) header(path string) http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastHdr[path]
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func (s *listServer) serve(w http.ResponseWriter, r *http.Request) {
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for {
		m := s.maxInFly.Load()
		if n <= m || s.maxInFly.CompareAndSwap(m, n) {
			break
		}
	}
	s.mu.Lock()
	s.requests[r.URL.Path]++
	s.lastHdr[r.URL.Path] = r.Header.Clone()
	body, ok := s.bodies[r.URL.Path]
	status := s.status[r.URL.Path]
	s.mu.Unlock()

	p := r.URL.Path
	switch {
	case status != 0:
		http.Error(w, "forced failure", status)
		return
	case strings.HasPrefix(p, "/slow"):
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		return
	case strings.HasPrefix(p, "/loop"):
		i, _ := strconv.Atoi(strings.TrimPrefix(p, "/loop"))
		http.Redirect(w, r, fmt.Sprintf("/loop%d", i+1), http.StatusFound)
		return
	case p == "/redirect-once":
		http.Redirect(w, r, "/list.txt", http.StatusMovedPermanently)
		return
	case p == "/chunked-big":
		w.Header().Set("Content-Type", "text/plain")
		for i := 0; i < 100; i++ {
			fmt.Fprintf(w, "%s\n", strings.Repeat("x", 1023))
			w.(http.Flusher).Flush()
		}
		return
	case strings.HasPrefix(p, "/s/private"):
		http.Redirect(w, r, "/private", http.StatusFound)
		return
	case strings.HasPrefix(p, "/s/freeconfigs_demo"):
		page := map[string]string{"": "page1", "101": "page2", "96": "page3"}[r.URL.Query().Get("before")]
		if page == "" {
			http.NotFound(w, r)
			return
		}
		b, err := os.ReadFile("testdata/telegram/" + page + ".html")
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		s.mu.Lock()
		s.requests[p+"?"+r.URL.RawQuery]++
		s.full[p]++
		s.mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(b)
		return
	case !ok:
		http.NotFound(w, r)
		return
	}
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	if strings.HasPrefix(p, "/lm/") { // Last-Modified only
		w.Header().Set("Last-Modified", lastModified.Format(http.TimeFormat))
		if ims, err := http.ParseTime(r.Header.Get("If-Modified-Since")); err == nil && !lastModified.After(ims) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	} else {
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	s.mu.Lock()
	s.full[p]++
	s.mu.Unlock()
	if strings.HasPrefix(p, "/gz/") {
		w.Header().Set("Content-Encoding", "gzip")
		body = gz(body)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}
