package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/upstream"
)

// Client is control.Manager over the HTTP API: proxypoolctl uses it where
// no bus reaches the daemon (`proxypoold run` without a session bus). Its
// errors match control's sentinels with errors.Is, as the D-Bus client's
// do, so the verbs and their exit codes do not change.
type Client struct {
	base   *url.URL
	secret string
	hc     *http.Client
}

var _ control.Manager = (*Client)(nil)

// NewClient returns a client of the API at base (http://127.0.0.1:9090).
// hc nil is a client without a proxy: the API is local, and a proxy from
// the environment must not see the secret.
func NewClient(base, secret string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("API URL %q: want http://host:port: %w", base, control.ErrInvalid)
	}
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConns: 4}}
	}
	return &Client{base: u, secret: secret, hc: hc}, nil
}

// URL is the API's base URL, for messages.
func (c *Client) URL() string { return c.base.String() }

// do sends one request to path (under Prefix) and decodes a JSON answer
// into out (nil: discard), turning error answers into control's errors.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body io.Reader, ctype string, out any) error {
	resp, err := c.send(ctx, method, path, q, body, ctype)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if raw, ok := out.(*[]byte); ok {
		*raw, err = io.ReadAll(resp.Body)
	} else {
		err = json.NewDecoder(resp.Body).Decode(out)
	}
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	return nil
}

func (c *Client) send(ctx context.Context, method, path string, q url.Values, body io.Reader, ctype string) (*http.Response, error) {
	// path comes escaped (an id may be a URI): joined as text, parsed once.
	target := c.base.String() + Prefix + path
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c.secret != "" {
		req.Header.Set("Authorization", "Bearer "+c.secret)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) || isNoHost(err) {
			return nil, fmt.Errorf("proxypool API at %s is not answering (is proxypoold running, api.listen set?): %w", c.base, control.ErrNotRunning)
		}
		return nil, fmt.Errorf("%s %s%s: %w", method, c.base, Prefix+path, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	var eb errorBody
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &eb) != nil || eb.Message == "" {
		eb.Message = strings.TrimSpace(string(b))
	}
	return nil, apiError(method, path, resp.StatusCode, eb.Message)
}

func isNoHost(err error) bool {
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound
}

// apiError maps a status to control's sentinels.
func apiError(method, path string, code int, msg string) error {
	var kind error
	switch code {
	case http.StatusBadRequest:
		kind = control.ErrInvalid
	case http.StatusNotFound:
		kind = control.ErrNotFound
	case http.StatusUnauthorized:
		kind = control.ErrAccessDenied
		msg = "the API refused the secret (--api-secret, PROXYPOOL_API_SECRET or api.secret)"
	case http.StatusForbidden:
		kind = control.ErrAccessDenied
	case http.StatusServiceUnavailable:
		kind = control.ErrNotRunning
	}
	e := &control.Error{Method: method + " " + Prefix + path, Name: strconv.Itoa(code), Msg: msg, Detail: msg}
	if kind == nil {
		return e
	}
	return fmt.Errorf("%w%w", e, wrapOnly{kind})
}

// wrapOnly lets errors.Is find a sentinel without adding to the message.
type wrapOnly struct{ error }

func (wrapOnly) Error() string   { return "" }
func (w wrapOnly) Unwrap() error { return w.error }

func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}

