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

	"github.com/proxypool/proxypool/internal/upstream"
)

// LiveProxy is one record of the json export (live_proxies.json).
type LiveProxy struct {
	ID        string             `json:"id"`
	Type      upstream.Kind      `json:"type"`
	Server    string             `json:"server"`
	Port      int                `json:"port"`
	Name      string             `json:"name,omitempty"`
	URI       string             `json:"uri,omitempty"` // plain kinds only
	ExitIP    string             `json:"exit_ip,omitempty"`
	Country   string             `json:"country,omitempty"`
	Anonymity upstream.Anonymity `json:"anonymity,omitempty"`
	LatencyMS float64            `json:"latency_ms"`
	Score     float64            `json:"score"`
	LastOK    time.Time          `json:"last_ok,omitzero"`
	Sources   []string           `json:"sources,omitempty"`
}

// ExportJSON renders recs as a JSON array of LiveProxy, in the order given.
func ExportJSON(recs []upstream.Record) ([]byte, error) {
	out := make([]LiveProxy, 0, len(recs))
	for _, r := range recs {
		out = append(out, LiveProxy{
			ID: r.ID, Type: r.Type, Server: r.Server, Port: r.Port, Name: r.Name, URI: r.URI(),
			ExitIP: r.ExitIP, Country: r.Country, Anonymity: r.Anonymity,
			LatencyMS: math.Round(r.LatencyMS*10) / 10, Score: math.Round(r.Score*10) / 10,
			LastOK: r.LastOK, Sources: r.Sources,
		})
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding json export: %w", err)
	}
	return append(b, '\n'), nil
}

// ExportTXT renders the plain upstreams of recs (http, socks4, socks5, tor)
// as one URI a line: scheme://[user:pass@]host:port. Share-link kinds have
// no such form and are left out (export them as clash).
func ExportTXT(recs []upstream.Record) []byte {
	var b bytes.Buffer
	for _, r := range recs {
		if uri := r.URI(); uri != "" {
			b.WriteString(uri)
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
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
		p := maps.Clone(r.Options)
		if p == nil {
			p = map[string]any{}
		}
		p["type"], p["server"], p["port"] = string(r.Type), r.Server, r.Port
		if r.Type == upstream.Tor {
			p["type"] = string(upstream.SOCKS5)
			delete(p, "group")
		}
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
