package interop

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"testing"
)

// xray-core v1.8.24 is built by scripts/interop-tools.sh (-checklinkname=0
// for Go 1.23+); it is the reference implementation of vless vision and
// reality. Each kind runs its own xray on its own e.IP(), the freedom
// outbound sending from that IP (sendThrough).
const xrayImpl = "xray-core v1.8.24 (go module proxy)"

func init() {
	register(
		xrayKind("vless-tcp-tls-vision", "vless:// share link, type=tcp, security=tls, flow=xtls-rprx-vision, allowInsecure=1, fp=chrome",
			func(t testing.TB, e *Env, ip string, port int) (map[string]any, string) {
				id := newUUID(t)
				q := url.Values{"encryption": {"none"}, "flow": {"xtls-rprx-vision"}, "security": {"tls"},
					"sni": {sniName}, "allowInsecure": {"1"}, "fp": {"chrome"}, "type": {"tcp"}, "headerType": {"none"}}
				return map[string]any{
					"protocol":       "vless",
					"settings":       xrayVLESSClients(map[string]any{"id": id, "flow": "xtls-rprx-vision"}),
					"streamSettings": map[string]any{"network": "tcp", "security": "tls", "tlsSettings": xrayTLS(e)},
				}, fmt.Sprintf("vless://%s@%s?%s#xr-vless-tcp-tls-vision", id, hostPort(ip, port), q.Encode())
			}),
		xrayKind("vless-reality-vision", "vless:// share link, type=tcp, security=reality, flow=xtls-rprx-vision, pbk, sid, sni, fp=chrome",
			func(t testing.TB, e *Env, ip string, port int) (map[string]any, string) {
				priv, pub := keyPair(t, e.Bin(t, "xray"), "x25519")
				id, sid := newUUID(t), randHex(t, 8)
				q := url.Values{"encryption": {"none"}, "flow": {"xtls-rprx-vision"}, "security": {"reality"},
					"sni": {sniName}, "fp": {"chrome"}, "pbk": {pub}, "sid": {sid}, "type": {"tcp"}, "headerType": {"none"}}
				return map[string]any{
					"protocol": "vless",
					"settings": xrayVLESSClients(map[string]any{"id": id, "flow": "xtls-rprx-vision"}),
					"streamSettings": map[string]any{
						"network": "tcp", "security": "reality",
						"realitySettings": map[string]any{
							"show": false, "dest": realityDest(t, e), "xver": 0,
							"serverNames": []string{sniName},
							"privateKey":  priv,
							"shortIds":    []string{sid},
						},
					},
				}, fmt.Sprintf("vless://%s@%s?%s#xr-vless-reality-vision", id, hostPort(ip, port), q.Encode())
			}),
		xrayKind("vmess-tcp-v2rayn", `vmess:// v2rayN base64 JSON {"v":"2","net":"tcp","type":"none","tls":""}`,
			func(t testing.TB, e *Env, ip string, port int) (map[string]any, string) {
				id := newUUID(t)
				// Field order and string-typed numbers as v2rayN exports them.
				js := fmt.Sprintf(`{"v":"2","ps":"xr-vmess-tcp","add":"%s","port":"%d","id":"%s","aid":"0","scy":"auto","net":"tcp","type":"none","host":"","path":"","tls":"","sni":"","alpn":"","fp":""}`,
					ip, port, id)
				return map[string]any{
					"protocol":       "vmess",
					"settings":       map[string]any{"clients": []any{map[string]any{"id": id, "alterId": 0}}},
					"streamSettings": map[string]any{"network": "tcp"},
				}, "vmess://" + base64.StdEncoding.EncodeToString([]byte(js))
			}),
		xrayKind("trojan-tcp-tls", "trojan:// share link, type=tcp, security=tls, allowInsecure=1",
			func(t testing.TB, e *Env, ip string, port int) (map[string]any, string) {
				pass := randToken(t, 12)
				q := url.Values{"security": {"tls"}, "sni": {sniName}, "allowInsecure": {"1"}, "type": {"tcp"}, "headerType": {"none"}}
				return map[string]any{
					"protocol":       "trojan",
					"settings":       map[string]any{"clients": []any{map[string]any{"password": pass}}},
					"streamSettings": map[string]any{"network": "tcp", "security": "tls", "tlsSettings": xrayTLS(e)},
				}, fmt.Sprintf("trojan://%s@%s?%s#xr-trojan-tcp-tls", pass, hostPort(ip, port), q.Encode())
			}),
		xrayKind("vless-ws-tls", "vless:// share link, type=ws, security=tls, allowInsecure=1",
			func(t testing.TB, e *Env, ip string, port int) (map[string]any, string) {
				id := newUUID(t)
				q := url.Values{"encryption": {"none"}, "security": {"tls"}, "sni": {sniName}, "allowInsecure": {"1"},
					"type": {"ws"}, "path": {"/vlws"}, "host": {sniName}}
				return map[string]any{
					"protocol": "vless",
					"settings": xrayVLESSClients(map[string]any{"id": id}),
					"streamSettings": map[string]any{
						"network": "ws", "security": "tls", "tlsSettings": xrayTLS(e),
						"wsSettings": map[string]any{"path": "/vlws"},
					},
				}, fmt.Sprintf("vless://%s@%s?%s#xr-vless-ws-tls", id, hostPort(ip, port), q.Encode())
			}),
	)
}

// xrayKind is the Kind of one xray inbound on a fresh e.IP() and e.Port():
// server gives the inbound and the subscription line that reaches it. The
// judge must see ip.
func xrayKind(name, form string, server func(t testing.TB, e *Env, ip string, port int) (map[string]any, string)) Kind {
	return Kind{Name: "xray-" + name, Impl: xrayImpl, Form: form, Setup: func(t testing.TB, e *Env) (string, string) {
		ip, port := e.IP(), e.Port()
		inbound, line := server(t, e, ip, port)
		xrayStart(t, e, "xr-"+name, ip, port, inbound)
		return line, ip
	}}
}

// xrayVLESSClients is a vless inbound's settings with one client.
func xrayVLESSClients(client map[string]any) map[string]any {
	return map[string]any{"clients": []any{client}, "decryption": "none"}
}

// xrayStart starts xray with one inbound on ip:port and one outbound,
// freedom, sending from ip; xray run -test checks the config first.
func xrayStart(t testing.TB, e *Env, name, ip string, port int, inbound map[string]any) {
	t.Helper()
	inbound["tag"] = "in"
	inbound["listen"] = ip
	inbound["port"] = port
	startChecked(t, e, name, port, e.Bin(t, "xray"), []string{"run", "-test"}, map[string]any{
		"log":       map[string]any{"loglevel": "warning"},
		"inbounds":  []any{inbound},
		"outbounds": []any{map[string]any{"protocol": "freedom", "tag": "direct", "sendThrough": ip}},
	}, "tcp:"+hostPort(ip, port))
}

// xrayTLS is a server tlsSettings block with the Env's self-signed certificate.
func xrayTLS(e *Env) map[string]any {
	cert, key := e.Cert()
	return map[string]any{
		"serverName":   sniName,
		"certificates": []any{map[string]any{"certificateFile": cert, "keyFile": key}},
	}
}
