package source

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// Defaults used when a Source or Fetcher leaves a field zero.
const (
	DefaultTimeout      = 60 * time.Second
	DefaultMaxBytes     = 64 << 20
	DefaultConcurrency  = 8
	DefaultMaxRedirects = 5
	DefaultTelegramBase = "https://t.me"
	DefaultTelegramPage = 3
	DefaultUserAgent    = "proxypool/1 (+https://github.com/proxypool/proxypool)"
)

// ErrTooLarge is wrapped by fetch errors for bodies past a source's
// max-bytes (before or after gzip decompression).
var ErrTooLarge = errors.New("body larger than max-bytes")

// Fetched is the outcome of one fetch.
type Fetched struct {
	Body         []byte // nil when NotModified
	NotModified  bool   // the source is unchanged since prev: nothing to parse
	ETag         string // validators to store for the next conditional fetch
	LastModified string
}

// Fetch reads one source's bytes, conditionally against prev (the meta
// stored after the last fetch; the zero value fetches unconditionally). It
// applies the source's timeout and size cap and undoes gzip. It does not
// parse. Validators in prev are used only when prev.URL is src.URL (or
// empty), so changing a source's URL always fetches afresh.
func (f *Fetcher) Fetch(ctx context.Context, src Source, prev upstream.SourceMeta) (Fetched, error) {
	timeout := src.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if prev.URL != "" && prev.URL != src.URL {
		prev = upstream.SourceMeta{}
	}
	u, err := url.Parse(strings.TrimSpace(src.URL))
	if err != nil {
		return Fetched{}, fmt.Errorf("bad source url: %w", err)
	}
	var out Fetched
	switch scheme := strings.ToLower(u.Scheme); {
	case scheme == "file":
		out, err = f.fetchFile(u, maxBytes(src), prev)
	case telegramChannel(u) != "":
		out, err = f.fetchTelegram(ctx, telegramChannel(u), maxBytes(src), prev)
	case scheme == "http" || scheme == "https":
		out, err = f.fetchHTTP(ctx, u.String(), maxBytes(src), prev)
	default:
		return Fetched{}, fmt.Errorf("bad source url %q: scheme must be file, http or https", u.Redacted())
	}
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("timed out after %v: %w", timeout, err)
	}
	return out, err
}

func maxBytes(src Source) int64 {
	if src.MaxBytes > 0 {
		return src.MaxBytes
	}
	return DefaultMaxBytes
}

// httpClient is the configured client, or (built once per Fetcher) one
// that caps redirects and refuses those to nearer addresses than the
// source's own (checkRedirect), does not decompress behind our back (we ask for gzip
// ourselves) and honours the usual proxy environment variables.
func (f *Fetcher) httpClient() *http.Client {
	if f.Client != nil {
		return f.Client
	}
	f.ownOnce.Do(func() {
		max := f.MaxRedirects
		if max <= 0 {
			max = DefaultMaxRedirects
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DisableCompression = true
		f.own = &http.Client{Transport: tr, CheckRedirect: f.checkRedirect(max)}
	})
	return f.own
}

// closeIdle drops the keep-alive connections of the Fetcher's own client,
// so nothing lingers between refreshes.
func (f *Fetcher) closeIdle() {
	if f.Client == nil {
		f.httpClient().CloseIdleConnections()
	}
}

func (f *Fetcher) userAgent() string {
	if f.UserAgent != "" {
		return f.UserAgent
	}
	return DefaultUserAgent
}

// get performs one GET; the caller closes the body.
func (f *Fetcher) get(ctx context.Context, client *http.Client, rawURL string, hdr http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("bad source url: %w", err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", f.userAgent())
	req.Header.Set("Accept-Encoding", "gzip")
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "*/*")
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err // *url.Error: `Get "URL": cause`, password redacted
	}
	return resp, nil
}

func (f *Fetcher) fetchHTTP(ctx context.Context, rawURL string, max int64, prev upstream.SourceMeta) (Fetched, error) {
	hdr := http.Header{}
	if prev.ETag != "" && !strings.HasPrefix(prev.ETag, ownTagPrefix) {
		hdr.Set("If-None-Match", prev.ETag)
	}
	if prev.LastModified != "" {
		hdr.Set("If-Modified-Since", prev.LastModified)
	}
	resp, err := f.get(ctx, f.httpClient(), rawURL, hdr)
	if err != nil {
		return Fetched{}, err
	}
	defer resp.Body.Close()
	out := Fetched{ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified")}
	if resp.StatusCode == http.StatusNotModified {
		if out.ETag == "" {
			out.ETag = prev.ETag
		}
		if out.LastModified == "" {
			out.LastModified = prev.LastModified
		}
		out.NotModified = true
		return out, nil
	}
	where := "GET " + redact(resp.Request.URL)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return Fetched{}, fmt.Errorf("%s: %s", where, resp.Status)
	}
	out.Body, err = readBody(resp, max)
	if err != nil {
		return Fetched{}, fmt.Errorf("%s: %w", where, err)
	}
	return out, nil
}

