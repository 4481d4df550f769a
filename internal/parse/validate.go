package parse

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/metacubex/mihomo/adapter"
	"github.com/metacubex/mihomo/log"

	"github.com/proxypool/proxypool/internal/upstream"
)

var silenceOnce sync.Once

// silenceMihomo sets mihomo's process-wide log level to silent so that
// parsing prints nothing.
func silenceMihomo() { silenceOnce.Do(func() { log.SetLevel(log.SILENT) }) }

// notUpstreams are mihomo types that do not leave through another host.
var notUpstreams = map[string]bool{"direct": true, "dns": true, "reject": true, "reject-drop": true, "pass": true, "compatible": true}

// build normalizes a mihomo-style mapping into an Upstream and proves mihomo
// can construct its adapter (socks4, which mihomo lacks, is checked here).
func build(m map[string]any) (upstream.Upstream, error) {
	typ, _ := m["type"].(string)
	typ = strings.ToLower(typ)
	if notUpstreams[typ] {
		return upstream.Upstream{}, fmt.Errorf("%s: not an upstream proxy", typ)
	}
	u, err := upstream.New(m)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), upstream.ErrInvalid.Error()+": ")
		if typ == "" {
			return upstream.Upstream{}, errors.New(msg)
		}
		if !strings.HasPrefix(msg, typ+":") {
			msg = typ + ": " + msg
		}
		return upstream.Upstream{}, errors.New(msg)
	}
	if host, err := checkHost(u.Server); err != nil {
		return upstream.Upstream{}, fmt.Errorf("%s: %w", u.Type, err)
	} else if host != u.Server {
		// an international name: identify and dial it by its A-label
		m["server"] = host
		if u, err = upstream.New(m); err != nil {
			return upstream.Upstream{}, fmt.Errorf("%s: %w", typ, err)
		}
	}
	switch u.Type {
	case upstream.SOCKS4:
		return u, checkSOCKS4(u)
	case upstream.Tor:
		return upstream.Upstream{}, errors.New("tor: tor upstreams come from torgen, not from lists")
	}
	if err := checkCredentials(u); err != nil {
		return upstream.Upstream{}, err
	}
	if u.Type == upstream.WireGuard {
		if err := checkWireGuard(u); err != nil {
			return upstream.Upstream{}, err
		}
	}
	check := u.Options
	if u.Name == "" {
		// mihomo insists on a name; it is not part of the identity
		check = make(map[string]any, len(u.Options)+1)
		for k, v := range u.Options {
			check[k] = v
		}
		check["name"] = u.Addr()
	}
	if err := tryAdapter(check); err != nil {
		if u.Type == upstream.WireGuard && strings.Contains(err.Error(), "gVisor is not included") {
			// This binary was built without mihomo's with_gvisor tag, so no
			// wireguard adapter can be built here; checkWireGuard vouched
			// for the record, and the dialer will say it cannot dial it.
			return u, nil
		}
		return upstream.Upstream{}, fmt.Errorf("%s: %s", u.Type, mihomoMessage(err))
	}
	return u, nil
}

// checkWireGuard checks what mihomo's wireguard adapter would: 32-byte
// base64 keys, local addresses that parse, three reserved bytes.
func checkWireGuard(u upstream.Upstream) error {
	for _, k := range []string{"private-key", "public-key", "pre-shared-key"} {
		v := u.Str(k)
		if v == "" && k == "pre-shared-key" {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(b) != 32 {
			return fmt.Errorf("wireguard: %s is not 32 bytes of base64", k)
		}
	}
	if u.Str("ip") == "" && u.Str("ipv6") == "" {
		return errors.New("wireguard: missing local address")
	}
	for _, k := range []string{"ip", "ipv6"} {
		v := u.Str(k)
		if v == "" {
			continue
		}
		if !strings.Contains(v, "/") {
			v += "/32"
			if k == "ipv6" {
				v = u.Str(k) + "/128"
			}
		}
		if _, err := netip.ParsePrefix(v); err != nil {
			return fmt.Errorf("wireguard: bad %s %q", k, u.Str(k))
		}
	}
	if r, ok := u.Options["reserved"].([]any); ok && len(r) != 3 {
		return fmt.Errorf("wireguard: reserved has %d bytes, want 3", len(r))
	}
	return nil
}

// tryAdapter builds mihomo's adapter for the mapping and closes it.
func tryAdapter(m map[string]any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("mihomo panicked building the adapter: %v", r)
		}
	}()
	p, err := adapter.ParseProxy(m)
	if err != nil {
		return err
	}
	return p.Close()
}

func checkSOCKS4(u upstream.Upstream) error {
	for k, v := range u.Options {
		switch k {
		case "type", "server", "port", "name":
		case "username":
			if _, ok := v.(string); !ok {
				return errors.New("socks4: user id must be a string")
			}
		case "udp", "skip-cert-verify":
		default:
			return fmt.Errorf("socks4: unsupported option %q", k)
		}
	}
	return nil
}

// mihomoMessage tidies mihomo's wording ("ss unknown method: rc4-foo").
func mihomoMessage(err error) string {
	s := err.Error()
	low := strings.ToLower(s)
	if i := strings.Index(low, "unknown method"); i >= 0 {
		rest := strings.TrimSpace(strings.TrimLeft(s[i+len("unknown method"):], ": "))
		if strings.IndexFunc(rest, func(r rune) bool { return r == utf8.RuneError || !unicode.IsPrint(r) }) >= 0 {
			// not text: the userinfo was no base64 of cipher:password
			return "unknown cipher (the userinfo did not decode to text: a vless or trojan link labelled ss?)"
		}
		return fmt.Sprintf("unknown cipher '%s'", rest)
	}
	return s
}

// checkCredentials rejects records mihomo would build but no server would
// accept: a vless/vmess without uuid, a trojan/hysteria2/anytls without
// password, a tuic with neither uuid nor token.
func checkCredentials(u upstream.Upstream) error {
	switch u.Type {
	case upstream.VLESS, upstream.VMess:
		if u.Str("uuid") == "" {
			return fmt.Errorf("%s: missing uuid", u.Type)
		}
	case upstream.Trojan, upstream.AnyTLS:
		if u.Str("password") == "" {
			return fmt.Errorf("%s: missing password", u.Type)
		}
	case upstream.TUIC:
		if u.Str("uuid") == "" && u.Str("token") == "" {
			return errors.New("tuic: missing uuid:password or token")
		}
	case upstream.SS:
		if u.Str("cipher") == "" {
			return errors.New("ss: missing cipher")
		}
	}
	return nil
}
