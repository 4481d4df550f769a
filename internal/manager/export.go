package manager

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/proxypool/proxypool/internal/parse"
	"github.com/proxypool/proxypool/internal/upstream"
)

// LiveProxy is one record of the json export (live_proxies.json). Beside
// our own names it carries the ones list consumers read (host, protocol,
// timeout in seconds, checked_at, as proxy-scraper-checker and ProxyBroker
// write them), and either a link (uri) or, for a kind without one, the
// mapping (clash): `proxypoolctl import` of the file gives back the same
// upstreams.
type LiveProxy struct {
	ID        string             `json:"id"`
	Type      upstream.Kind      `json:"type"`
	Protocol  string             `json:"protocol"`
	Server    string             `json:"server"`
	Host      string             `json:"host"`
	Port      int                `json:"port"`
	Name      string             `json:"name,omitempty"`
	URI       string             `json:"uri,omitempty"`
	Clash     map[string]any     `json:"clash,omitempty"`
	ExitIP    string             `json:"exit_ip,omitempty"`
	Country   string             `json:"country,omitempty"`
	Anonymity upstream.Anonymity `json:"anonymity,omitempty"`
	// the exit's network: asn, org, class, ipv6 (upstream.Quality)
	upstream.Quality
	LatencyMS float64   `json:"latency_ms"`
	Timeout   float64   `json:"timeout"` // the latency in seconds, as list checkers write it
	Score     float64   `json:"score"`
	LastOK    time.Time `json:"last_ok,omitzero"`
	CheckedAt time.Time `json:"checked_at,omitzero"`
	Sources   []string  `json:"sources,omitempty"`
}

// protocol is a record's scheme as list consumers name it: https for an
// HTTP proxy over TLS, socks5 for a tor instance.
func protocol(r upstream.Record) string {
	switch {
	case r.Type == upstream.HTTP && r.Options["tls"] == true:
		return "https"
	case r.Type == upstream.Tor:
		return string(upstream.SOCKS5)
	}
	return string(r.Type)
}

// ExportJSON renders recs as a JSON array of LiveProxy, in the order given.
func ExportJSON(recs []upstream.Record) ([]byte, error) {
	out := make([]LiveProxy, 0, len(recs))
	for _, r := range recs {
		lat := math.Round(r.LatencyMS*10) / 10
		p := LiveProxy{
			ID: r.ID, Type: r.Type, Protocol: protocol(r), Server: r.Server, Host: r.Server, Port: r.Port, Name: r.Name,
			ExitIP: r.ExitIP, Country: r.Country, Anonymity: r.Anonymity, Quality: r.Quality,
			LatencyMS: lat, Timeout: math.Round(r.LatencyMS) / 1000, Score: math.Round(r.Score*10) / 10,
			LastOK: r.LastOK, CheckedAt: r.LastCheck, Sources: r.Sources,
		}
		if p.URI = link(r); p.URI == "" {
			p.Clash = clashMapping(r)
		}
		out = append(out, p)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding json export: %w", err)
	}
	return append(b, '\n'), nil
}

// ExportTXT renders recs as one link a line: scheme://[user:pass@]host:port
// for the plain kinds, the share link (parse.Link) for the others. A record
// no link can carry whole is left out, and a last comment line says how
// many were (export them as clash).
func ExportTXT(recs []upstream.Record) []byte {
	var b bytes.Buffer
	left := 0
	for _, r := range recs {
		l := link(r)
		if l == "" {
			left++
			continue
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if left > 0 {
		fmt.Fprintf(&b, "# %d upstreams have no link that carries them whole: proxypoolctl export --format clash\n", left)
	}
	return b.Bytes()
}

// link is r's link: its URI for a plain kind, else its share link; "" when
// no link carries it whole.
func link(r upstream.Record) string {
	if uri := r.URI(); uri != "" {
		return uri
	}
	l, err := parse.Link(r.Upstream)
	if err != nil {
		return ""
	}
	return l
}

// clashMapping is r as a Clash/mihomo proxies: entry (its name aside); a
// tor instance is the socks5 proxy it is.
func clashMapping(r upstream.Record) map[string]any {
	p := maps.Clone(r.Options)
	if p == nil {
		p = map[string]any{}
	}
	p["type"], p["server"], p["port"] = string(r.Type), r.Server, r.Port
	if r.Type == upstream.Tor {
		p["type"] = string(upstream.SOCKS5)
		delete(p, "group")
	}
	return p
}

// ExportClash renders recs as a Clash/mihomo document with one proxies:
// entry each, names made unique. socks4 upstreams are left out (mihomo has
// no socks4); tor instances become socks5 entries.
func ExportClash(recs []upstream.Record) ([]byte, error) {
	proxies := make([]map[string]any, 0, len(recs))
	names := map[string]bool{}
	for _, r := range recs {
		if r.Type == upstream.SOCKS4 {
			continue
		}
		p := clashMapping(r)
		name := r.Name
		if name == "" {
			name = fmt.Sprintf("%s %s", r.Type, r.Addr())
		}
		base := name
		for i := 2; names[name]; i++ {
			name = base + " #" + strconv.Itoa(i)
		}
		names[name] = true
		p["name"] = name
		proxies = append(proxies, p)
	}
	var b bytes.Buffer
	b.WriteString("# proxypool export: the healthy upstreams, best first\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(map[string]any{"proxies": proxies}); err != nil {
		return nil, fmt.Errorf("encoding clash export: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encoding clash export: %w", err)
	}
	return b.Bytes(), nil
}
