package interop

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"os/exec"
	"testing"
)

// xray-core v1.8.24 is built by scripts/interop-tools.sh (-checklinkname=0
// for Go 1.23+); it is the reference implementation of vless vision and
// reality. Each kind runs its own xray on its own e.IP(), the freedom
// outbound sending from that IP (sendThrough).
const xrayImpl = "xray-core v1.8.24 (go module proxy)"

func init() {
	register(
		Kind{
			Name: "xray-vless-tcp-tls-vision",
			Impl: xrayImpl,
			Form: "vless:// share link, type=tcp, security=tls, flow=xtls-rprx-vision, allowInsecure=1, fp=chrome",
			Setup: func(t testing.TB, e *Env) (string, string) {
				id := newUUID(t)
				ip, port := e.IP(), e.Port()
				xrayStart(t, e, "xr-vless-vision", ip, port, map[string]any{
					"protocol": "vless",
					"settings": map[string]any{
						"clients":    []any{map[string]any{"id": id, "flow": "xtls-rprx-vision"}},
						"decryption": "none",
					},
					"streamSettings": map[string]any{"network": "tcp", "security": "tls", "tlsSettings": xrayTLS(e)},
				})
				q := url.Values{"encryption": {"none"}, "flow": {"xtls-rprx-vision"}, "security": {"tls"},
					"sni": {sniName}, "allowInsecure": {"1"}, "fp": {"chrome"}, "type": {"tcp"}, "headerType": {"none"}}
				return fmt.Sprintf("vless://%s@%s?%s#xr-vless-tcp-tls-vision", id, hostPort(ip, port), q.Encode()), ip
			},
		},
		Kind{
			Name: "xray-vless-reality-vision",
			Impl: xrayImpl,
			Form: "vless:// share link, type=tcp, security=reality, flow=xtls-rprx-vision, pbk, sid, sni, fp=chrome",
			Setup: func(t testing.TB, e *Env) (string, string) {
				bin := e.Bin(t, "xray")
				priv, pub := xrayX25519(t, bin)
				id, sid := newUUID(t), randHex(t, 8)
				dest := realityDest(t, e)
				ip, port := e.IP(), e.Port()
				xrayStart(t, e, "xr-vless-reality", ip, port, map[string]any{
					"protocol": "vless",
					"settings": map[string]any{
						"clients":    []any{map[string]any{"id": id, "flow": "xtls-rprx-vision"}},
						"decryption": "none",
					},
					"streamSettings": map[string]any{
						"network": "tcp", "security": "reality",
						"realitySettings": map[string]any{
							"show": false, "dest": dest, "xver": 0,
							"serverNames": []string{sniName},
							"privateKey":  priv,
							"shortIds":    []string{sid},
						},
					},
				})
				q := url.Values{"encryption": {"none"}, "flow": {"xtls-rprx-vision"}, "security": {"reality"},
					"sni": {sniName}, "fp": {"chrome"}, "pbk": {pub}, "sid": {sid}, "type": {"tcp"}, "headerType": {"none"}}
				return fmt.Sprintf("vless://%s@%s?%s#xr-vless-reality-vision", id, hostPort(ip, port), q.Encode()), ip
			},
		},
		Kind{
			Name: "xray-vmess-tcp-v2rayn",
			Impl: xrayImpl,
			Form: `vmess:// v2rayN base64 JSON {"v":"2","net":"tcp","type":"none","tls":""}`,
			Setup: func(t testing.TB, e *Env) (string, string) {
				id := newUUID(t)
				ip, port := e.IP(), e.Port()
				xrayStart(t, e, "xr-vmess-tcp", ip, port, map[string]any{
					"protocol":       "vmess",
					"settings":       map[string]any{"clients": []any{map[string]any{"id": id, "alterId": 0}}},
					"streamSettings": map[string]any{"network": "tcp"},
				})
				// Field order and string-typed numbers as v2rayN exports them.
				js := fmt.Sprintf(`{"v":"2","ps":"xr-vmess-tcp","add":"%s","port":"%d","id":"%s","aid":"0","scy":"auto","net":"tcp","type":"none","host":"","path":"","tls":"","sni":"","alpn":"","fp":""}`,
					ip, port, id)
				return "vmess://" + base64.StdEncoding.EncodeToString([]byte(js)), ip
			},
		},
		Kind{
			Name: "xray-trojan-tcp-tls",
			Impl: xrayImpl,
			Form: "trojan:// share link, type=tcp, security=tls, allowInsecure=1",
			Setup: func(t testing.TB, e *Env) (string, string) {
				pass := randToken(t, 12)
				ip, port := e.IP(), e.Port()
				xrayStart(t, e, "xr-trojan", ip, port, map[string]any{
					"protocol":       "trojan",
					"settings":       map[string]any{"clients": []any{map[string]any{"password": pass}}},
					"streamSettings": map[string]any{"network": "tcp", "security": "tls", "tlsSettings": xrayTLS(e)},
				})
				q := url.Values{"security": {"tls"}, "sni": {sniName}, "allowInsecure": {"1"}, "type": {"tcp"}, "headerType": {"none"}}
				return fmt.Sprintf("trojan://%s@%s?%s#xr-trojan-tcp-tls", pass, hostPort(ip, port), q.Encode()), ip
			},
		},
		Kind{
			Name: "xray-vless-ws-tls",
			Impl: xrayImpl,
			Form: "vless:// share link, type=ws, security=tls, allowInsecure=1",
			Setup: func(t testing.TB, e *Env) (string, string) {
				id := newUUID(t)
				ip, port := e.IP(), e.Port()
				xrayStart(t, e, "xr-vless-ws", ip, port, map[string]any{
					"protocol": "vless",
					"settings": map[string]any{"clients": []any{map[string]any{"id": id}}, "decryption": "none"},
					"streamSettings": map[string]any{
						"network": "ws", "security": "tls", "tlsSettings": xrayTLS(e),
						"wsSettings": map[string]any{"path": "/vlws"},
					},
				})
				q := url.Values{"encryption": {"none"}, "security": {"tls"}, "sni": {sniName}, "allowInsecure": {"1"},
					"type": {"ws"}, "path": {"/vlws"}, "host": {sniName}}
				return fmt.Sprintf("vless://%s@%s?%s#xr-vless-ws-tls", id, hostPort(ip, port), q.Encode()), ip
			},
		},
	)
}

