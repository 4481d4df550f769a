package parse

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"

	"github.com/metacubex/mihomo/adapter/outbound"
)

// extrasKey is the link query key (and vmess JSON key) under which Link
// writes what the de-facto link formats cannot say but our own parser must
// read back to give the same upstream: base64url of a JSON object. Other
// clients ignore the key, and lose nothing by it, because it may hold only
//
//   - udp, xudp, packet-addr: UDP relay preferences (the gateway relays no
//     UDP; every client decides its own);
//   - null for an option mihomo's converter invents where the link says
//     nothing (client-fingerprint "chrome", network "tcp", the default
//     ws-opts), so a record without it reads back without it — what v2rayN
//     does with the same link;
//   - options mihomo's adapter for the kind does not read at all (legacy
//     Clash keys such as ws-path), and TLS options of a record that does
//     not dial TLS, which therefore change nothing.
//
// Anything else in it is an error: a link must not set dial options
// (dialer-proxy, interface-name…) through a side door.
const extrasKey = "proxypool"

// udpPrefs are the options extras may set to a boolean.
var udpPrefs = map[string]bool{"udp": true, "xudp": true, "packet-addr": true}

// converterDefaults are the values mihomo's converter sets where a link is
// silent; extras may remove an option only while it holds that value.
var converterDefaults = map[string][]string{
	"client-fingerprint": {`"chrome"`},
	"network":            {`"tcp"`},
	"ws-opts":            {`{"headers":{},"path":"/"}`, `{"headers":{},"path":""}`},
}

// tlsOnly are options that matter only to a TLS layer.
var tlsOnly = map[string]bool{
	"skip-cert-verify": true, "servername": true, "sni": true, "alpn": true,
	"client-fingerprint": true, "fingerprint": true,
}

// adapterOptions are the option structs mihomo's adapter decodes per kind.
var adapterOptions = map[string]any{
	"ss": outbound.ShadowSocksOption{}, "ssr": outbound.ShadowSocksROption{},
	"vmess": outbound.VmessOption{}, "vless": outbound.VlessOption{},
	"trojan": outbound.TrojanOption{}, "hysteria": outbound.HysteriaOption{},
	"hysteria2": outbound.Hysteria2Option{}, "tuic": outbound.TuicOption{},
	"anytls": outbound.AnyTLSOption{}, "wireguard": outbound.WireGuardOption{},
	"socks5": outbound.Socks5Option{}, "http": outbound.HttpOption{},
}

// inert reports whether mihomo's adapter for typ ignores option key: no
// field of its option struct has that name (compared as mihomo's decoder
// does: case-insensitive, '_' as '-').
func inert(typ, key string) bool {
	opt, ok := adapterOptions[typ]
	if !ok || key == "type" {
		return false
	}
	return !hasOption(reflect.TypeOf(opt), optionKey(key))
}

func optionKey(k string) string { return strings.ToLower(strings.ReplaceAll(k, "_", "-")) }

func hasOption(t reflect.Type, key string) bool {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			if hasOption(f.Type, key) {
				return true
			}
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("proxy"), ",")
		if name != "" && name != "-" && optionKey(name) == key {
			return true
		}
	}
	return false
}

// linkExtras applies the extrasKey of link l (as the converter saw it) to
// the converter's mapping m.
func linkExtras(scheme, l string, m map[string]any) error {
	raw, err := extrasOf(scheme, l)
	if err != nil || raw == "" {
		return err
	}
	typ, _ := m["type"].(string)
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(raw, "="))
	if err != nil {
		return fmt.Errorf("%s: %s= is not base64url", typ, extrasKey)
	}
	var x map[string]any
	if err := json.Unmarshal(b, &x); err != nil {
		return fmt.Errorf("%s: %s= is not a JSON object", typ, extrasKey)
	}
	for k, v := range x {
		k = strings.ToLower(k)
		switch {
		case udpPrefs[k]:
			on, ok := v.(bool)
			if !ok {
				return fmt.Errorf("%s: %s: %s must be true or false", typ, extrasKey, k)
			}
			if on {
				m[k] = true
			} else {
				delete(m, k)
			}
		case v == nil && converterDefaults[k] != nil:
			if got, _ := json.Marshal(m[k]); slices.Contains(converterDefaults[k], string(got)) {
				delete(m, k)
			}
		case v != nil && inert(typ, k) && m[k] == nil:
			m[k] = v
		case v != nil && tlsOnly[k] && !hasTLS(m) && (m[k] == nil || m[k] == false):
			m[k] = v
		default:
			return fmt.Errorf("%s: %s: option %q cannot be set from a link", typ, extrasKey, k)
		}
	}
	return nil
}

// extrasOf finds the extrasKey value in a link: in the query of URL-shaped
// links, in the base64 JSON of vmess, in the base64 body's query of ssr.
func extrasOf(scheme, l string) (string, error) {
	switch scheme {
	case "vmess":
		body := l[len("vmess://"):]
		if base64Run(body) != body {
			break // vmess://uuid@host:port?… is URL-shaped
		}
		dec, err := decodeB64(body)
		if err != nil {
			return "", nil
		}
		var v map[string]any
		if jsonFirst(dec, &v) != nil {
			return "", nil
		}
		s, _ := v[extrasKey].(string)
		return s, nil
	case "ssr":
		dec, err := decodeB64(l[len("ssr://"):])
		if err != nil {
			return "", nil
		}
		_, q, ok := strings.Cut(string(dec), "/?")
		if !ok {
			return "", nil
		}
		vals, err := url.ParseQuery(q)
		if err != nil {
			return "", nil
		}
		return vals.Get(extrasKey), nil
	}
	u, err := url.Parse(l)
	if err != nil {
		return "", nil
	}
	q := u.Query()
	if len(q[extrasKey]) > 1 {
		return "", errors.New(scheme + ": " + extrasKey + "= given twice")
	}
	return q.Get(extrasKey), nil
}
