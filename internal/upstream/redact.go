package upstream

import "strings"

// RedactedValue replaces each secret Redact removes: visible, so a reader
// sees that a credential exists without learning it.
const RedactedValue = "REDACTED"

// secretKeys are the option names (mihomo's, lower case, at any depth:
// plugin-opts, peers, headers) whose values let whoever holds them use
// the upstream: passwords and user names, uuids, tokens, keys.
var secretKeys = map[string]bool{
	"username": true, "password": true, "uuid": true, "token": true,
	"auth": true, "auth-str": true, "auth_str": true, "psk": true, "key": true,
	"private-key": true, "pre-shared-key": true, "private-key-passphrase": true,
	"obfs-password": true, "protocol-param": true,
	"authorization": true, "proxy-authorization": true,
}

// Redact returns u with every non-empty secret option replaced by
// RedactedValue, so that URI renders scheme://REDACTED:REDACTED@host:port.
// Maps and lists on the way to a secret are copied; u is unchanged. The
// ID is kept: it names the upstream for check and remove.
func (u Upstream) Redact() Upstream {
	if opts, changed := redactMap(u.Options); changed {
		u.Options = opts
	}
	return u
}

func redactMap(m map[string]any) (map[string]any, bool) {
	var out map[string]any
	for k, v := range m {
		nv, changed := redactValue(k, v)
		if !changed {
			continue
		}
		if out == nil {
			out = make(map[string]any, len(m))
			for k2, v2 := range m {
				out[k2] = v2
			}
		}
		out[k] = nv
	}
	if out == nil {
		return m, false
	}
	return out, true
}

func redactValue(key string, v any) (any, bool) {
	if secretKeys[strings.ToLower(key)] {
		if v == nil || v == "" {
			return v, false
		}
		return RedactedValue, v != RedactedValue
	}
	switch t := v.(type) {
	case map[string]any:
		return redactMap(t)
	case []any:
		var out []any
		for i, e := range t {
			ne, changed := redactValue("", e)
			if !changed {
				continue
			}
			if out == nil {
				out = append([]any(nil), t...)
			}
			out[i] = ne
		}
		if out == nil {
			return v, false
		}
		return out, true
	}
	return v, false
}
