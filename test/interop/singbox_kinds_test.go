package interop

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/testtool"
)

// sing-box v1.11.15 is built by scripts/interop-tools.sh with
// with_quic,with_utls,with_reality_server,with_grpc; every kind below runs its
// own sing-box process on its own e.IP(), with the direct outbound bound to
// that IP so the judge sees it as the exit.
const singboxImpl = "sing-box v1.11.15 (go module proxy)"

// sniName is the name every TLS link asks for; the Env's certificate carries
// it as a DNS SAN but is self-signed, so links must say "insecure".
const sniName = "interop.test"

func init() {
	register(
		singboxKind("vless-reality-vision", "tcp", "vless:// share link, type=tcp, security=reality, flow=xtls-rprx-vision, fp=chrome",
			func(t testing.TB, e *Env, ip string, port int) (map[string]any, string) {
				return singboxVLESSReality(t, e, ip, port, "tcp")
			}),
		singboxKind("vless-reality-grpc", "tcp", "vless:// share link, type=grpc, security=reality, fp=chrome",
			func(t testing.TB, e *Env, ip string, port int) (map[string]any, string) {
				return singboxVLESSReality(t, e, ip, port, "grpc")
			}),
		singboxKind("vless-grpc-tls", "tcp", "vless:// share link, type=grpc, security=tls, allowInsecure=1",
			func(t testing.TB, e *Env, ip string, port int) (map[string]any, string) {
				id := newUUID(t)
				q := url.Values{"encryption": {"none"}, "security": {"tls"}, "sni": {sniName},
					"allowInsecure": {"1"}, "type": {"grpc"}, "serviceName": {"pp.Tun"}, "mode": {"gun"}}
				return map[string]any{
					"type": "vless", "users": []any{map[string]any{"uuid": id}},
					"tls":       singboxTLS(e, nil),
					"transport": map[string]any{"type": "grpc", "service_name": "pp.Tun"},
				}, fmt.Sprintf("vless://%s@%s?%s#sb-vless-grpc-tls", id, hostPort(ip, port), q.Encode())
			}),
		singboxKind("hysteria2", "udp", "hysteria2:// share link, insecure=1, sni",
			func(t testing.TB, e *Env, ip string, port int) (map[string]any, string) {
				pass := randToken(t, 12)
				return map[string]any{
					"type": "hysteria2", "users": []any{map[string]any{"password": pass}},
					"tls": singboxTLS(e, []string{"h3"}),
				}, fmt.Sprintf("hysteria2://%s@%s?insecure=1&sni=%s#sb-hysteria2", pass, hostPort(ip, port), sniName)
			}),
		singboxKind("tuic-v5", "udp", "tuic:// share link (v5 uuid:password), congestion_control=bbr, alpn=h3, allow_insecure=1",
			func(t testing.TB, e *Env, ip string, port int) (map[string]any, string) {
				id, pass := newUUID(t), randToken(t, 12)
				return map[string]any{
						"type": "tuic", "users": []any{map[string]any{"uuid": id, "password": pass}},
						"congestion_control": "bbr",
						"tls":                singboxTLS(e, []string{"h3"}),
					}, fmt.Sprintf("tuic://%s:%s@%s?congestion_control=bbr&alpn=h3&udp_relay_mode=native&allow_insecure=1&sni=%s#sb-tuic-v5",
						id, pass, hostPort(ip, port), sniName)
			}),
		singboxKind("ss2022-blake3-aes-128-gcm", "tcp", "ss:// SIP002 link, base64url(method:password) userinfo (v2rayN), 2022-blake3-aes-128-gcm",
			func(t testing.TB, e *Env, ip string, port int) (map[string]any, string) {
				return singboxSS2022(t, ip, port, true)
			}),
		singboxKind("ss2022-blake3-aes-128-gcm-plain", "tcp", "ss:// SIP022 link, percent-encoded method:password userinfo (sing-box, Shadowrocket), 2022-blake3-aes-128-gcm",
			func(t testing.TB, e *Env, ip string, port int) (map[string]any, string) {
				return singboxSS2022(t, ip, port, false)
			}),
		singboxKind("trojan-ws-tls", "tcp", "trojan:// share link, type=ws, security=tls, allowInsecure=1",
			func(t testing.TB, e *Env, ip string, port int) (map[string]any, string) {
				pass := randToken(t, 12)
				q := url.Values{"security": {"tls"}, "sni": {sniName}, "allowInsecure": {"1"},
					"type": {"ws"}, "path": {"/tj"}, "host": {sniName}}
				return map[string]any{
					"type": "trojan", "users": []any{map[string]any{"password": pass}},
					"tls":       singboxTLS(e, nil),
					"transport": map[string]any{"type": "ws", "path": "/tj"},
				}, fmt.Sprintf("trojan://%s@%s?%s#sb-trojan-ws-tls", pass, hostPort(ip, port), q.Encode())
			}),
		singboxKind("https-auth", "tcp", "https:// proxy URI with user:pass, insecure=1",
			func(t testing.TB, e *Env, ip string, port int) (map[string]any, string) {
				user, pass := "ppuser", randToken(t, 10)
				return map[string]any{
					"type":  "http",
					"users": []any{map[string]any{"username": user, "password": pass}},
					"tls":   singboxTLS(e, nil),
				}, fmt.Sprintf("https://%s:%s@%s?insecure=1&sni=%s#sb-https-auth", user, pass, hostPort(ip, port), sniName)
			}),
		singboxKind("vmess-ws-tls-clash", "tcp", "Clash YAML document, type: vmess, network: ws, tls: true, skip-cert-verify: true",
			func(t testing.TB, e *Env, ip string, port int) (map[string]any, string) {
				id := newUUID(t)
				return map[string]any{
						"type": "vmess", "users": []any{map[string]any{"uuid": id, "alterId": 0}},
						"tls":       singboxTLS(e, nil),
						"transport": map[string]any{"type": "ws", "path": "/vm"},
					}, fmt.Sprintf(`proxies:
  - name: "sb-vmess-ws-tls"
    type: vmess
    server: %s
    port: %d
    uuid: %s
    alterId: 0
    cipher: auto
    udp: true
    tls: true
    skip-cert-verify: true
    servername: %s
    network: ws
    ws-opts:
      path: /vm
      headers:
        Host: %s
`, ip, port, id, sniName, sniName)
			}),
		singboxKind("socks5-auth", "tcp", "socks5:// URI with user:pass",
			func(t testing.TB, e *Env, ip string, port int) (map[string]any, string) {
				user, pass := "ppuser", randToken(t, 10)
				return map[string]any{
					"type":  "socks",
					"users": []any{map[string]any{"username": user, "password": pass}},
				}, fmt.Sprintf("socks5://%s:%s@%s#sb-socks5-auth", user, pass, hostPort(ip, port))
			}),
	)
}

