package interop

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxypool/proxypool/test/squidtest"
)

// The Debian kinds: servers from Debian 12 packages (scripts/deps.sh
// installs them), each listening on its own e.IP() and sending from it.

func init() {
	for _, m := range []string{"aes-256-gcm", "chacha20-ietf-poly1305"} {
		register(
			Kind{Name: "ss-" + m + "-sip002", Impl: debImpl("shadowsocks-libev"), Form: "ss:// SIP002, base64url(method:pass)@host:port",
				Setup: func(t testing.TB, e *Env) (string, string) { return setupSS(t, e, m, false) }},
			Kind{Name: "ss-" + m + "-legacy", Impl: debImpl("shadowsocks-libev"), Form: "ss:// legacy, base64(method:pass@host:port)",
				Setup: func(t testing.TB, e *Env) (string, string) { return setupSS(t, e, m, true) }},
		)
	}
	register(
		Kind{Name: "trojan-tls", Impl: debImpl("trojan") + " (trojan-gfw)", Form: "trojan:// ?allowInsecure=1&sni=",
			Setup: setupTrojan},
		Kind{Name: "vmess-tcp", Impl: debImpl("v2ray"), Form: "vmess:// v2rayN base64 JSON, net=tcp",
			Setup: func(t testing.TB, e *Env) (string, string) { return setupV2ray(t, e, "vmess", "tcp", false) }},
		Kind{Name: "vmess-ws", Impl: debImpl("v2ray"), Form: "vmess:// v2rayN base64 JSON, net=ws",
			Setup: func(t testing.TB, e *Env) (string, string) { return setupV2ray(t, e, "vmess", "ws", false) }},
		Kind{Name: "vmess-ws-tls", Impl: debImpl("v2ray"), Form: `vmess:// v2rayN base64 JSON, net=ws tls=tls "allowInsecure":true`,
			Setup: func(t testing.TB, e *Env) (string, string) { return setupV2ray(t, e, "vmess", "ws", true) }},
		Kind{Name: "vless-ws-tls", Impl: debImpl("v2ray"), Form: "vless:// ?type=ws&security=tls&allowInsecure=1",
			Setup: func(t testing.TB, e *Env) (string, string) { return setupV2ray(t, e, "vless", "ws", true) }},
		Kind{Name: "socks5-dante", Impl: debImpl("dante-server"), Form: "socks5://host:port",
			Setup: func(t testing.TB, e *Env) (string, string) { return setupDante(t, e, false) }},
		Kind{Name: "socks5-dante-auth", Impl: debImpl("dante-server"), Form: "socks5://user:pass@host:port",
			Setup: func(t testing.TB, e *Env) (string, string) { return setupDante(t, e, true) }},
		Kind{Name: "socks5-microsocks", Impl: debImpl("microsocks"), Form: "socks5://host:port",
			Setup: func(t testing.TB, e *Env) (string, string) { return setupMicrosocks(t, e, false) }},
		Kind{Name: "socks5-microsocks-auth", Impl: debImpl("microsocks"), Form: "socks5://user:pass@host:port",
			Setup: func(t testing.TB, e *Env) (string, string) { return setupMicrosocks(t, e, true) }},
		Kind{Name: "http-squid-auth", Impl: debImpl("squid"), Form: "http://user:pass@host:port",
			Setup: setupSquid},
		Kind{Name: "http-tinyproxy-auth", Impl: debImpl("tinyproxy"), Form: "http://user:pass@host:port",
			Setup: setupTinyproxy},
	)
}

var debVersions sync.Map // package → "name version (Debian)"

// debImpl names a Debian package with its installed version, as
// dpkg-query reports it ("not installed" when it is not).
func debImpl(pkg string) string {
	if v, ok := debVersions.Load(pkg); ok {
		return v.(string)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Version}", pkg).Output()
	v := pkg + " " + strings.TrimSpace(string(out)) + " (Debian)"
	if err != nil || len(out) == 0 {
		v = pkg + " (not installed)"
	}
	debVersions.Store(pkg, v)
	return v
}