// xrayStart writes a one-inbound config on ip:port whose only outbound is
// freedom sending from ip, checks it (xray -test) and starts xray.
func xrayStart(t testing.TB, e *Env, name, ip string, port int, inbound map[string]any) {
	t.Helper()
	bin := e.Bin(t, "xray")
	inbound["tag"] = "in"
	inbound["listen"] = ip
	inbound["port"] = port
	cfg := map[string]any{
		"log":       map[string]any{"loglevel": "warning"},
		"inbounds":  []any{inbound},
		"outbounds": []any{map[string]any{"protocol": "freedom", "tag": "direct", "sendThrough": ip}},
	}
	// The port makes the file unique: Setups run in parallel.
	path := writeJSON(t, e, fmt.Sprintf("%s-%d.json", name, port), cfg)
	if out, err := exec.Command(bin, "run", "-test", "-c", path).CombinedOutput(); err != nil {
		t.Fatalf("xray -test %s: %v\n%s", path, err, out)
	}
	e.Start(t, name, []string{bin, "run", "-c", path}, "tcp:"+hostPort(ip, port))
}

// xrayTLS is a server tlsSettings block with the Env's self-signed certificate.
func xrayTLS(e *Env) map[string]any {
	cert, key := e.Cert()
	return map[string]any{
		"serverName":   sniName,
		"certificates": []any{map[string]any{"certificateFile": cert, "keyFile": key}},
	}
}

// xrayX25519 runs `xray x25519` ("Private key: …" / "Public key: …").
func xrayX25519(t testing.TB, bin string) (priv, pub string) {
	t.Helper()
	out, err := exec.Command(bin, "x25519").Output()
	if err != nil {
		t.Fatalf("xray x25519: %v", err)
	}
	kv := keyLines(string(out))
	priv, pub = kv["privatekey"], kv["publickey"]
	if priv == "" || pub == "" {
		t.Fatalf("xray x25519: no key pair in %q", out)
	}
	return priv, pub
}
