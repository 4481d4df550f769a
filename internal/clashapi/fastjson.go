package clashapi

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendUpstream appends upstreamJSON(p)'s encoding without reflection:
// GET /proxies writes 100,000 of them, and encoding/json's reflection was
// most of the list's Go time. TestAppendUpstreamMatches holds the two
// encodings equal.
func (h *handler) appendUpstream(b []byte, p *Proxy, provider string) []byte {
	b = append(b, `{"name":`...)
	b = appendString(b, p.Name)
	b = append(b, `,"type":`...)
	b = appendString(b, mihomoType(p.Type))
	b = append(b, `,"id":`...)
	b = appendString(b, p.Name)
	b = append(b, `,"udp":`...)
	b = strconv.AppendBool(b, p.UDP)
	b = append(b, `,"uot":false,"xudp":false,"tfo":false,"mptcp":false,"smux":false,"interface":"","routing-mark":0,"provider-name":`...)
	b = appendString(b, provider)
	b = append(b, `,"dialer-proxy":"","alive":`...)
	b = strconv.AppendBool(b, p.Alive)
	b = append(b, `,"history":`...)
	hist := len(b)
	b = appendHistory(b, p.History)
	histJSON := b[hist:]
	b = append(b, `,"extra":{`...)
	if h.o.TestURL != "" {
		b = appendString(b, h.o.TestURL)
		b = append(b, `:{"alive":`...)
		b = strconv.AppendBool(b, p.Alive)
		b = append(b, `,"history":`...)
		b = append(b, histJSON...)
		b = append(b, '}')
	}
	b = append(b, `},"proxypool":{`...)
	n := len(b)
	field := func(key string) {
		if len(b) > n {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, key...)
		b = append(b, `":`...)
	}
	str := func(key, v string) {
		if v != "" {
			field(key)
			b = appendString(b, v)
		}
	}
	str("title", p.Title)
	str("server", p.Server)
	if p.Port != 0 {
		field("port")
		b = strconv.AppendInt(b, int64(p.Port), 10)
	}
	str("state", p.State)
	str("exit_ip", p.ExitIP)
	str("country", p.Country)
	if p.LatencyMS != 0 {
		field("latency_ms")
		b = appendFloat(b, p.LatencyMS)
	}
	if len(p.Sources) > 0 {
		field("sources")
		b = append(b, '[')
		for i, s := range p.Sources {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, s)
		}
		b = append(b, ']')
	}
	return append(b, "}}"...)
}

func appendHistory(b []byte, hist []Delay) []byte {
	b = append(b, '[')
	for i, d := range hist {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"time":"`...)
		b = d.Time.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","delay":`...)
		b = strconv.AppendInt(b, int64(d.Delay), 10)
		b = append(b, '}')
	}
	return append(b, ']')
}

// appendFloat writes f as encoding/json does for the values a latency
// takes (no exponent below 1e21).
func appendFloat(b []byte, f float64) []byte {
	if f >= 1e21 || (f != 0 && f < 1e-6 && f > -1e-6) {
		out, _ := json.Marshal(f)
		return append(b, out...)
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64)
}

// appendString quotes s as encoding/json does; anything but plain
// printable ASCII takes encoding/json's own path.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			out, _ := json.Marshal(s)
			return append(b, out...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