// List returns one page of the pool.
func (c *Client) List(ctx context.Context, q control.ListQuery) (control.ListPage, error) {
	v := url.Values{}
	for k, s := range map[string]string{"state": string(q.State), "country": q.Country, "group": q.Group,
		"source": q.Source, "anonymity": string(q.Anonymity), "target": q.Target} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.MinScore > 0 {
		v.Set("min-score", strconv.FormatFloat(q.MinScore, 'f', -1, 64))
	}
	if q.ASN > 0 {
		v.Set("asn", strconv.FormatUint(uint64(q.ASN), 10))
	}
	if q.Class != "" {
		v.Set("class", string(q.Class))
	}
	if q.MinThroughput > 0 {
		v.Set("min-throughput", strconv.FormatFloat(q.MinThroughput, 'f', -1, 64))
	}
	if q.Offset < 0 || q.Limit < 0 {
		return control.ListPage{}, fmt.Errorf("List: negative offset or limit: %w", control.ErrInvalid)
	}
	if q.Offset > 0 {
		v.Set("offset", strconv.Itoa(q.Offset))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var page control.ListPage
	return page, c.do(ctx, http.MethodGet, "/upstreams", v, nil, "", &page)
}

// Get returns one upstream.
func (c *Client) Get(ctx context.Context, id string) (upstream.Record, error) {
	var r upstream.Record
	return r, c.do(ctx, http.MethodGet, "/upstreams/"+url.PathEscape(id), nil, nil, "", &r)
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (control.Status, error) {
	var st control.Status
	return st, c.do(ctx, http.MethodGet, "/status", nil, nil, "", &st)
}

// Counts returns the pool counts.
func (c *Client) Counts(ctx context.Context) (control.Counts, error) {
	var n control.Counts
	return n, c.do(ctx, http.MethodGet, "/counts", nil, nil, "", &n)
}

// Add adds one upstream.
func (c *Client) Add(ctx context.Context, uri string) (string, bool, error) {
	var r AddReply
	err := c.do(ctx, http.MethodPost, "/upstreams", nil, jsonBody(AddRequest{URI: uri}), "application/json", &r)
	return r.ID, r.Created, err
}

// Remove removes one upstream by ID or URI.
func (c *Client) Remove(ctx context.Context, idOrURI string) (int, error) {
	var r RemoveReply
	err := c.do(ctx, http.MethodDelete, "/upstreams/"+url.PathEscape(idOrURI), nil, nil, "", &r)
	return r.Removed, err
}

// Restore brings removed and retired upstreams back, by ID or URI.
func (c *Client) Restore(ctx context.Context, idsOrURIs []string) (int, error) {
	var r RestoreReply
	err := c.do(ctx, http.MethodPost, "/restore", nil, jsonBody(RestoreRequest{IDs: idsOrURIs}), "application/json", &r)
	return r.Restored, err
}

// Import adds every upstream in text.
func (c *Client) Import(ctx context.Context, text string) (control.ImportReport, error) {
	var r control.ImportReport
	return r, c.do(ctx, http.MethodPost, "/import", nil, strings.NewReader(text), "text/plain; charset=utf-8", &r)
}

// Check starts a probe of ids (all when empty).
func (c *Client) Check(ctx context.Context, ids []string) (string, error) {
	var r JobReply
	err := c.do(ctx, http.MethodPost, "/check", nil, jsonBody(CheckRequest{IDs: ids}), "application/json", &r)
	return r.Job, err
}

// Refresh starts fetching every source.
func (c *Client) Refresh(ctx context.Context) (string, error) {
	var r JobReply
	err := c.do(ctx, http.MethodPost, "/refresh", nil, nil, "", &r)
	return r.Job, err
}

// Export renders the healthy upstreams.
func (c *Client) Export(ctx context.Context, format string) ([]byte, error) {
	var b []byte
	return b, c.do(ctx, http.MethodGet, "/export", url.Values{"format": {format}}, nil, "", &b)
}

// TorStatus lists the Tor instances.
func (c *Client) TorStatus(ctx context.Context) ([]control.TorInstance, error) {
	var in []control.TorInstance
	return in, c.do(ctx, http.MethodGet, "/tor", nil, nil, "", &in)
}

// TorNewnym asks for new circuits on port (every instance when 0).
func (c *Client) TorNewnym(ctx context.Context, port int) error {
	if port < 0 || port > 65535 {
		return fmt.Errorf("TorNewnym: port %d out of range: %w", port, control.ErrInvalid)
	}
	return c.do(ctx, http.MethodPost, "/tor/newnym", nil, jsonBody(NewnymRequest{Port: port}), "application/json", nil)
}

// TorGenerate starts a torgen run.
func (c *Client) TorGenerate(ctx context.Context) (string, error) {
	var r JobReply
	err := c.do(ctx, http.MethodPost, "/tor/generate", nil, nil, "", &r)
	return r.Job, err
}

// WatchProgress delivers every job's progress (jobs given: only theirs)
// from GET /api/v1/events until ctx ends or the stream breaks, then
// closes the channel. It returns once the server has subscribed, so a job
// started after it is seen from its first report.
func (c *Client) WatchProgress(ctx context.Context, jobs ...string) (<-chan control.Progress, error) {
	resp, err := c.send(ctx, http.MethodGet, "/events", nil, nil, "")
	if err != nil {
		return nil, err
	}
	out := make(chan control.Progress, 16)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 4096), 64<<10)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var jb Job
			if json.Unmarshal([]byte(data), &jb) != nil || (len(jobs) > 0 && !slices.Contains(jobs, jb.ID)) {
				continue
			}
			select {
			case out <- control.Progress{Job: jb.ID, Done: jb.Done, Total: jb.Total}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}