// singboxKind is the Kind of one sing-box inbound on a fresh e.IP() and
// e.Port(), listening on proto ("tcp" or "udp"): server gives the inbound
// and the subscription line that reaches it. The judge must see ip.
func singboxKind(name, proto, form string, server func(t testing.TB, e *Env, ip string, port int) (map[string]any, string)) Kind {
	return Kind{Name: "singbox-" + name, Impl: singboxImpl, Form: form, Setup: func(t testing.TB, e *Env) (string, string) {
		ip, port := e.IP(), e.Port()
		inbound, line := server(t, e, ip, port)
		singboxStart(t, e, "sb-"+name, ip, port, proto, inbound)
		return line, ip
	}}
}

// singboxVLESSReality is a sing-box vless reality inbound (tcp with
// xtls-rprx-vision, or grpc, where vision does not apply) whose handshake
// target is a loopback TLS server of the test's own.
func singboxVLESSReality(t testing.TB, e *Env, ip string, port int, network string) (map[string]any, string) {
	priv, pub := keyPair(t, e.Bin(t, "sing-box"), "generate", "reality-keypair")
	id, sid := newUUID(t), randHex(t, 8)
	dest := realityDest(t, e)
	dh, dp, _ := net.SplitHostPort(dest)
	dport, _ := strconv.Atoi(dp)
	user := map[string]any{"uuid": id}
	if network == "tcp" {
		user["flow"] = "xtls-rprx-vision"
	}
	in := map[string]any{
		"type": "vless", "users": []any{user},
		"tls": map[string]any{
			"enabled": true, "server_name": sniName,
			"reality": map[string]any{
				"enabled":     true,
				"handshake":   map[string]any{"server": dh, "server_port": dport},
				"private_key": priv,
				"short_id":    []string{sid},
			},
		},
	}
	q := url.Values{"encryption": {"none"}, "security": {"reality"}, "sni": {sniName},
		"fp": {"chrome"}, "pbk": {pub}, "sid": {sid}, "type": {network}}
	if network == "tcp" {
		q.Set("flow", "xtls-rprx-vision")
	} else {
		in["transport"] = map[string]any{"type": "grpc", "service_name": "pp.Reality"}
		q.Set("serviceName", "pp.Reality")
		q.Set("mode", "gun")
	}
	return in, fmt.Sprintf("vless://%s@%s?%s#sb-vless-reality-%s", id, hostPort(ip, port), q.Encode(), network)
}

// singboxSS2022 is a 2022-blake3-aes-128-gcm inbound with its link written
// either way subscriptions do: the userinfo base64url-encoded (SIP002, what
// v2rayN exports) or percent-encoded plain text (SIP022, which asks for it
// because the 2022 key is base64 already).
func singboxSS2022(t testing.TB, ip string, port int, b64 bool) (map[string]any, string) {
	// 2022 ciphers take a base64 key of exactly the cipher's key size.
	key := make([]byte, 16)
	if _, err := rand.Read(key); err != nil {
		t.Fatalf("ss2022 key: %v", err)
	}
	pass := base64.StdEncoding.EncodeToString(key)
	const method = "2022-blake3-aes-128-gcm"
	user := url.UserPassword(method, pass).String()
	if b64 {
		user = base64.RawURLEncoding.EncodeToString([]byte(method + ":" + pass))
	}
	return map[string]any{"type": "shadowsocks", "method": method, "password": pass},
		fmt.Sprintf("ss://%s@%s#sb-ss2022", user, hostPort(ip, port))
}

