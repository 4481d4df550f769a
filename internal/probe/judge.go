package probe

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/proxypool/proxypool/internal/upstream"
)

// echo is what a judge told us about the request it received.
type echo struct {
	IP      string            // the exit address the judge saw ("" when the judge does not say)
	AllIPs  []string          // every address mentioned (origin lists, forwarded headers)
	Headers map[string]string // echoed request headers, canonical names
	Raw     string
}

// proxyHeaders give a proxy away. Seeing one makes an upstream "anonymous"
// rather than "elite".
var proxyHeaders = []string{
	"Via", "X-Forwarded-For", "Forwarded", "X-Forwarded", "Forwarded-For",
	"X-Real-Ip", "Client-Ip", "X-Client-Ip", "Proxy-Connection", "X-Proxy-Id",
	"X-Bluecoat-Via", "X-Originating-Ip", "X-Cluster-Client-Ip", "X-Forwarded-Host",
	"X-Forwarded-Server", "X-Proxy-Connection", "Proxy-Agent", "X-Imforwards",
}

var errTamper = errors.New("tamper")

// parseEcho understands the judge bodies users list: plain-text IP
// (icanhazip, ipify), httpbin's /ip, /headers and /get, and
// ifconfig.me/all.json-style flat objects.
func parseEcho(body []byte) (echo, error) {
	s := strings.TrimSpace(string(body))
	e := echo{Raw: s, Headers: map[string]string{}}
	if s == "" {
		return e, fmt.Errorf("%w: empty judge body", errTamper)
	}
	if s[0] != '{' {
		if ip, err := netip.ParseAddr(s); err == nil {
			e.IP = ip.Unmap().String()
			e.AllIPs = []string{e.IP}
			return e, nil
		}
		return e, fmt.Errorf("%w: judge body is neither an IP nor JSON (%.40q)", errTamper, s)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return e, fmt.Errorf("%w: judge body is not valid JSON: %v", errTamper, err)
	}
	if h, ok := m["headers"].(map[string]any); ok {
		for k, v := range h {
			if sv, ok := v.(string); ok {
				e.Headers[canonical(k)] = sv
			}
		}
	}
	for _, key := range []string{"origin", "ip", "ip_addr", "address", "query", "YourFuckingIPAddress"} {
		v, ok := m[key].(string)
		if !ok || v == "" {
			continue
		}
		for _, part := range strings.Split(v, ",") {
			part = strings.TrimSpace(part)
			ip, err := netip.ParseAddr(part)
			if err != nil {
				return e, fmt.Errorf("%w: judge echoed %q as the address", errTamper, part)
			}
			e.AllIPs = append(e.AllIPs, ip.Unmap().String())
		}
		// httpbin puts forwarded-for values first and the peer last
		e.IP = e.AllIPs[len(e.AllIPs)-1]
		break
	}
	// flat objects (ifconfig.me/all.json) carry forwarding info at top level
	for _, key := range []string{"forwarded", "via", "x_forwarded_for"} {
		if v, ok := m[key].(string); ok && v != "" {
			e.Headers[canonical(strings.ReplaceAll(key, "_", "-"))] = v
		}
	}
	if e.IP == "" && len(e.Headers) == 0 {
		return e, fmt.Errorf("%w: judge JSON has neither an address nor headers", errTamper)
	}
	return e, nil
}

func canonical(k string) string {
	parts := strings.Split(strings.ToLower(k), "-")
	for i, p := range parts {
		if p != "" {
			parts[i] = strings.ToUpper(p[:1]) + p[1:]
		}
	}
	return strings.Join(parts, "-")
}

// classify decides the anonymity level. realIP is our own address as a judge
// sees it without a proxy.
func classify(e echo, realIP string) upstream.Anonymity {
	if realIP != "" {
		for k, v := range e.Headers {
			if k == "Host" || k == nonceHeader {
				continue // the judge's own address, and our token
			}
			if containsIP(v, realIP) {
				return upstream.AnonTransparent
			}
		}
		for _, ip := range e.AllIPs[:max(0, len(e.AllIPs)-1)] {
			if ip == realIP {
				return upstream.AnonTransparent
			}
		}
	}
	for _, h := range proxyHeaders {
		if _, ok := e.Headers[h]; ok {
			return upstream.AnonAnonymous
		}
	}
	if len(e.AllIPs) > 1 {
		return upstream.AnonAnonymous
	}
	return upstream.AnonElite
}

// containsIP reports whether ip appears as a whole token in s.
func containsIP(s, ip string) bool {
	for _, f := range strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ' ' || r == ';' || r == '=' || r == '"' || r == '[' || r == ']'
	}) {
		if h, _, err := net.SplitHostPort(f); err == nil {
			f = h
		}
		if f == ip {
			return true
		}
	}
	return false
}

// sameSlash24 reports whether a and b share a /24 (IPv4) or /64 (IPv6).
func sameSlash24(a, b string) bool {
	x, err1 := netip.ParseAddr(a)
	y, err2 := netip.ParseAddr(b)
	if err1 != nil || err2 != nil || x.Is4() != y.Is4() {
		return false
	}
	bits := 24
	if !x.Is4() {
		bits = 64
	}
	px, _ := x.Prefix(bits)
	return px.Contains(y)
}
