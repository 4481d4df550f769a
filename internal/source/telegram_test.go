package source

import (
	"context"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/proxypool/proxypool/internal/upstream"
)

const (
	tgVless   = "vless://bdb67bdd-9f24-4555-bdb4-b768567ae239@vioplex.fast.hosting-ip.com:80?mode=auto&path=%2Ffree%3Fed%3D2048&security=none&encryption=none&host=Free_proxyu.org&type=xhttp# By EbraSha 🚨"
	tgTrojan  = "trojan://9iuw92dfpvlm@172.64.153.22:8443?path=%2F%3Fed%3D2560&security=tls&alpn=http%2F1.1&insecure=1&host=ob85lxpyonvy4y1crfcx2wrmrr.zjde5.de5.net&fp=chrome&type=ws&allowInsecure=1&sni=ob85lxpyonvy4y1crfcx2wrmrr.zjde5.de5.net#BESTIIVPNBOT"
	tgSS      = "ss://Y2hhY2hhMjAtaWV0Zi1wb2x5MTMwNTpvWklvQTY5UTh5aGNRVjhrYTNQYTNB@193.29.139.177:8080#💎کانفیگ های بیشتر در چنل تلگرام💎 Config_Rayegan@"
	tgVmess   = "vmess://eyJhZGQiOiI4Ny4xMjEuMTEzLjUyIiwiYWlkIjoiMCIsImhvc3QiOiJ6dWxhLmlyIiwiaWQiOiIwMzZmMjE0Mi1lYzNmLTQ4N2EtODlkNi1hZTJlNmJjNDFiMzYiLCJuZXQiOiJ0Y3AiLCJwYXRoIjoiL2J5cGFzc19maWx0ZXIiLCJwb3J0IjoiMjYzNzgiLCJwcyI6IlRjcC0zcnN2dHVkNCIsInNjeSI6ImF1dG8iLCJzbmkiOiIiLCJ0bHMiOiJub25lIiwidHlwZSI6Imh0dHAiLCJ2IjoiMiJ9"
	tgHy2     = "hysteria2://09e4b638945d44bfa60b4fd00edad131@assets.gateway-stream.com:52000?obfs=salamander&obfs-password=gu74jg3ym0e21zco&sni=assets.gateway-stream.com#FI-52000"
	tgSSOld   = "ss://Y2hhY2hhMjAtaWV0Zi1wb2x5MTMwNTpvK08rR3ZxSWg1Y1haOGc0alR4RzcrY1BDVTNDL1VPR1NGMUF4M0xOVWZnPUBlYzItYXdzLWV1LW5vcnRoLTEubXVmYW1pbHkuY246ODA4MA==#%40V2rayNGVPN"
	tgTrojan2 = "trojan://telegram-id-privatevpns@13.37.21.54:22222?security=tls&alpn=http/1.1&headerType=none&type=tcp&sni=trojan.burgerip.co.uk#⚡Telegram = @SOSkeyNET"
)

func TestExtractTelegramFixture(t *testing.T) {
	tp := ExtractTelegram(readTestdata(t, "telegram/page1.html"))
	want := []string{
		"🚨 New config", tgVless, "Join @freeconfigs_demo",
		tgTrojan, tgSS,
		"VMess #config", tgVmess,
		"Hysteria2 🇫🇮: tap to import", tgHy2,
		"MTProto: Connect", "Share <3 💙",
	}
	if !reflect.DeepEqual(tp.Lines, want) {
		t.Fatalf("lines:\n%s\nwant:\n%s", strings.Join(tp.Lines, "\n"), strings.Join(want, "\n"))
	}
	if tp.Messages != 5 || tp.Oldest != 101 {
		t.Fatalf("messages %d oldest %d", tp.Messages, tp.Oldest)
	}
	tp = ExtractTelegram(readTestdata(t, "telegram/page2.html"))
	if want := []string{tgSSOld, tgTrojan2, tgVless, "Channel photo updated"}; !reflect.DeepEqual(tp.Lines, want) {
		t.Fatalf("page2 lines:\n%s", strings.Join(tp.Lines, "\n"))
	}
	if tp.Messages != 4 || tp.Oldest != 96 {
		t.Fatalf("page2: messages %d oldest %d", tp.Messages, tp.Oldest)
	}
	if tp := ExtractTelegram(readTestdata(t, "telegram/page3.html")); tp.Messages != 0 || len(tp.Lines) != 0 {
		t.Fatalf("empty page: %+v", tp)
	}
}

