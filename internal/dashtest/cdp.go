// Package dashtest drives a web dashboard (the metacubexd build in
// ../shared/vendor) in headless Chromium over the DevTools protocol, for
// the Clash API's tests in clashbackend and the daemon's end-to-end test.
package dashtest

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws/wsutil"

	"github.com/proxypool/proxypool/internal/testtool"
)

// Browser is headless Chromium driven over the DevTools protocol: one
// page, its WebSocket, commands answered by id.
type Browser struct {
	t    *testing.T
	cmd  *exec.Cmd
	conn net.Conn
	mu   sync.Mutex
	next int
	wait map[int]chan cdpReply
}

type cdpReply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

var devtoolsLine = regexp.MustCompile(`DevTools listening on (ws://[^\s]+)`)

// StartBrowser starts Chromium with a blank page and attaches to it.
func StartBrowser(t *testing.T) *Browser {
	t.Helper()
	bin := testtool.Need(t, "chromium", "apt-get install chromium, or scripts/deps.sh")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--disable-extensions", "--mute-audio", "--window-size=1400,1000",
		"--user-data-dir="+t.TempDir(), "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// kill the whole group: Chromium leaves helper processes behind
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := devtoolsLine.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	var browserURL string
	select {
	case browserURL = <-found:
	case <-time.After(30 * time.Second):
		t.Fatal("chromium did not say where DevTools listens within 30s")
	}
	u, _ := url.Parse(browserURL)
	pageWS := firstPage(t, "http://"+u.Host)
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	conn, err := WSDial(wctx, pageWS)
	if err != nil {
		t.Fatalf("attaching to the page: %v", err)
	}
	b := &Browser{t: t, cmd: cmd, conn: conn, wait: map[int]chan cdpReply{}}
	go b.read()
	t.Cleanup(func() { conn.Close() })
	b.call("Page.enable", nil, nil)
	b.call("Runtime.enable", nil, nil)
	return b
}

// firstPage is the DevTools WebSocket of Chromium's first page.
func firstPage(t *testing.T, base string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/json/list")
		if err == nil {
			var targets []struct {
				Type string `json:"type"`
				WS   string `json:"webSocketDebuggerUrl"`
			}
			err = json.NewDecoder(resp.Body).Decode(&targets)
			resp.Body.Close()
			for _, tg := range targets {
				if tg.Type == "page" && tg.WS != "" {
					return tg.WS
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no page target in chromium: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (b *Browser) read() {
	for {
		msg, err := wsutil.ReadServerText(b.conn)
		if err != nil {
			b.mu.Lock()
			for id, ch := range b.wait {
				close(ch)
				delete(b.wait, id)
			}
			b.mu.Unlock()
			return
		}
		var m struct {
			ID int `json:"id"`
			cdpReply
		}
		if json.Unmarshal(msg, &m) != nil || m.ID == 0 {
			continue // an event
		}
		b.mu.Lock()
		ch := b.wait[m.ID]
		delete(b.wait, m.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- m.cdpReply
		}
	}
}

// call sends one command and decodes its result into out.
func (b *Browser) call(method string, params, out any) {
	b.t.Helper()
	if err := b.try(method, params, out); err != nil {
		b.t.Fatal(err)
	}
}

func (b *Browser) try(method string, params, out any) error {
	b.mu.Lock()
	b.next++
	id := b.next
	ch := make(chan cdpReply, 1)
	b.wait[id] = ch
	b.mu.Unlock()
	if params == nil {
		params = struct{}{}
	}
	msg, _ := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	b.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := wsutil.WriteClientText(b.conn, msg); err != nil {
		return fmt.Errorf("CDP %s: %w", method, err)
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return fmt.Errorf("CDP %s: the browser went away", method)
		}
		if r.Error != nil {
			return fmt.Errorf("CDP %s: %s", method, r.Error.Message)
		}
		if out != nil {
			return json.Unmarshal(r.Result, out)
		}
		return nil
	case <-time.After(60 * time.Second):
		return fmt.Errorf("CDP %s: no answer within 60s", method)
	}
}

// Eval runs a JavaScript expression in the page (awaiting a promise) and
// decodes its value into out.
func (b *Browser) Eval(expr string, out any) error {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := b.try("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &r); err != nil {
		return err
	}
	if r.Exception != nil {
		return fmt.Errorf("evaluating %.80q: %s", expr, r.Exception.Text)
	}
	if out != nil {
		return json.Unmarshal(r.Result.Value, out)
	}
	return nil
}

func (b *Browser) Navigate(u string) {
	b.t.Helper()
	b.call("Page.navigate", map[string]any{"url": u}, nil)
}

// Text is the page's visible text.
func (b *Browser) Text() string {
	var s string
	if err := b.Eval(`document.body ? document.body.innerText : ""`, &s); err != nil {
		b.t.Logf("reading the page's text: %v", err)
	}
	return s
}

// WaitFor polls cond over the page's text until it holds or limit passes.
func (b *Browser) WaitFor(what string, limit time.Duration, cond func(text string) bool) string {
	b.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		s := b.Text()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("the page never showed %s within %v; it shows:\n%s", what, limit, tail(s, 2000))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Screenshot saves the page as a PNG and returns the path.
func (b *Browser) Screenshot(path string) string {
	b.t.Helper()
	var r struct {
		Data string `json:"data"`
	}
	b.call("Page.captureScreenshot", map[string]any{"format": "png"}, &r)
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		b.t.Fatalf("decoding the screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	return path
}