func secret(t testing.TB) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func uuid(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func writeConf(t testing.TB, e *Env, name, body string) string {
	t.Helper()
	p := filepath.Join(e.Dir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// setupSS runs ss-server; its -b binds the outbound sockets.
func setupSS(t testing.TB, e *Env, method string, legacy bool) (string, string) {
	bin := e.Bin(t, "ss-server")
	ip, port, pass := e.IP(), e.Port(), secret(t)
	e.Start(t, "ss-server", []string{bin, "-s", ip, "-p", fmt.Sprint(port), "-k", pass, "-m", method, "-b", ip, "-t", "120"},
		fmt.Sprintf("tcp:%s:%d", ip, port))
	name := "ss-" + method
	if legacy {
		// The pre-SIP002 form: everything but the tag in padded base64.
		return "ss://" + base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("%s:%s@%s:%d", method, pass, ip, port))) + "#" + name, ip
	}
	return fmt.Sprintf("ss://%s@%s:%d#%s", base64.RawURLEncoding.EncodeToString([]byte(method+":"+pass)), ip, port, name), ip
}

// bindShimC is an LD_PRELOAD library that binds every IPv4 socket to
// $INTEROP_BIND_ADDR before connect(). trojan-gfw 1.16 has no setting for
// the outbound address (its "local_addr" is the listener only), and
// loopback routes always pick source 127.0.0.1, so without it the judge
// would see our own address.
const bindShimC = `#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

int connect(int fd, const struct sockaddr *sa, socklen_t len) {
	static int (*next)(int, const struct sockaddr *, socklen_t);
	if (!next) next = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
	const char *ip = getenv("INTEROP_BIND_ADDR");
	if (ip && sa && sa->sa_family == AF_INET) {
		struct sockaddr_in b = {0};
		b.sin_family = AF_INET;
		if (inet_pton(AF_INET, ip, &b.sin_addr) == 1) {
			int saved = errno;
			bind(fd, (struct sockaddr *)&b, sizeof b); /* EINVAL if already bound: keep that */
			errno = saved;
		}
	}
	return next(fd, sa, len);
}
`

var setupMu sync.Mutex

// bindShim compiles bindShimC once per world.
func bindShim(t testing.TB, e *Env) string {
	t.Helper()
	setupMu.Lock()
	defer setupMu.Unlock()
	so := filepath.Join(e.Dir(), "bindshim.so")
	if _, err := os.Stat(so); err == nil {
		return so
	}
	gcc := e.Bin(t, "gcc")
	src := writeConf(t, e, "bindshim.c", bindShimC)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, gcc, "-shared", "-fPIC", "-O2", "-o", so, src, "-ldl").CombinedOutput(); err != nil {
		t.Fatalf("compiling the bind shim: %v\n%s", err, out)
	}
	return so
}

func setupTrojan(t testing.TB, e *Env) (string, string) {
	bin := e.Bin(t, "trojan")
	ip, port, pass := e.IP(), e.Port(), secret(t)
	cert, key := e.Cert()
	host, fport, _ := strings.Cut(e.Target(), ":")
	cfg := map[string]any{
		"run_type": "server", "local_addr": ip, "local_port": port,
		// Non-trojan traffic falls back here (the origin: any HTTP server).
		"remote_addr": host, "remote_port": atoi(fport),
		"password":  []string{pass},
		"log_level": 1,
		"ssl": map[string]any{"cert": cert, "key": key, "key_password": "", "alpn": []string{"http/1.1"},
			"reuse_session": true, "session_ticket": false, "prefer_server_cipher": true},
		"tcp": map[string]any{"prefer_ipv4": true, "no_delay": true, "keep_alive": true},
	}
	b, _ := json.Marshal(cfg)
	conf := writeConf(t, e, fmt.Sprintf("trojan-%d.json", port), string(b))
	shim := bindShim(t, e)
	env := []string{"env", "LD_PRELOAD=" + shim, "INTEROP_BIND_ADDR=" + ip}
	e.Start(t, "trojan", append(env, bin, "-c", conf), fmt.Sprintf("tcp:%s:%d", ip, port))
	return fmt.Sprintf("trojan://%s@%s:%d?allowInsecure=1&sni=interop.test#trojan-gfw", pass, ip, port), ip
}

func atoi(s string) int {
	var n int
	fmt.Sscanf(s, "%d", &n)
	return n
}

