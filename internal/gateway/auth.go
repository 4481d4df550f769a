package gateway

import (
	"crypto/subtle"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Params are the commercial-gateway style username parameters:
// "user-country-us-session-abc123-ttl-10m-group-tor-us" → user "user",
// country US, session abc123 held for 10 minutes, group "tor-us".
type Params struct {
	User    string
	Country string
	Session string
	TTL     time.Duration
	Group   string
}

var paramKeys = "country, session, ttl, group"

// ParseUsername splits a username into the account name and its
// parameters. Group names may contain dashes: a group value runs up to the
// next known key. Unknown keys are an error naming the key.
func ParseUsername(s string) (Params, error) {
	var p Params
	if s == "" {
		return p, nil
	}
	parts := strings.Split(s, "-")
	p.User = parts[0]
	if p.User == "" {
		return p, fmt.Errorf("username %q: empty account name before the first '-'", s)
	}
	for i := 1; i < len(parts); i++ {
		key := strings.ToLower(parts[i])
		if !isParamKey(key) {
			return p, fmt.Errorf("username %q: unknown parameter %q (known: %s)", s, parts[i], paramKeys)
		}
		if i+1 >= len(parts) || parts[i+1] == "" {
			return p, fmt.Errorf("username %q: parameter %q needs a value", s, key)
		}
		i++
		v := parts[i]
		switch key {
		case "country":
			if len(v) != 2 || !isAlpha(v) {
				return p, fmt.Errorf("username %q: country %q is not a two-letter code", s, v)
			}
			p.Country = strings.ToUpper(v)
		case "session":
			p.Session = v
		case "ttl":
			d, err := parseTTL(v)
			if err != nil {
				return p, fmt.Errorf("username %q: ttl %q: %v", s, v, err)
			}
			p.TTL = d
		case "group":
			for i+1 < len(parts) && !isParamKey(strings.ToLower(parts[i+1])) {
				i++
				v += "-" + parts[i]
			}
			p.Group = v
		}
	}
	if p.TTL > 0 && p.Session == "" {
		return p, fmt.Errorf("username %q: ttl without session", s)
	}
	return p, nil
}

func isParamKey(k string) bool {
	return k == "country" || k == "session" || k == "ttl" || k == "group"
}

func isAlpha(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		if c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// parseTTL takes a Go duration ("10m", "1h30m") or plain minutes ("10").
func parseTTL(v string) (time.Duration, error) {
	if n, err := strconv.Atoi(v); err == nil {
		if n <= 0 {
			return 0, fmt.Errorf("must be positive")
		}
		return time.Duration(n) * time.Minute, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("not a duration like 10m or 1h")
	}
	if d <= 0 {
		return 0, fmt.Errorf("must be positive")
	}
	return d, nil
}

// authenticate parses the username and, when users are configured, checks
// the account and password.
func (g *Gateway) authenticate(user, pass string) (Params, error) {
	p, err := ParseUsername(user)
	if err != nil {
		return p, err
	}
	if len(g.opts.Users) == 0 {
		return p, nil
	}
	if p.User == "" {
		return p, fmt.Errorf("credentials required")
	}
	want, ok := g.opts.Users[p.User]
	if !ok || subtle.ConstantTimeCompare([]byte(want), []byte(pass)) != 1 {
		return p, fmt.Errorf("wrong user name or password for %q", p.User)
	}
	return p, nil
}