// readBody reads a response body under the cap, undoing gzip.
func readBody(resp *http.Response, max int64) ([]byte, error) {
	if resp.ContentLength > max {
		return nil, fmt.Errorf("%w: Content-Length %d, max-bytes %d", ErrTooLarge, resp.ContentLength, max)
	}
	b, err := readCapped(resp.Body, max)
	if err != nil {
		return nil, err
	}
	enc := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding")))
	switch enc {
	case "", "identity":
		return maybeGunzip(b, max)
	case "gzip", "x-gzip":
		if !isGzip(b) {
			return nil, errors.New("Content-Encoding gzip but the body is not gzip")
		}
		return maybeGunzip(b, max)
	default:
		return nil, fmt.Errorf("unsupported Content-Encoding %q", enc)
	}
}

// readCapped reads r to the end, failing once it passes max bytes.
func readCapped(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading body: %w", err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max)
	}
	return b, nil
}

func isGzip(b []byte) bool { return len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b }

// maybeGunzip decompresses gzip bytes (recognized by their magic number)
// under the same cap, so a small bomb cannot blow up memory.
func maybeGunzip(b []byte, max int64) ([]byte, error) {
	if !isGzip(b) {
		return b, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("decompressing gzip: %w", err)
	}
	out, err := readCapped(zr, max)
	if err != nil {
		return nil, fmt.Errorf("decompressing gzip: %w", err)
	}
	return out, nil
}

// fetchFile reads file:///abs/path or file://./rel/path (relative to
// Fetcher.WorkDir, else the process's working directory). Its validator is
// the file's size and modification time.
func (f *Fetcher) fetchFile(u *url.URL, max int64, prev upstream.SourceMeta) (Fetched, error) {
	path, err := f.filePath(u)
	if err != nil {
		return Fetched{}, err
	}
	fh, err := os.Open(path)
	if err != nil {
		return Fetched{}, fmt.Errorf("reading source file: %w", err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return Fetched{}, fmt.Errorf("reading source file: %w", err)
	}
	if fi.IsDir() {
		return Fetched{}, fmt.Errorf("reading source file: %s is a directory", path)
	}
	out := Fetched{
		ETag:         ownTagPrefix + "file-" + strconv.FormatInt(fi.Size(), 10) + "-" + strconv.FormatInt(fi.ModTime().UnixNano(), 10),
		LastModified: fi.ModTime().UTC().Format(http.TimeFormat),
	}
	if prev.ETag == out.ETag {
		out.NotModified = true
		return out, nil
	}
	if fi.Size() > max {
		return Fetched{}, fmt.Errorf("reading source file %s: %w: %d bytes, max-bytes %d", path, ErrTooLarge, fi.Size(), max)
	}
	b, err := readCapped(fh, max)
	if err == nil {
		b, err = maybeGunzip(b, max)
	}
	if err != nil {
		return Fetched{}, fmt.Errorf("reading source file %s: %w", path, err)
	}
	out.Body = b
	return out, nil
}

func (f *Fetcher) filePath(u *url.URL) (string, error) {
	var p string
	switch u.Host {
	case "", "localhost":
		p = u.Path
		if u.Opaque != "" { // file:relative/path
			p = u.Opaque
		}
	case ".", "..":
		p = u.Host + u.Path
	default:
		return "", fmt.Errorf("bad source url %q: file URLs name a local path (file:///abs or file://./rel), not host %q", u.Redacted(), u.Host)
	}
	if p == "" {
		return "", fmt.Errorf("bad source url %q: no path", u.Redacted())
	}
	if !filepath.IsAbs(p) {
		dir := f.WorkDir
		if dir == "" {
			wd, err := os.Getwd()
			if err != nil {
				return "", fmt.Errorf("resolving %s: %w", p, err)
			}
			dir = wd
		}
		p = filepath.Join(dir, p)
	}
	return filepath.Clean(p), nil
}

// ownTagPrefix marks validators proxypool computed itself (file stat,
// Telegram text hash); they are never sent to a server.
const ownTagPrefix = "proxypool:"

func redact(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.Redacted()
}
