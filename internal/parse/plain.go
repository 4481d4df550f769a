package parse

import (
	"fmt"
	"net"
	"regexp"
	"strings"

	"github.com/proxypool/proxypool/internal/upstream"
)

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?)*\.?$`)

// hostPortLine parses a list line that is not a link: "host:port",
// "user:pass@host:port", "host:port:user:pass", a CSV row whose first field
// is one of those, clarketm's "ip:port CC-A-S +" and roosterkid's
// "🇩🇪 ip:port 123ms DE [ISP]". A line with nothing like host:port in its
// first two fields is a banner: Skipped. Two entries glued together
// ("1.2.3.4:80805.6.7.8:3128") give two results where the cut is certain
// and one failed result otherwise (see unglue).
func hostPortLine(n int, s, scheme string) []Result {
	fields := strings.Fields(s)
	for i, f := range fields {
		if i >= 2 {
			break
		}
		tok := f
		if j := strings.IndexByte(tok, ','); j >= 0 {
			tok = tok[:j]
		}
		tok = strings.Trim(tok, `"'`)
		cred, hp := "", tok
		if at := strings.LastIndexByte(tok, '@'); at >= 0 {
			cred, hp = tok[:at+1], tok[at+1:]
		}
		toks := []string{tok}
		if parts, err := unglue(hp); err != nil {
			return []Result{{Line: n, Err: fmt.Errorf("%s: %w", scheme, err)}}
		} else if parts != nil {
			toks = []string{cred + parts[0], parts[1]}
		}
		var out []Result
		for _, tok := range toks {
			host, port, user, pass, ok := splitHostPort(tok)
			if !ok {
				break
			}
			u, err := build(plainMapping(scheme, host, port, user, pass))
			r := Result{Line: n, Upstream: u, Err: err}
			listHints(fields[i+1:], &r)
			out = append(out, r)
		}
		if len(out) == len(toks) {
			return out
		}
	}
	return []Result{{Line: n, Skipped: true}}
}

// splitHostPort accepts host:port, [v6]:port, user:pass@host:port and
// host:port:user:pass. The port must be digits (its range is checked later,
// so "1.2.3.4:99999" is a failed line, not a banner).
func splitHostPort(tok string) (host, port, user, pass string, ok bool) {
	if at := strings.LastIndexByte(tok, '@'); at >= 0 {
		user, pass, _ = strings.Cut(tok[:at], ":")
		tok = tok[at+1:]
	}
	h, p, err := net.SplitHostPort(tok)
	if err != nil {
		parts := strings.Split(tok, ":")
		if len(parts) != 4 || user != "" {
			return "", "", "", "", false
		}
		h, p, user, pass = parts[0], parts[1], parts[2], parts[3]
	}
	if !digits(p) || len(p) > 6 {
		return "", "", "", "", false
	}
	if net.ParseIP(h) == nil && !hostnameRE.MatchString(h) {
		return "", "", "", "", false
	}
	return h, p, user, pass, true
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

var (
	spysRE    = regexp.MustCompile(`^([A-Z]{2})-([NAH])`)
	countryRE = regexp.MustCompile(`^[A-Z]{2}$`)
)

// listHints reads the country and anonymity hints that follow host:port in
// clarketm/spys ("EC-N-S") and roosterkid ("3797ms PK [ISP]") lines.
func listHints(rest []string, r *Result) {
	for i, f := range rest {
		if i >= 3 {
			return
		}
		if m := spysRE.FindStringSubmatch(f); m != nil {
			r.Country = m[1]
			r.Anonymity = map[string]upstream.Anonymity{"N": upstream.AnonTransparent, "A": upstream.AnonAnonymous, "H": upstream.AnonElite}[m[2]]
			return
		}
		if countryRE.MatchString(f) {
			r.Country = f
			return
		}
	}
}