// singboxStart starts sing-box with one inbound listening on ip:port and
// one outbound, direct, bound to ip.
func singboxStart(t testing.TB, e *Env, name, ip string, port int, proto string, inbound map[string]any) {
	t.Helper()
	inbound["tag"] = "in"
	inbound["listen"] = ip
	inbound["listen_port"] = port
	startChecked(t, e, name, port, e.Bin(t, "sing-box"), []string{"check"}, map[string]any{
		"log":       map[string]any{"level": "warn", "timestamp": true},
		"inbounds":  []any{inbound},
		"outbounds": []any{map[string]any{"type": "direct", "tag": "direct", "inet4_bind_address": ip}},
		"route":     map[string]any{"final": "direct"},
	}, proto+":"+hostPort(ip, port))
}

// startChecked writes cfg as name's config file, has bin check it
// (check... -c FILE) and starts "bin run -c FILE", ready once ready
// answers. The port makes the file unique: Setups run in parallel.
func startChecked(t testing.TB, e *Env, name string, port int, bin string, check []string, cfg any, ready string) {
	t.Helper()
	path := writeJSON(t, e, fmt.Sprintf("%s-%d.json", name, port), cfg)
	if out, err := exec.Command(bin, append(check, "-c", path)...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s %s: %v\n%s", filepath.Base(bin), strings.Join(check, " "), path, err, out)
	}
	e.Start(t, name, []string{bin, "run", "-c", path}, ready)
}

// singboxTLS is a server TLS block with the Env's self-signed certificate.
func singboxTLS(e *Env, alpn []string) map[string]any {
	cert, key := e.Cert()
	m := map[string]any{"enabled": true, "server_name": sniName, "certificate_path": cert, "key_path": key}
	if alpn != nil {
		m["alpn"] = alpn
	}
	return m
}

// keyPair runs bin's key generator (args: "generate reality-keypair" for
// sing-box, "x25519" for xray) and reads the pair it prints.
func keyPair(t testing.TB, bin string, args ...string) (priv, pub string) {
	t.Helper()
	what := filepath.Base(bin) + " " + strings.Join(args, " ")
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	kv := keyLines(string(out))
	priv, pub = kv["privatekey"], kv["publickey"]
	if priv == "" || pub == "" {
		t.Fatalf("%s: no key pair in %q", what, out)
	}
	return priv, pub
}

// keyLines reads "Key: value" lines, keys lower-cased without spaces, so
// sing-box's "PrivateKey:" and xray's "Private key:" read alike.
func keyLines(s string) map[string]string {
	kv := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok {
			kv[strings.ToLower(strings.ReplaceAll(k, " ", ""))] = strings.TrimSpace(v)
		}
	}
	return kv
}

// realityDest starts the TLS 1.3 server a reality inbound forwards
// handshakes to (a real one would be a public site; here it is loopback,
// with the Env's certificate) and returns its address.
func realityDest(t testing.TB, e *Env) string {
	t.Helper()
	certFile, keyFile := e.Cert()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("reality dest: loading the Env certificate: %v", err)
	}
	ip := e.IP()
	ln, err := tls.Listen("tcp", hostPort(ip, e.Port()), &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
	})
	if err != nil {
		t.Fatalf("reality dest: listen: %v", err)
	}
	// It serves until the world ends, not the Setup subtest: the reality
	// server forwards every unauthenticated handshake to it, probes included.
	ctx := e.ctx
	go func() { <-ctx.Done(); ln.Close() }()
	testtool.Serve(ln, func(c net.Conn) {
		// A short plain answer is enough: reality only borrows the
		// handshake; probers that get this far see a web server.
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if err := c.(*tls.Conn).HandshakeContext(ctx); err != nil {
			return
		}
		buf := make([]byte, 4096)
		if _, err := c.Read(buf); err != nil {
			return
		}
		_, _ = c.Write([]byte("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"))
	})
	return ln.Addr().String()
}

func writeJSON(t testing.TB, e *Env, name string, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatalf("encoding %s: %v", name, err)
	}
	path := filepath.Join(e.Dir(), name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatalf("writing %s: %v", path, err)
	}
	return path
}

func hostPort(ip string, port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }

func newUUID(t testing.TB) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("uuid: %v", err)
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// randToken is n random bytes as URL-safe text (passwords that need no
// escaping in a link).
func randToken(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random: %v", err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func randHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n/2)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random: %v", err)
	}
	return fmt.Sprintf("%x", b)
}
