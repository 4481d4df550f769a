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
	// Targets are the target checks (probe.targets) the upstream must
	// pass: "-target-imot", repeated for more than one.
	Targets []string
}

var paramKeys = "country, session, ttl, group, target"

// MaxUsernameTargets bounds the "-target-" parameters of one username:
// each costs a look-up per candidate upstream at every pick.
const MaxUsernameTargets = 4

// maxTargetName bounds one target name (config names are short words).
const maxTargetName = 64

// UsernameLimits bound what a username may ask for: a session id is
// remembered by the pool (its memory), a TTL for how long.
type UsernameLimits struct {
	SessionID int           // bytes of a session id (default 64)
	TTL       time.Duration // longest ttl (default 24h)
}

// Defaults of UsernameLimits (gateway.max-session-id, max-session-ttl).
const (
	DefaultMaxSessionID  = 64
	DefaultMaxSessionTTL = 24 * time.Hour
)

func (l UsernameLimits) withDefaults() UsernameLimits {
	if l.SessionID <= 0 {
		l.SessionID = DefaultMaxSessionID
	}
	if l.TTL <= 0 {
		l.TTL = DefaultMaxSessionTTL
	}
	return l
}

// ParseUsername is UsernameLimits{}.Parse: the default limits.
func ParseUsername(s string) (Params, error) { return UsernameLimits{}.Parse(s) }

// Parse splits a username into the account name and its parameters.
// Group names may contain dashes: a group value runs up to the next known
// key. Unknown keys are an error naming the key; a session id or ttl over
// the limits is an error naming the limit.
func (l UsernameLimits) Parse(s string) (Params, error) {
	var p Params
	if s == "" {
		return p, nil
	}
	l = l.withDefaults()
	q := quoteShort(s)
	parts := strings.Split(s, "-")
	p.User = parts[0]
	if p.User == "" {
		return p, fmt.Errorf("username %s: empty account name before the first '-'", q)
	}
	for i := 1; i < len(parts); i++ {
		key := strings.ToLower(parts[i])
		if !isParamKey(key) {
			return p, fmt.Errorf("username %s: unknown parameter %s (known: %s)", q, quoteShort(parts[i]), paramKeys)
		}
		if i+1 >= len(parts) || parts[i+1] == "" {
			return p, fmt.Errorf("username %s: parameter %q needs a value", q, key)
		}
		i++
		v := parts[i]
		switch key {
		case "country":
			if len(v) != 2 || !isAlpha(v) {
				return p, fmt.Errorf("username %s: country %s is not a two-letter code", q, quoteShort(v))
			}
			p.Country = strings.ToUpper(v)
		case "session":
			if len(v) > l.SessionID {
				return p, fmt.Errorf("username %s: session id of %d bytes is over the limit of %d", q, len(v), l.SessionID)
			}
			p.Session = v
		case "ttl":
			d, err := parseTTL(v)
			if err != nil {
				return p, fmt.Errorf("username %s: ttl %s: %v", q, quoteShort(v), err)
			}
			if d > l.TTL {
				return p, fmt.Errorf("username %s: ttl %v is over the limit of %v", q, d, l.TTL)
			}
			p.TTL = d
		case "group":
			for i+1 < len(parts) && !isParamKey(strings.ToLower(parts[i+1])) {
				i++
				v += "-" + parts[i]
			}
			p.Group = v
		case "target":
			if len(p.Targets) == MaxUsernameTargets {
				return p, fmt.Errorf("username %s: more than %d targets", q, MaxUsernameTargets)
			}
			if len(v) > maxTargetName || !isName(v) {
				return p, fmt.Errorf("username %s: target %s is not a name (letters, digits, '_'; at most %d bytes)", q, quoteShort(v), maxTargetName)
			}
			p.Targets = append(p.Targets, v)
		}
	}
	if p.TTL > 0 && p.Session == "" {
		return p, fmt.Errorf("username %s: ttl without session", q)
	}
	return p, nil
}

// quoteShort quotes s for an error, cut to its first 64 bytes: a client's
// 40 KB username is not copied into every answer and log line.
func quoteShort(s string) string {
	const max = 64
	if len(s) <= max {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:max]) + fmt.Sprintf("… (%d bytes)", len(s))
}

func isParamKey(k string) bool {
	return k == "country" || k == "session" || k == "ttl" || k == "group" || k == "target"
}

// isName reports whether s is made of ASCII letters, digits and '_', as
// config names of groups and targets are.
func isName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'z' || c == '_') {
			return false
		}
	}
	return true
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
	p, err := g.opts.Usernames.Parse(user)
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