func TestExtractTelegramSnippets(t *testing.T) {
	msg := func(inner string) string {
		return `<div class="tgme_widget_message js-widget_message" data-post="c/7"><div class="tgme_widget_message_text js-message_text" dir="auto">` + inner + `</div></div>`
	}
	tests := []struct {
		name, html string
		want       []string
	}{
		{"br variants", msg("a<br>b<br/>c<BR />d"), []string{"a", "b", "c", "d"}},
		{"entities", msg("x&amp;y &lt;z&gt; &#39;q&#39; &quot;"), []string{`x&y <z> 'q' "`}},
		{"code and bold", msg("<b>Config:</b> <code>ss://YWVzOnB3@1.2.3.4:8388#a&amp;b</code>"), []string{"Config: ss://YWVzOnB3@1.2.3.4:8388#a&b"}},
		{"href same as text", msg(`<a href="vless://u@h:1?a=1&amp;b=2">vless://u@h:1?a=1&amp;b=2</a>`), []string{"vless://u@h:1?a=1&b=2"}},
		{"http href not added", msg(`<a href="https://example.com/long">example.com/…</a>`), []string{"example.com/…"}},
		{"nested div inside text", msg(`one<div class="x">two</div>three`), []string{"one", "two", "three"}},
		{"unterminated tag", msg(`ok<code`), []string{"ok<code"}},
		{"no text block", `<div class="tgme_widget_message" data-post="c/9"></div>`, nil},
		{"marker outside a div tag", `<span class="tgme_widget_message_text">nope</span> tgme_widget_message_text`, nil},
		{"prefix class is not the text", `<div class="tgme_widget_message_text_wrap">nope</div>`, nil},
		{"truncated page", `<div class="tgme_widget_message_text js-message_text">vless://u@h:443`, []string{"vless://u@h:443"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ExtractTelegram([]byte(tt.html)).Lines; !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTelegramChannelURL(t *testing.T) {
	for raw, want := range map[string]string{
		"https://t.me/s/freeconfigs_demo":      "freeconfigs_demo",
		"https://T.ME/s/Chan_1?before=5":       "Chan_1",
		"https://telegram.me/s/abc/":           "abc",
		"https://www.t.me/s/abc":               "abc",
		"https://t.me/freeconfigs_demo":        "",
		"https://t.me/proxy?server=1.2.3.4":    "",
		"https://t.me/s/bad-name":              "",
		"https://example.com/s/freeconfigs":    "",
		"file:///s/freeconfigs":                "",
		"https://t.me/s/":                      "",
		"https://t.me/s/freeconfigs_demo/1234": "freeconfigs_demo",
	} {
		u, _ := url.Parse(raw)
		if got := telegramChannel(u); got != want {
			t.Errorf("%s → %q, want %q", raw, got, want)
		}
	}
}

func TestFetchTelegram(t *testing.T) {
	srv := newListServer(t)
	f := &Fetcher{TelegramBase: srv.URL}
	src := Source{Name: "tg", URL: "https://t.me/s/freeconfigs_demo"}
	got, err := f.Fetch(context.Background(), src, upstream.SourceMeta{})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(got.Body)), "\n")
	for _, l := range []string{tgVless, tgTrojan, tgSS, tgVmess, tgHy2, tgSSOld, tgTrojan2} {
		n := 0
		for _, x := range lines {
			if x == l {
				n++
			}
		}
		if n != 1 {
			t.Errorf("link seen %d times, want once: %.60s…", n, l)
		}
	}
	for _, q := range []string{"/s/freeconfigs_demo?", "/s/freeconfigs_demo?before=101", "/s/freeconfigs_demo?before=96"} {
		if n, _ := srv.counts(q); n != 1 {
			t.Errorf("%s fetched %d times, want 1", q, n)
		}
	}
	if ua := srv.header("/s/freeconfigs_demo").Get("User-Agent"); ua != DefaultUserAgent {
		t.Errorf("User-Agent %q", ua)
	}
	again, err := f.Fetch(context.Background(), src, upstream.SourceMeta{URL: src.URL, ETag: got.ETag})
	if err != nil || !again.NotModified {
		t.Fatalf("same links again are not NotModified: %+v %v", again, err)
	}
	if h := srv.header("/s/freeconfigs_demo").Get("If-None-Match"); h != "" {
		t.Fatalf("own validator sent to t.me: %q", h)
	}

	t.Run("page cap", func(t *testing.T) {
		f := &Fetcher{TelegramBase: srv.URL, TelegramPages: 1}
		got, err := f.Fetch(context.Background(), src, upstream.SourceMeta{})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(got.Body), tgSSOld) || !strings.Contains(string(got.Body), tgHy2) {
			t.Fatal("page cap 1 read the wrong pages")
		}
	})
	t.Run("no public preview", func(t *testing.T) {
		_, err := f.Fetch(context.Background(), Source{Name: "p", URL: "https://t.me/s/private"}, upstream.SourceMeta{})
		if err == nil || !strings.Contains(err.Error(), `telegram channel "private" has no public web preview`) {
			t.Fatalf("err = %v", err)
		}
	})
}

func FuzzExtractTelegram(f *testing.F) {
	f.Add(string(readTestdata(f, "telegram/page1.html")))
	f.Add(string(readTestdata(f, "telegram/page2.html")))
	f.Add(`<div class="tgme_widget_message_text"><a href='ss://x'>y</a><div><div></div>`)
	f.Add(`data-post="x/" data-post="/-1" data-post="`)
	f.Fuzz(func(t *testing.T, page string) {
		tp := ExtractTelegram([]byte(page))
		if tp.Messages < 0 || tp.Oldest < 0 || (tp.Messages == 0) != (tp.Oldest == 0) {
			t.Fatalf("messages %d oldest %d", tp.Messages, tp.Oldest)
		}
		for _, l := range tp.Lines {
			if l == "" || l != strings.TrimSpace(l) || strings.Contains(l, "\n") {
				t.Fatalf("bad line %q", l)
			}
			if utf8.ValidString(page) && !utf8.ValidString(l) {
				t.Fatalf("valid page gave invalid line %q", l)
			}
		}
	})
}
