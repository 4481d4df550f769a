package exits

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"

	"github.com/proxypool/proxypool/internal/upstream"
)

// InfoGetter answers GETINFO keys of a running tor (torctl.Conn satisfies it).
type InfoGetter interface {
	GetInfo(ctx context.Context, keys ...string) (map[string]string, error)
}

// Controller is an InfoGetter that must be closed.
type Controller interface {
	InfoGetter
	Close() error
}

// Source fetches relays from the location in URL: http(s)://… or file://…
// or a plain path (format sniffed unless Format is set), or
// control://host:port / control:///path/to/socket (through DialControl).
type Source struct {
	URL    string
	Format Format
	Client *http.Client // nil: http.DefaultClient
	// DialControl connects to a tor control port for control:// URLs;
	// addr is "host:port" or "unix:/path".
	DialControl func(ctx context.Context, addr string) (Controller, error)
	// Country, when set, fills the country of relays that have none
	// (consensus files carry no countries).
	Country func(ip string) string
	// MaxBytes caps a fetched document (0: 64 MiB).
	MaxBytes int64
}

// Relays fetches and parses the relay list.
func (s Source) Relays(ctx context.Context) ([]upstream.Relay, error) {
	u, err := url.Parse(s.URL)
	if err != nil {
		return nil, fmt.Errorf("relay source %q: %w", s.URL, err)
	}
	var relays []upstream.Relay
	switch u.Scheme {
	case "control":
		if s.DialControl == nil {
			return nil, fmt.Errorf("relay source %q: no control dialer configured", s.URL)
		}
		addr := u.Host
		if addr == "" {
			addr = "unix:" + u.Path
		}
		c, err := s.DialControl(ctx, addr)
		if err != nil {
			return nil, fmt.Errorf("connecting to tor control %s: %w", addr, err)
		}
		defer c.Close()
		relays, err = FromControl(ctx, c)
		if err != nil {
			return nil, err
		}
	case "http", "https", "file", "":
		b, err := s.fetch(ctx, u)
		if err != nil {
			return nil, err
		}
		if relays, err = Parse(b, s.Format); err != nil {
			return nil, fmt.Errorf("relay source %s: %w", s.URL, err)
		}
	default:
		return nil, fmt.Errorf("relay source %q: unsupported scheme %q (want http, https, file or control)", s.URL, u.Scheme)
	}
	if s.Country != nil {
		for i := range relays {
			if relays[i].Country == "" {
				relays[i].Country = strings.ToUpper(s.Country(relays[i].Address))
			}
		}
	}
	return relays, nil
}

func (s Source) fetch(ctx context.Context, u *url.URL) ([]byte, error) {
	max := s.MaxBytes
	if max <= 0 {
		max = 64 << 20
	}
	var rc io.ReadCloser
	switch u.Scheme {
	case "http", "https":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, fmt.Errorf("fetching relays from %s: %w", u, err)
		}
		c := s.Client
		if c == nil {
			c = http.DefaultClient
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, fmt.Errorf("fetching relays: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("fetching relays from %s: HTTP %s", u, resp.Status)
		}
		rc = resp.Body
	default:
		p := u.Path
		if u.Scheme == "" {
			p = s.URL
		}
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("reading relays: %w", err)
		}
		rc = f
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading relays from %s: %w", u, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("relay document %s is larger than %d bytes", u, max)
	}
	return b, nil
}

// FromControl asks a running tor for its view of the network (GETINFO
// ns/all) and the country of every usable exit (GETINFO ip-to-country/IP,
// from that tor's GeoIP file). It needs no web service.
func FromControl(ctx context.Context, c InfoGetter) ([]upstream.Relay, error) {
	m, err := c.GetInfo(ctx, "ns/all")
	if err != nil {
		return nil, fmt.Errorf("GETINFO ns/all: %w", err)
	}
	relays, err := ParseConsensus(strings.NewReader(m["ns/all"]))
	if err != nil {
		return nil, fmt.Errorf("parsing GETINFO ns/all: %w", err)
	}
	ips := map[string]bool{}
	for _, r := range relays {
		if r.UsableExit() {
			ips[r.Address] = true
		}
	}
	list := make([]string, 0, len(ips))
	for ip := range ips {
		list = append(list, ip)
	}
	sort.Strings(list)
	cc := map[string]string{}
	const batch = 64
	for i := 0; i < len(list); i += batch {
		end := min(i+batch, len(list))
		keys := make([]string, 0, end-i)
		for _, ip := range list[i:end] {
			keys = append(keys, "ip-to-country/"+ip)
		}
		got, err := c.GetInfo(ctx, keys...)
		if err != nil {
			return nil, fmt.Errorf("GETINFO ip-to-country: %w", err)
		}
		for _, ip := range list[i:end] {
			v := strings.ToUpper(strings.TrimSpace(got["ip-to-country/"+ip]))
			if v == "??" {
				v = ""
			}
			cc[ip] = v
		}
	}
	for i := range relays {
		relays[i].Country = cc[relays[i].Address]
	}
	return relays, nil
}

// Static is a fixed relay list (tests, or relays read from the store).
type Static []upstream.Relay

// Relays returns the list.
func (s Static) Relays(context.Context) ([]upstream.Relay, error) { return s, nil }