// setupV2ray runs v2ray 4.34 with one inbound; the freedom outbound's
// sendThrough binds the exit.
func setupV2ray(t testing.TB, e *Env, proto, network string, tls bool) (string, string) {
	bin := e.Bin(t, "v2ray")
	ip, port, id := e.IP(), e.Port(), uuid(t)
	stream := map[string]any{"network": network}
	if network == "ws" {
		stream["wsSettings"] = map[string]any{"path": "/ws", "headers": map[string]string{"Host": "interop.test"}}
	}
	if tls {
		cert, key := e.Cert()
		stream["security"] = "tls"
		stream["tlsSettings"] = map[string]any{"serverName": "interop.test",
			"certificates": []map[string]string{{"certificateFile": cert, "keyFile": key}}}
	}
	settings := map[string]any{"clients": []map[string]any{{"id": id, "alterId": 0}}}
	if proto == "vless" {
		settings = map[string]any{"clients": []map[string]any{{"id": id}}, "decryption": "none"}
	}
	cfg := map[string]any{
		"log": map[string]any{"loglevel": "warning"},
		"inbounds": []map[string]any{{"listen": ip, "port": port, "protocol": proto,
			"settings": settings, "streamSettings": stream}},
		"outbounds": []map[string]any{{"protocol": "freedom", "sendThrough": ip}},
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	conf := writeConf(t, e, fmt.Sprintf("v2ray-%d.json", port), string(b))
	e.Start(t, "v2ray", []string{bin, "-config", conf}, fmt.Sprintf("tcp:%s:%d", ip, port))
	name := proto + "-" + network
	if tls {
		name += "-tls"
	}
	if proto == "vless" {
		q := "type=ws&security=tls&path=%2Fws&host=interop.test&sni=interop.test&allowInsecure=1&encryption=none"
		return fmt.Sprintf("vless://%s@%s:%d?%s#%s", id, ip, port, q, name), ip
	}
	// v2rayN's share JSON: every value a string but the insecure flag.
	j := map[string]any{"v": "2", "ps": name, "add": ip, "port": fmt.Sprint(port), "id": id, "aid": "0",
		"scy": "auto", "net": network, "type": "none", "host": "", "path": "", "tls": ""}
	if network == "ws" {
		j["host"], j["path"] = "interop.test", "/ws"
	}
	if tls {
		j["tls"], j["sni"], j["allowInsecure"] = "tls", "interop.test", true
	}
	b, _ = json.Marshal(j)
	return "vmess://" + base64.StdEncoding.EncodeToString(b), ip
}

// systemUser makes (once per world) the system user dante's username
// method checks passwords against; it needs root.
func systemUser(t testing.TB, e *Env) (user, pass string) {
	t.Helper()
	setupMu.Lock()
	defer setupMu.Unlock()
	user = "ppinterop" + fmt.Sprint(e.net[1])
	passFile := filepath.Join(e.Dir(), "user-"+user)
	if b, err := os.ReadFile(passFile); err == nil {
		return user, string(b)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("dante's username method checks a system user: run as root (useradd %s)", user)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if exec.CommandContext(ctx, "id", "-u", user).Run() != nil {
		e.onClose(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			exec.CommandContext(ctx, "userdel", user).Run()
		})
		if out, err := exec.CommandContext(ctx, "useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user).CombinedOutput(); err != nil {
			t.Fatalf("useradd %s: %v: %s", user, err, out)
		}
	}
	pass = secret(t)
	cmd := exec.CommandContext(ctx, "chpasswd")
	cmd.Stdin = strings.NewReader(user + ":" + pass + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd %s: %v: %s", user, err, out)
	}
	if err := os.WriteFile(passFile, []byte(pass), 0o600); err != nil {
		t.Fatal(err)
	}
	return user, pass
}

// setupDante runs danted; "external:" is the address it connects from.
func setupDante(t testing.TB, e *Env, auth bool) (string, string) {
	bin := e.Bin(t, "danted")
	ip, port := e.IP(), e.Port()
	method, cred := "none", ""
	if auth {
		u, p := systemUser(t, e)
		method, cred = "username", u+":"+p+"@"
	}
	conf := writeConf(t, e, fmt.Sprintf("danted-%d.conf", port), fmt.Sprintf(`logoutput: stderr
internal: %s port = %d
external: %s
clientmethod: none
socksmethod: %s
user.privileged: root
user.unprivileged: nobody
client pass { from: 0.0.0.0/0 to: 0.0.0.0/0 }
socks pass { from: 0.0.0.0/0 to: 0.0.0.0/0 command: connect }
`, ip, port, ip, method))
	e.Start(t, "danted", []string{bin, "-f", conf, "-p", filepath.Join(e.Dir(), fmt.Sprintf("danted-%d.pid", port)), "-N", "2"},
		fmt.Sprintf("tcp:%s:%d", ip, port))
	return fmt.Sprintf("socks5://%s%s:%d", cred, ip, port), ip
}

// setupMicrosocks runs microsocks; -b binds the outbound sockets.
func setupMicrosocks(t testing.TB, e *Env, auth bool) (string, string) {
	bin := e.Bin(t, "microsocks")
	ip, port := e.IP(), e.Port()
	argv := []string{bin, "-i", ip, "-p", fmt.Sprint(port), "-b", ip}
	cred := ""
	if auth {
		user, pass := "mu"+secret(t)[:6], secret(t)
		argv = append(argv, "-u", user, "-P", pass)
		cred = user + ":" + pass + "@"
	}
	e.Start(t, "microsocks", argv, fmt.Sprintf("tcp:%s:%d", ip, port))
	return fmt.Sprintf("socks5://%s%s:%d", cred, ip, port), ip
}

// setupSquid runs squid in the foreground with its own config, logs and
// pid under a directory of its own (squid drops to the proxy user);
// tcp_outgoing_address is the exit, and the elite settings (no Via, no
// X-Forwarded-For) are what free-list operators run.
func setupSquid(t testing.TB, e *Env) (string, string) {
	bin := e.Bin(t, "squid")
	ip, port := e.IP(), e.Port()
	user, pass := "sq"+secret(t)[:6], secret(t)
	dir := filepath.Join(e.Dir(), fmt.Sprintf("squid-%d", port))
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hash, err := exec.CommandContext(ctx, e.Bin(t, "openssl"), "passwd", "-apr1", pass).Output()
	if err != nil {
		t.Fatalf("openssl passwd: %v", err)
	}
	writeConf(t, e, filepath.Join(filepath.Base(dir), "passwd"), user+":"+strings.TrimSpace(string(hash))+"\n")
	conf := writeConf(t, e, filepath.Join(filepath.Base(dir), "squid.conf"), squidtest.Conf(ip, port, "auth_param basic program /usr/lib/squid/basic_ncsa_auth "+dir+"/passwd\n"+
		"auth_param basic realm interop\nauth_param basic children 2\nacl authed proxy_auth REQUIRED\n"+
		"http_access allow authed\nhttp_access deny all\n", dir))
	e.Start(t, "squid", []string{bin, "-N", "-d", "1", "-f", conf}, fmt.Sprintf("tcp:%s:%d", ip, port))
	return fmt.Sprintf("http://%s:%s@%s:%d", user, pass, ip, port), ip
}

// setupTinyproxy runs tinyproxy in the foreground; Bind is the exit.
func setupTinyproxy(t testing.TB, e *Env) (string, string) {
	bin := e.Bin(t, "tinyproxy")
	ip, port := e.IP(), e.Port()
	user, pass := "tp"+secret(t)[:6], secret(t)
	conf := writeConf(t, e, fmt.Sprintf("tinyproxy-%d.conf", port), fmt.Sprintf(`User nobody
Group nogroup
Port %[2]d
Listen %[1]s
Bind %[1]s
Timeout 600
LogLevel Info
MaxClients 64
BasicAuth %[3]s %[4]s
DisableViaHeader Yes
PidFile "%[5]s/tinyproxy-%[2]d.pid"
`, ip, port, user, pass, e.Dir()))
	e.Start(t, "tinyproxy", []string{bin, "-d", "-c", conf}, fmt.Sprintf("tcp:%s:%d", ip, port))
	return fmt.Sprintf("http://%s:%s@%s:%d", user, pass, ip, port), ip
}
