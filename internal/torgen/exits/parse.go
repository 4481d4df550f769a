package exits

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/proxypool/proxypool/internal/upstream"
)

// Format names a relay document format.
type Format string

// The formats Parse understands.
const (
	Onionoo   Format = "onionoo"   // Onionoo details JSON
	CSV       Format = "csv"       // torstatus Tor_query_EXPORT.csv
	Consensus Format = "consensus" // network-status consensus, or GETINFO ns/all
)

// Sniff guesses the format of a relay document from its first bytes.
func Sniff(b []byte) (Format, error) {
	t := bytes.TrimLeft(b, " \t\r\n\ufeff")
	switch {
	case len(t) == 0:
		return "", errors.New("empty relay document")
	case t[0] == '{':
		return Onionoo, nil
	case bytes.HasPrefix(t, []byte("network-status-version")), bytes.HasPrefix(t, []byte("r ")),
		bytes.HasPrefix(t, []byte("@type network-status")):
		return Consensus, nil
	}
	first, _, _ := bytes.Cut(t, []byte("\n"))
	if bytes.Contains(first, []byte("Router Name")) && bytes.Contains(first, []byte("IP Address")) {
		return CSV, nil
	}
	return "", fmt.Errorf("unrecognized relay document starting %q", trunc(string(first), 60))
}

// Parse reads a relay document of the given format ("" sniffs it).
func Parse(b []byte, f Format) ([]upstream.Relay, error) {
	if f == "" || f == "auto" {
		var err error
		if f, err = Sniff(b); err != nil {
			return nil, err
		}
	}
	switch f {
	case Onionoo:
		return ParseOnionoo(bytes.NewReader(b))
	case CSV:
		return ParseCSV(bytes.NewReader(b))
	case Consensus:
		return ParseConsensus(bytes.NewReader(b))
	}
	return nil, fmt.Errorf("unknown relay format %q", f)
}

type onionooDoc struct {
	Relays []onionooRelay `json:"relays"`
}

type onionooRelay struct {
	Nickname            string   `json:"nickname"`
	Fingerprint         string   `json:"fingerprint"`
	ORAddresses         []string `json:"or_addresses"`
	ExitAddresses       []string `json:"exit_addresses"`
	Country             string   `json:"country"`
	Flags               []string `json:"flags"`
	Running             *bool    `json:"running"`
	ConsensusWeight     int64    `json:"consensus_weight"`
	AdvertisedBandwidth int64    `json:"advertised_bandwidth"`
}

// ParseOnionoo reads an Onionoo details document. A relay's flags are
// Onionoo's "flags" array; "running": true adds Running when the array lacks
// it. Field-restricted documents without "flags" parse, but none of their
// relays is a usable exit.
func ParseOnionoo(r io.Reader) ([]upstream.Relay, error) {
	var doc onionooDoc
	dec := json.NewDecoder(r)
	if err := dec.Decode(&doc); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("parsing onionoo details at byte %d: %w", se.Offset, err)
		}
		return nil, fmt.Errorf("parsing onionoo details: %w", err)
	}
	out := make([]upstream.Relay, 0, len(doc.Relays))
	for i, o := range doc.Relays {
		fp, err := normFingerprint(o.Fingerprint)
		if err != nil {
			return nil, fmt.Errorf("onionoo relay %d: %w", i, err)
		}
		rl := upstream.Relay{
			Fingerprint: fp,
			Nickname:    o.Nickname,
			Country:     strings.ToUpper(o.Country),
			Flags:       append([]string(nil), o.Flags...),
			Bandwidth:   o.ConsensusWeight,
			ExitAddrs:   o.ExitAddresses,
		}
		if rl.Bandwidth == 0 {
			rl.Bandwidth = o.AdvertisedBandwidth
		}
		if o.Running != nil && *o.Running && !rl.HasFlag("Running") {
			rl.Flags = append(rl.Flags, "Running")
		}
		for _, a := range o.ORAddresses {
			host, port, err := net.SplitHostPort(a)
			if err != nil {
				return nil, fmt.Errorf("onionoo relay %d (%s): or_address %q: %w", i, fp, a, err)
			}
			ip := net.ParseIP(host)
			if ip == nil || ip.To4() == nil {
				continue // IPv6 OR addresses are extra; the first IPv4 one is the relay's address
			}
			rl.Address = ip.String()
			rl.ORPort, _ = strconv.Atoi(port)
			break
		}
		if rl.Address == "" {
			continue
		}
		out = append(out, rl)
	}
	return out, nil
}

// ParseCSV reads a torstatus-style export (the columns of
// Tor_query_EXPORT.csv). Columns are found by header name, so the 20- and
// 25-column variants both work. The export has no fingerprints.
func ParseCSV(r io.Reader) ([]upstream.Relay, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.LazyQuotes = true
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("reading csv header: %w", err)
	}
	col := map[string]int{}
	for i, h := range head {
		col[strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))] = i
	}
	for _, need := range []string{"Router Name", "IP Address", "ORPort", "Flag - Exit"} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("csv header: missing column %q", need)
		}
	}
	flagCols := map[string]string{
		"Flag - Authority": "Authority", "Flag - Exit": "Exit", "Flag - Fast": "Fast",
		"Flag - Guard": "Guard", "Flag - Named": "Named", "Flag - Stable": "Stable",
		"Flag - Running": "Running", "Flag - Valid": "Valid", "Flag - V2Dir": "V2Dir",
		"Flag - Hibernating": "Hibernating", "Flag - Bad Exit": "BadExit",
	}
	get := func(rec []string, name string) string {
		i, ok := col[name]
		if !ok || i >= len(rec) {
			return ""
		}
		return strings.TrimSpace(rec[i])
	}
	var out []upstream.Relay
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			return nil, fmt.Errorf("csv: %w", err)
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		ip := net.ParseIP(get(rec, "IP Address"))
		if ip == nil {
			return nil, fmt.Errorf("csv line %d: field \"IP Address\": bad address %q", line, get(rec, "IP Address"))
		}
		port, err := strconv.Atoi(get(rec, "ORPort"))
		if err != nil {
			return nil, fmt.Errorf("csv line %d: field \"ORPort\": %q is not a number", line, get(rec, "ORPort"))
		}
		rl := upstream.Relay{
			Nickname: get(rec, "Router Name"),
			Address:  ip.String(),
			ORPort:   port,
			Country:  strings.ToUpper(get(rec, "Country Code")),
		}
		if rl.Country == "N/A" {
			rl.Country = ""
		}
		if bw := get(rec, "ConsensusBandwidth"); bw != "" {
			rl.Bandwidth, _ = strconv.ParseInt(bw, 10, 64)
		}
		if rl.Bandwidth == 0 {
			rl.Bandwidth, _ = strconv.ParseInt(get(rec, "Bandwidth (KB/s)"), 10, 64)
		}
		for c, f := range flagCols {
			switch get(rec, c) {
			case "1":
				rl.Flags = append(rl.Flags, f)
			case "", "0":
			default:
				return nil, fmt.Errorf("csv line %d: field %q: want 0 or 1, got %q", line, c, get(rec, c))
			}
		}
		sortFlags(rl.Flags)
		out = append(out, rl)
	}
	return out, nil
}

// ParseConsensus reads the router status entries of a network-status
// document (a cached consensus, or the answer to GETINFO ns/all): "r", "s"
// and "w" lines. Countries are left empty; see Locate.
func ParseConsensus(r io.Reader) ([]upstream.Relay, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	var out []upstream.Relay
	cur := -1
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimRight(sc.Text(), "\r")
		key, rest, _ := strings.Cut(t, " ")
		switch key {
		case "r":
			f := strings.Fields(rest)
			if len(f) < 7 {
				return nil, fmt.Errorf("consensus line %d: \"r\" line has %d fields, want at least 7", line, len(f))
			}
			id, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(f[1], "="))
			if err != nil || len(id) != 20 {
				return nil, fmt.Errorf("consensus line %d: bad identity %q", line, f[1])
			}
			// f: nickname identity digest date time ip orport dirport (ns); microdesc flavour lacks digest.
			ipIdx := 5
			if net.ParseIP(f[ipIdx]) == nil {
				ipIdx = 4
			}
			ip := net.ParseIP(f[ipIdx])
			if ip == nil || ipIdx+1 >= len(f) {
				return nil, fmt.Errorf("consensus line %d: no address in \"r\" line", line)
			}
			port, err := strconv.Atoi(f[ipIdx+1])
			if err != nil {
				return nil, fmt.Errorf("consensus line %d: bad ORPort %q", line, f[ipIdx+1])
			}
			out = append(out, upstream.Relay{
				Fingerprint: strings.ToUpper(hex.EncodeToString(id)),
				Nickname:    f[0],
				Address:     ip.String(),
				ORPort:      port,
			})
			cur = len(out) - 1
		case "s":
			if cur >= 0 {
				out[cur].Flags = strings.Fields(rest)
			}
		case "w":
			if cur >= 0 {
				for _, kv := range strings.Fields(rest) {
					if v, ok := strings.CutPrefix(kv, "Bandwidth="); ok {
						out[cur].Bandwidth, _ = strconv.ParseInt(v, 10, 64)
					}
				}
			}
		case "directory-footer":
			cur = -1
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading consensus at line %d: %w", line, err)
	}
	return out, nil
}

// UsableExits keeps the relays that are Exit, Running and Valid and not
// BadExit, with an IPv4 address.
func UsableExits(relays []upstream.Relay) []upstream.Relay {
	var out []upstream.Relay
	for _, r := range relays {
		if r.UsableExit() && net.ParseIP(r.Address).To4() != nil {
			out = append(out, r)
		}
	}
	return out
}

func normFingerprint(s string) (string, error) {
	s = strings.ToUpper(strings.TrimPrefix(strings.TrimSpace(s), "$"))
	if len(s) != 40 {
		return "", fmt.Errorf("fingerprint %q: want 40 hex digits", s)
	}
	if _, err := hex.DecodeString(s); err != nil {
		return "", fmt.Errorf("fingerprint %q: not hex", s)
	}
	return s, nil
}

func sortFlags(f []string) {
	for i := 1; i < len(f); i++ {
		for j := i; j > 0 && f[j] < f[j-1]; j-- {
			f[j], f[j-1] = f[j-1], f[j]
		}
	}
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
